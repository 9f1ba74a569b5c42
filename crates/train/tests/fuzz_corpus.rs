//! Replays the fuzzers' kept corpus (`fuzz/corpus/<target>/`) and every crasher they found
//! (`fuzz/regressions/<target>/`) through the functions the `cargo fuzz` targets call
//! (`train::fuzz_targets`), so a regression fails `cargo test` without libFuzzer or a nightly
//! compiler. An input may be accepted or refused; a panic fails the test, naming the file.
//! Seeds named `seed-ok-*` are valid files and must be accepted; every other `seed-*` file
//! (int64 weights, a code-execution pickle, a 6.4 GB view) must be refused.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

mod common;

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `fuzz/<kind>/<target>/`, sorted; none if the folder does not exist.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| {
            e.unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path()
        })
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn file_name(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

/// Run `target_fn` on every kept input of `target`; `min_corpus` (files besides the seeds)
/// guards against a corpus that went missing (the test would otherwise pass on the seeds).
fn replay(target: &str, min_corpus: usize, target_fn: fn(&[u8]) -> bool) {
    let corpus = inputs("corpus", target);
    let found = corpus
        .iter()
        .filter(|p| !file_name(p).starts_with("seed-"))
        .count();
    assert!(
        found >= min_corpus,
        "fuzz/corpus/{target} holds {found} fuzzer-found files, expected at least {min_corpus}: \
         the kept corpus is missing (see fuzz/README.md)"
    );
    let regressions = inputs("regressions", target);
    let (mut accepted, mut panicked, mut wrong_seeds) = (0, Vec::new(), Vec::new());
    for path in corpus.iter().chain(&regressions) {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = file_name(path);
        match catch_unwind(AssertUnwindSafe(|| target_fn(&data))) {
            Ok(ok) => {
                accepted += ok as usize;
                if name.starts_with("seed-") && ok != name.starts_with("seed-ok-") {
                    wrong_seeds.push(format!("{name}: accepted = {ok}"));
                }
            }
            Err(_) => panicked.push(path.display().to_string()),
        }
    }
    assert!(panicked.is_empty(), "{target} panicked on: {panicked:#?}");
    assert!(
        wrong_seeds.is_empty(),
        "{target}: seeds with the wrong outcome: {wrong_seeds:#?}"
    );
    println!(
        "{target}: {} corpus + {} regression inputs, {accepted} accepted, no panic",
        corpus.len(),
        regressions.len()
    );
}

#[test]
fn config_text_corpus() {
    replay("config_text", 1000, train::fuzz_targets::config_text);
}

#[test]
fn image_bytes_corpus() {
    replay("image_bytes", 1000, train::fuzz_targets::image_bytes);
}

#[test]
fn weight_file_bytes_corpus() {
    replay(
        "weight_file_bytes",
        1000,
        train::fuzz_targets::weight_file_bytes,
    );
}

/// A 649-byte `.pth` whose `features.0.weight` is a stride-0 view declaring 40000 x 40000
/// floats (6.4 GB if read): loading it where the model expects [2, 3, 3, 3] is a shape error
/// before any data is read (the shape used to be checked after reading).
#[test]
fn a_huge_view_is_refused_by_shape_before_it_is_read() {
    let path = fuzz_dir().join("corpus/weight_file_bytes/seed-expand-view.zip.pth");
    let file = model::WeightFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(file.shape("features.0.weight").unwrap(), [40000, 40000]);
    let err = file.tensor("features.0.weight", &[2, 3, 3, 3]).unwrap_err();
    assert!(matches!(err, model::WeightError::Shape { .. }), "{err}");
    // Nothing near 6.4 GB was ever held (this test binary otherwise peaks near 100 MB).
    let peak_kb = common::peak_rss_kb("/proc/self/status").unwrap();
    assert!(peak_kb < 2e6, "peak RSS {:.0} MB", peak_kb / 1024.0);
}
