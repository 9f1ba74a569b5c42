//! What the `cargo fuzz` targets (`fuzz/fuzz_targets/`) run on each input, kept here so that
//! `crates/train/tests/fuzz_corpus.rs` replays the kept corpus and the crashers through exactly
//! the same code in every `cargo test`. Each function returns whether the input was accepted
//! (an error is a fine outcome; a panic, an abort or a runaway allocation is the bug).

use std::path::PathBuf;

/// Config text, as `train --config` reads it (parse plus every check that needs no files).
pub fn config_text(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    crate::config::Config::parse(text).is_ok()
}

/// Photo bytes of any supported format, as the data loader decodes them.
pub fn image_bytes(data: &[u8]) -> bool {
    crate::images::decode_rgb(data, "fuzz input").is_ok()
}

/// A weight file (`.pth` zip or legacy pickle, or `.safetensors`): open it, then read every
/// tensor it lists at the shape it declares, as a model load would.
pub fn weight_file_bytes(data: &[u8]) -> bool {
    // The reader takes a path (PyTorch tensors are read through it), so the bytes go to a
    // scratch file of this thread's, removed afterwards.
    let path = scratch_file();
    if std::fs::write(&path, data).is_err() {
        panic!("cannot write the scratch file {}", path.display());
    }
    let accepted = model::WeightFile::open(&path).is_ok_and(|file| {
        file.keys().iter().all(|key| {
            file.shape(key)
                .and_then(|shape| file.tensor(key, &shape))
                .is_ok()
        })
    });
    let _ = std::fs::remove_file(&path);
    accepted
}

fn scratch_file() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    let dir = if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    };
    let thread = std::thread::current().id();
    dir.join(format!(
        "train-fuzz-weights-{}-{thread:?}",
        std::process::id()
    ))
}
