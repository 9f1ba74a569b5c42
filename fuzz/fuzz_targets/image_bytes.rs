//! libFuzzer target: `train::fuzz_targets::image_bytes` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    train::fuzz_targets::image_bytes(data);
});
