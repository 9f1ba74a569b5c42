//! Shared by the integration tests: where ../shared is.

use std::path::PathBuf;

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
