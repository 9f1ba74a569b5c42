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
    crate::data::images::decode_rgb(data, "fuzz input").is_ok()
}

/// The most elements the weights target reads a tensor at: more than any tensor our backbones
/// load (VGG16's largest conv has 2.4 M). A view can declare 10 GiB of elements in a tiny
/// file; the tool never reads those (it checks the shape it expects first), so neither does
/// the fuzzer, beyond checking that a small expected shape refuses them without reading.
const MAX_ELEMENTS_READ: usize = 1 << 24;

/// A weight file (`.pth` zip or legacy pickle, or `.safetensors`): open it, then read every
/// tensor it lists, as a model load would: at its declared shape when that is of model size,
/// else at a small expected shape (a shape error, before any data is read).
pub fn weight_file_bytes(data: &[u8]) -> bool {
    // The reader takes a path (PyTorch tensors are read through it), so the bytes go to a
    // scratch file of this thread's, removed afterwards.
    let path = scratch_file();
    // A fresh file (O_EXCL): never through a link someone else left at that name.
    let _ = std::fs::remove_file(&path);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, data));
    if let Err(e) = written {
        panic!("cannot write the scratch file {}: {e}", path.display());
    }
    let accepted = model::WeightFile::open(&path).is_ok_and(|file| {
        file.keys().iter().all(|key| {
            file.shape(key)
                .and_then(|shape| {
                    let elements = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
                    if elements.is_some_and(|n| n <= MAX_ELEMENTS_READ) {
                        file.tensor(key, &shape)
                    } else {
                        file.tensor(key, &[2, 3, 3, 3])
                    }
                })
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
