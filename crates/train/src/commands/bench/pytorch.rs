//! PyTorch's side of `train bench --pytorch PYTHON`: runs `scripts/bench_pytorch.py` with that
//! interpreter for one figure and reads its JSON line. The script times the same layers, batch,
//! size and dtype with the same statistic as ours (one warm-up, best of `repeats`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// One PyTorch measurement.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct TorchFigure {
    /// Seconds per call (best of the repeats).
    pub seconds: f64,
    /// `torch.__version__`.
    pub torch: String,
    /// `torch.get_num_threads()` during the measurement.
    pub threads: usize,
    /// Whether oneDNN (mkldnn) was available.
    pub mkldnn: bool,
}

/// The interpreter and the script it runs.
pub struct PyTorch {
    python: PathBuf,
    script: PathBuf,
}

impl PyTorch {
    /// `python` must import torch; the script is `scripts/bench_pytorch.py` next to the
    /// workspace this binary was built from, or under the current directory.
    pub fn new(python: &Path) -> Result<Self> {
        let candidates = [
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench_pytorch.py"),
            PathBuf::from("scripts/bench_pytorch.py"),
        ];
        let script = candidates
            .into_iter()
            .find(|p| p.is_file())
            .context("scripts/bench_pytorch.py not found (run from the repository root)")?;
        Ok(Self {
            python: python.to_path_buf(),
            script,
        })
    }

    /// Time `figure` (see the script) at `batch` with `threads` threads.
    pub fn time(
        &self,
        figure: &str,
        batch: usize,
        repeats: usize,
        threads: usize,
    ) -> Result<TorchFigure> {
        let output = Command::new(&self.python)
            .arg(&self.script)
            .arg(figure)
            .args(["--batch", &batch.to_string()])
            .args(["--repeats", &repeats.to_string()])
            .args(["--threads", &threads.to_string()])
            .output()
            .with_context(|| format!("cannot run {}", self.python.display()))?;
        if !output.status.success() {
            bail!(
                "{} {} {figure} failed ({}): {}",
                self.python.display(),
                self.script.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout.lines().last().unwrap_or_default();
        let figure_out: TorchFigure = serde_json::from_str(line)
            .with_context(|| format!("bench_pytorch.py {figure}: unreadable output {line:?}"))?;
        if !(figure_out.seconds.is_finite() && figure_out.seconds > 0.0) {
            bail!(
                "bench_pytorch.py {figure}: {} s is not a time",
                figure_out.seconds
            );
        }
        Ok(figure_out)
    }
}
