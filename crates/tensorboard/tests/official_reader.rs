//! The real TensorBoard reader (`EventAccumulator`, PyPI `tensorboard`) loads what we write.
//! Needs the virtualenv made by `scripts/setup-venv.sh` (or `$TENSORBOARD_PYTHON`).

mod common;

use std::path::PathBuf;
use std::process::Command;

fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("TENSORBOARD_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        venv.exists(),
        "PYTHON VENV MISSING: {} not found. Run `scripts/setup-venv.sh` (installs the `tensorboard` \
         PyPI package) or set TENSORBOARD_PYTHON.",
        venv.display()
    );
    venv
}

#[test]
fn tensorboard_reads_scalars_images_text_and_hparams() {
    let root = tempfile::tempdir().unwrap();
    common::write_demo(root.path());
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/check_tensorboard.py");
    let output = Command::new(python())
        .arg(&script)
        .arg(root.path())
        .output()
        .expect("run scripts/check_tensorboard.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "check_tensorboard.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("ALL CHECKS PASSED"), "{stdout}");
}
