//! Files of a run directory: its creation (`runs/<name>-<YYYYmmdd-HHMMSS>[-n]`, never reused),
//! its identity on disk (to notice it being replaced mid-run), and atomic writes.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The checkpoint's file name in the run directory.
pub const CHECKPOINT: &str = "checkpoint.safetensors";
/// The fine-tuned backbone's file name in the run directory (fine-tuning runs only).
pub const BACKBONE: &str = "backbone.safetensors";
/// Written once the run's end (the callbacks' last word, the HParams session end) is on disk:
/// a run killed after its last checkpoint but before this file does its end on `--resume`.
pub const FINISHED: &str = "finished";
/// Written as the run's end starts: each event file's length then ("<length> <file name>" per
/// line). A run killed during its end is cut back to these lengths before the end is redone,
/// so no end record is written twice.
pub const FINISHING: &str = "finishing";

/// A run directory's name as [`create_run_dir`] makes it, taken apart:
/// `<name>-<YYYYMMDD>-<HHMMSS>[-<n>]` → (name, date, time, n). `None` for other names.
pub fn parse_run_dir_name(dir: &str) -> Option<(&str, &str, &str, Option<&str>)> {
    fn stamp(s: &str) -> Option<(&str, &str, &str)> {
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        let (rest, time) = s.rsplit_once('-')?;
        let (name, date) = rest.rsplit_once('-')?;
        (digits(time, 6) && digits(date, 8) && !name.is_empty()).then_some((name, date, time))
    }
    let counted = dir
        .rsplit_once('-')
        .filter(|(_, n)| !n.is_empty() && n.len() < 6 && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|(rest, n)| Some((stamp(rest)?, Some(n))));
    let ((name, date, time), n) = counted.or_else(|| Some((stamp(dir)?, None)))?;
    Some((name, date, time, n))
}

/// Create a new run directory; never reuses an existing one.
pub fn create_run_dir(runs_dir: &Path, name: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(runs_dir)
        .with_context(|| format!("cannot create runs_dir {}", runs_dir.display()))?;
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S").to_string();
    for n in 0.. {
        let dir_name = if n == 0 {
            format!("{name}-{stamp}")
        } else {
            format!("{name}-{stamp}-{n}")
        };
        let dir = runs_dir.join(dir_name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("cannot create run dir {}", dir.display()))
            }
        }
    }
    unreachable!("the loop returns")
}

/// What identifies a directory on disk (device and inode), to notice it being replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirIdentity(u64, u64);

/// The identity of `dir` now.
pub fn dir_identity(dir: &Path) -> Result<DirIdentity> {
    let meta =
        std::fs::metadata(dir).with_context(|| format!("run dir {} is gone", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok(DirIdentity(meta.dev(), meta.ino()))
    }
    // Elsewhere only its existence is checked.
    #[cfg(not(unix))]
    {
        let _ = meta;
        Ok(DirIdentity(0, 0))
    }
}

/// Fail when `dir` was deleted, moved or replaced since `identity` was taken.
pub fn check_same_dir(dir: &Path, identity: &DirIdentity) -> Result<()> {
    match dir_identity(dir) {
        Ok(now) if &now == identity => Ok(()),
        _ => anyhow::bail!(
            "run dir {} was deleted or replaced during the run: stopping (its log and \
             checkpoint are not where they were)",
            dir.display()
        ),
    }
}

/// Write a file atomically: a temp file beside it, fsync, rename, fsync of the directory (so
/// the rename itself survives a power loss, not only a crash of the process).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let mut pending = Pending::new(dir, name.as_deref().unwrap_or("file"))?;
    pending
        .file()
        .write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    pending.persist(path)?;
    Ok(())
}

/// A file being written in `dir` under a unique temporary name: [`persist`](Self::persist)
/// flushes it to disk and renames it to its final name (atomic); dropping it unpersisted
/// removes it. Unique names (not one per file or per process id) let processes on several
/// machines write the same file on a shared file system at once: the last rename wins, and
/// every reader sees one whole file or the other.
pub struct Pending {
    file: tempfile::NamedTempFile,
}

impl Pending {
    /// A new temporary file in `dir` for the file `name` (readable by all, as a plain new file
    /// is under the usual umask: runs and caches are shared).
    pub fn new(dir: &Path, name: &str) -> Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let file = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .permissions(std::fs::Permissions::from_mode(0o644))
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a file in {}", dir.display()))?;
        Ok(Self { file })
    }

    /// The file, to write to.
    pub fn file(&mut self) -> &mut std::fs::File {
        self.file.as_file_mut()
    }

    /// fsync, rename to `path`, fsync the directory; returns the file, open at its new name.
    pub fn persist(self, path: &Path) -> Result<std::fs::File> {
        self.file
            .as_file()
            .sync_all()
            .with_context(|| format!("cannot write {}", self.file.path().display()))?;
        let file = self
            .file
            .persist(path)
            .with_context(|| format!("cannot move a new file into place at {}", path.display()))?;
        let dir = parent_dir(path);
        match std::fs::File::open(dir).and_then(|d| d.sync_all()) {
            // Some network and FUSE filesystems cannot fsync a directory: the rename stands.
            Err(e) if matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::Unsupported) => {}
            result => result.with_context(|| format!("cannot sync directory {}", dir.display()))?,
        }
        Ok(file)
    }
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}
