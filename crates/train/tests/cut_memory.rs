//! A fine-tuning run's cut is streamed from disk, never held in memory: 25,000 images at 224
//! with `train_from = "block5_conv1"` (the input of block5_conv1 is block4_pool's output,
//! 512×14×14 per image: 5 GB as f16) must stay within 2 GB of peak RSS. This test writes such
//! a cut (the values do not matter for memory), trains the real-width block5 + head on it, and
//! reads every row back the way training and evaluation do, in its own process so that the
//! peak (VmHWM) is this work's alone.
//!
//! `cargo test` writes 8,000 images (1.6 GB on disk: CI machines have little disk beside the
//! build, and a 5 GB file once ran one out); the peak must still be under half the file, so a
//! cut held in memory fails. `scripts/check-cut-memory.sh` runs the full 25,000
//! (`CUT_MEMORY_IMAGES=25000`).

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use model::{Backbone, HeadKind, Vgg16};
use std::sync::Arc;

use train::features::chunks::{chunk_ranges, Readable, SHA256_PENDING};
use train::features::cut::{write_part, CutActivations};
use train::learn::top::TopTraining;

mod common;

/// Images in the cut: `CUT_MEMORY_IMAGES`, 8,000 by default.
fn images() -> usize {
    match std::env::var("CUT_MEMORY_IMAGES") {
        Ok(text) => text.parse().expect("CUT_MEMORY_IMAGES: a number of images"),
        Err(_) => 8_000,
    }
}
const CUT: usize = 14; // block5_conv1
const LIMIT_KB: f64 = 2.0 * 1024.0 * 1024.0;

#[test]
fn a_cut_of_thousands_of_images_at_block4_pool_streams_within_2_gb() {
    let images = images();
    let device = Device::flex();
    let dir = env!("CARGO_TARGET_TMPDIR");
    let scratch = Arc::new(tempfile::tempdir_in(dir).unwrap());
    let file_bytes = images * 512 * 14 * 14 * 2;
    // Chunk files of 128 rows, as the backbone pass writes a set this large.
    let batch = Tensor::<4>::random([32, 512, 14, 14], Distribution::Uniform(0.0, 4.0), &device);
    let mut parts = Vec::new();
    for (i, range) in chunk_ranges(images).into_iter().enumerate() {
        let readable = Readable {
            kept: (0..range.len()).collect(),
            skipped: Vec::new(),
        };
        let batches = (0..range.len())
            .step_by(32)
            .map(|start| Ok(batch.clone().narrow(0, 0, (range.len() - start).min(32))));
        let metadata = readable.metadata(range.len(), SHA256_PENDING);
        let name = format!("cut-{i}.safetensors");
        let part = write_part(scratch.path(), &name, range.len(), &metadata, batches, None);
        parts.push(part.unwrap_or_else(|error| {
            panic!("writing a {file_bytes}-byte cut in {dir} (is the disk full?): {error:#}")
        }));
    }
    drop(batch);
    let rows = CutActivations::new(parts, CUT).unwrap();
    assert_eq!((rows.rows, rows.shape), (images, [512, 14, 14]));

    // The real VGG16 width: block5 (3 × 512×512×3×3 convs) and the head train.
    let vgg = (0..18).fold(Vgg16::random(1, &device).no_grad(), |v, index| {
        v.set_trainable(index, index >= CUT)
    });
    let mut top = TopTraining::new(
        Backbone::Vgg16(vgg),
        HeadKind::GapLinear,
        1,
        CUT,
        (1e-3, 1e-4),
        0,
        &device,
    );
    assert_eq!(top.trainable_tensors(), 8);
    // Two steps of 32 (an epoch's memory does not grow with its length: one batch at a time).
    let labels: Vec<usize> = (0..64).map(|i| i % 2).collect();
    top.train_epoch(&rows, &labels, 32, 0, 1).unwrap();
    // Every row read back as training and evaluation read them.
    let order: Vec<usize> = (0..images).rev().collect();
    for batch in order.chunks(64) {
        let x = rows.batch(batch, &device).unwrap();
        assert_eq!(x.dims(), [batch.len(), 512, 14, 14]);
    }

    let peak = common::peak_rss_kb("/proc/self/status").expect("VmHWM");
    println!(
        "peak RSS {:.0} MB for a {:.2} GB cut of {images} images",
        peak / 1024.0,
        file_bytes as f64 / 1e9
    );
    assert!(peak <= LIMIT_KB, "peak RSS {peak} KB > 2 GB");
    assert!(
        peak * 1024.0 < file_bytes as f64 / 2.0,
        "peak RSS {peak} KB: the cut is held in memory"
    );
}
