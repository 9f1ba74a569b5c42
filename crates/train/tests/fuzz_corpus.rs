//! Replays the fuzzers' kept corpus (`fuzz/corpus/<target>/`) and every crasher they found
//! (`fuzz/regressions/<target>/`) through the functions the `cargo fuzz` targets call
//! (`train::fuzz_targets`), so a regression fails `cargo test` without libFuzzer or a nightly
//! compiler. An input may be accepted or refused; a panic fails the test, naming the file.
//! Seeds named `seed-ok-*` are valid files and must be accepted.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

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

fn is_seed_ok(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("seed-ok-"))
}

/// Run `target_fn` on every kept input of `target`; `min_corpus` guards against a corpus that
/// went missing (the test would otherwise pass on nothing).
fn replay(target: &str, min_corpus: usize, target_fn: fn(&[u8]) -> bool) {
    let corpus = inputs("corpus", target);
    assert!(
        corpus.len() >= min_corpus,
        "fuzz/corpus/{target} holds {} files, expected at least {min_corpus}: the kept corpus \
         is missing (see fuzz/README.md)",
        corpus.len()
    );
    let regressions = inputs("regressions", target);
    let (mut accepted, mut panicked, mut refused_seeds) = (0, Vec::new(), Vec::new());
    for path in corpus.iter().chain(&regressions) {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        match catch_unwind(AssertUnwindSafe(|| target_fn(&data))) {
            Ok(true) => accepted += 1,
            Ok(false) if is_seed_ok(path) => refused_seeds.push(path.display().to_string()),
            Ok(false) => {}
            Err(_) => panicked.push(path.display().to_string()),
        }
    }
    println!(
        "{target}: {} corpus + {} regression inputs, {accepted} accepted, no panic",
        corpus.len(),
        regressions.len()
    );
    assert!(panicked.is_empty(), "{target} panicked on: {panicked:#?}");
    assert!(
        refused_seeds.is_empty(),
        "{target} refused valid seeds: {refused_seeds:#?}"
    );
}

#[test]
fn config_text_corpus() {
    replay("config_text", 7, train::fuzz_targets::config_text);
}

#[test]
fn image_bytes_corpus() {
    replay("image_bytes", 12, train::fuzz_targets::image_bytes);
}

#[test]
fn weight_file_bytes_corpus() {
    replay(
        "weight_file_bytes",
        7,
        train::fuzz_targets::weight_file_bytes,
    );
}
