//! libFuzzer target: `train::fuzz_targets::image_bytes` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: {
        // libfuzzer-sys's panic hook aborts on every panic, even one the code catches. The
        // loader turns a decoder's panic into an error (skip with a warning: the tool's
        // behaviour under test), so here such a panic is only reported, and counted by
        // scripts/fuzz.sh. A panic that escapes still aborts: libfuzzer-sys checks the result.
        std::panic::set_hook(Box::new(|info| eprintln!("caught decoder panic: {info}")));
    },
    |data: &[u8]| {
        train::fuzz_targets::image_bytes(data);
    }
);
