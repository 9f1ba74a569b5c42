//! Shared by the integration tests: where ../shared is, and running the `train` binary.
// Each test binary uses a subset of these.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Run the `train` binary from the repository root.
pub fn train(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_train"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run train")
}

/// Its stdout, after asserting it succeeded (printing both streams if not).
pub fn ok(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "train failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `$SHARED_DIR`, or `../shared` next to the repository. Fails loudly when missing.
pub fn shared_dir() -> PathBuf {
    let dir = std::env::var_os("SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    assert!(
        dir.join("fixtures").is_dir() && dir.join("data/catdog").is_dir(),
        "SHARED DATA MISSING: {} lacks fixtures/ or data/catdog/. Set SHARED_DIR.",
        dir.display()
    );
    dir
}
