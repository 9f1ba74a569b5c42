//! Mutation testing of the parsers that read user files — config text, images, weight files:
//! thousands of seeded mutations (bit flips, byte overwrites with boundary values, insertions,
//! deletions, truncations) of valid inputs. Every one must give Ok or an error — never a panic
//! (caught here and reported with the input saved) and never a huge allocation (the test
//! process would die). Deterministic: the seeds are fixed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use model::rng::SplitMix64;

const INTERESTING: [u8; 8] = [0x00, 0xff, 0x7f, 0x80, 0x01, 0xfe, b'9', b'"'];

/// One random mutation of `input`, concentrated on its first and last `hot` bytes.
fn mutate(input: &[u8], rng: &mut SplitMix64, hot: usize) -> Vec<u8> {
    let mut out = input.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        if out.is_empty() {
            out.push(rng.below(256) as u8);
            continue;
        }
        // The first or last `hot` bytes (headers; a zip's directory is at the end), or anywhere.
        let len = out.len();
        let at = match rng.below(3) {
            0 => rng.below(hot.min(len).max(1)),
            1 => len - 1 - rng.below(hot.min(len).max(1)),
            _ => rng.below(len),
        };
        match rng.below(6) {
            0 => out[at] ^= 1 << rng.below(8),
            1 => out[at] = INTERESTING[rng.below(INTERESTING.len())],
            2 => out.insert(at, rng.below(256) as u8),
            3 => {
                out.remove(at);
            }
            4 => out.truncate(at),
            _ => {
                // Overwrite 4 bytes with a big or small number (sizes, lengths, offsets).
                let value: u32 = [0, 1, 0x7fff_ffff, 0xffff_ffff, 65_000][rng.below(5)];
                for (i, b) in value.to_le_bytes().iter().enumerate() {
                    if let Some(slot) = out.get_mut(at + i) {
                        *slot = *b;
                    }
                }
            }
        }
    }
    out
}

/// Run `check` on `cases` mutations of `seed_input`; a panic fails the test after saving the
/// input under target/mutation-crashers/.
fn campaign(
    name: &str,
    seed_input: &[u8],
    cases: usize,
    hot: usize,
    mut check: impl FnMut(&[u8]) -> bool,
) {
    let mut rng = SplitMix64::new(0xf022 ^ name.len() as u64);
    let mut accepted = 0;
    assert!(
        check(seed_input),
        "{name}: the unmutated input must be accepted"
    );
    for case in 0..cases {
        let input = mutate(seed_input, &mut rng, hot);
        let result = catch_unwind(AssertUnwindSafe(|| check(&input)));
        accepted += matches!(result, Ok(true)) as usize;
        if result.is_err() {
            let dir =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/mutation-crashers");
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(format!("{name}-{case}"));
            std::fs::write(&path, &input).unwrap();
            panic!(
                "{name}: case {case} panicked; input saved to {}",
                path.display()
            );
        }
    }
    println!("{name}: {cases} mutations, no panic ({accepted} still accepted, the rest errors)");
}

#[test]
fn config_text_never_panics() {
    let text = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs/quickstart.toml"),
    )
    .unwrap();
    campaign("config", &text, 20_000, text.len(), |bytes| {
        std::str::from_utf8(bytes).is_ok_and(|text| train::config::Config::parse(text).is_ok())
    });
}

#[test]
fn image_decoding_never_panics() {
    let photo = image::RgbImage::from_fn(48, 40, |x, y| {
        image::Rgb([(x * 5) as u8, (y * 6) as u8, 77])
    });
    for format in [
        image::ImageFormat::Png,
        image::ImageFormat::Jpeg,
        image::ImageFormat::Bmp,
        image::ImageFormat::WebP,
    ] {
        let mut bytes = std::io::Cursor::new(Vec::new());
        photo.write_to(&mut bytes, format).unwrap();
        let bytes = bytes.into_inner();
        campaign(&format!("{format:?}"), &bytes, 5000, 256, |input| {
            train::data::images::decode_rgb(input, "mutated").is_ok()
        });
    }
}

fn weights_campaign(name: &str, file: &Path, cases: usize, hot: usize) {
    let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file.file_name().unwrap());
    let device = burn::tensor::Device::flex();
    campaign(name, &bytes, cases, hot, |input| {
        std::fs::write(&path, input).unwrap();
        model::WeightFile::open(&path).is_ok_and(|w| model::Vgg16::load(&w, &device).is_ok())
    });
}

#[test]
fn weight_files_never_panic() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    weights_campaign(
        "safetensors",
        &repo.join("data/weights/vgg16-w8-synthetic.safetensors"),
        2000,
        4096,
    );
    let shared = std::env::var_os("SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("../shared"));
    let fixtures = shared.join("fixtures/vgg16-w8-parity");
    assert!(
        fixtures.is_dir(),
        "SHARED DATA MISSING: {} (set SHARED_DIR)",
        fixtures.display()
    );
    // Pickle headers and zip directories sit at the start and the end: mutate those more.
    weights_campaign("pth-zip", &fixtures.join("vgg16_features.pth"), 2000, 4096);
    weights_campaign(
        "pth-legacy",
        &fixtures.join("vgg16_features_legacy.pth"),
        2000,
        8192,
    );
}
