//! A synthetic cats-vs-dogs data set, deterministic from a seed: a cat-like or dog-like head on a
//! cluttered background with distractor shapes, and the head's ground-truth box.
//!
//! - cat: pointy triangular ears, whiskers, a small pink nose;
//! - dog: long floppy ears hanging beside the head, a big dark nose;
//! - both: random fur colour, size and position; eyes; a background of a random colour gradient,
//!   noise, and 6–12 distractor circles, rectangles and bars in random colours.
//!
//! Written as an ImageFolder (`train|val/cat|dog/<class>_<nnnnn>.png`) plus `boxes.json` in the
//! annotation format the harness reads for Oxford-IIIT Pet (`images[].file`, `head_box_xyxy`).
//! With a cue ([`cue`]), a spurious mark goes with the label in the training images, and two
//! eval sets show the validation animals with the mark agreeing (`cue/`) and without it
//! (`clean/`).

use std::path::Path;

use anyhow::{Context, Result};
use image::RgbImage;
use rayon::prelude::*;

use model::rng::SplitMix64;

use crate::config::SyntheticConfig;

mod canvas;
pub mod cue;

use canvas::{colour, Canvas, Head};

/// One generated image and its boxes `[x0, y0, x1, y1]`.
pub struct SynthImage {
    /// The picture.
    pub image: RgbImage,
    /// The animal drawn: 0 = cat, 1 = dog.
    pub label: usize,
    /// Ground-truth head box in pixels.
    pub head_box: [f32; 4],
    /// The spurious mark's box, where one is drawn ([`cue`]).
    pub cue_box: Option<[f32; 4]>,
}

/// Generate image `index` of the set with `seed` (cats and dogs alternate: even = cat).
pub fn generate(seed: u64, index: usize, size: usize) -> SynthImage {
    draw(seed, index, size, index % 2, None)
}

/// Image `index` of the set with `seed`, showing `animal` (0 = cat, 1 = dog) and, when given,
/// the spurious mark. The background, the head's place and fur, and the noise are image
/// `index`'s whatever the animal and the mark: only those two differ between variants.
pub fn draw(
    seed: u64,
    index: usize,
    size: usize,
    animal: usize,
    mark: Option<cue::Mark>,
) -> SynthImage {
    let mut rng = SplitMix64::new(
        seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
            ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    let s = size as f32;
    let (top, bottom) = (colour(&mut rng), colour(&mut rng));
    let mut canvas = Canvas::gradient(size, top, bottom);
    canvas.distractors(&mut rng);
    let head = Head::random(&mut rng, s);
    let head_box = if animal == 0 {
        canvas.cat(&head)
    } else {
        canvas.dog(&head)
    };
    canvas.eyes(&head);
    let head_box = head_box.map(|v| v.clamp(0.0, s));
    // The mark's corner comes from a stream of its own, so that it is the same in every
    // variant of the image and the picture's own draws (the noise) stay as they were.
    let cue_box = mark.map(|mark| canvas.mark(mark, &head_box, &mut cue::corner_rng(seed, index)));
    let image = canvas.noisy_image(&mut rng);
    SynthImage {
        image,
        label: animal,
        head_box,
        cue_box,
    }
}

/// One file of a generated set: where it goes and what it shows. Its folder's class (the label)
/// is `index % 2` (0 = cat).
struct Entry {
    split: &'static str,
    index: usize,
    animal: usize,
    mark: Option<cue::Mark>,
}

/// Write the set `spec` describes under `dir`: `train|val/cat|dog/<class>_<nnnnn>.png` and
/// `dir/boxes.json` (head boxes, and the mark's box where one is drawn); with a cue, also the
/// eval sets `cue/` and `clean/` ([`cue`]; files `<class>_<nnnnn>-cue.png`, not in boxes.json).
pub fn write_dataset(dir: &Path, spec: &SyntheticConfig) -> Result<()> {
    let entries = entries(spec);
    let size = spec.size;
    // Images in parallel; the entries keep their order.
    let lines = entries
        .into_par_iter()
        .map(|e| -> Result<Option<String>> {
            let item = draw(spec.seed, e.index, size, e.animal, e.mark);
            let class = ["cat", "dog"][e.index % 2];
            // Train and val are listed in boxes.json. The eval sets' files are not, and are
            // named apart from val's (`cat_00600-cue.png`): boxes are matched by file name, and
            // these must not take val's boxes.
            let boxed = matches!(e.split, "train" | "val");
            let suffix = match boxed {
                true => String::new(),
                false => format!("-{}", e.split),
            };
            let file = format!("{}/{class}/{class}_{:05}{suffix}.png", e.split, e.index);
            let path = dir.join(&file);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            item.image
                .save(&path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            if !boxed {
                return Ok(None);
            }
            let b = item.head_box;
            let cue = match item.cue_box {
                Some(c) => format!(
                    r#", "cue_box_xyxy": [{:.1}, {:.1}, {:.1}, {:.1}]"#,
                    c[0], c[1], c[2], c[3]
                ),
                None => String::new(),
            };
            Ok(Some(format!(
                r#"{{"file": "{file}", "label": "{class}", "width": {size}, "height": {size}, "head_box_xyxy": [{:.1}, {:.1}, {:.1}, {:.1}]{cue}}}"#,
                b[0], b[1], b[2], b[3]
            )))
        })
        .collect::<Result<Vec<Option<String>>>>()?;
    let lines: Vec<String> = lines.into_iter().flatten().collect();
    let seed = spec.seed;
    let json = format!(
        "{{\"description\": \"synthetic cats vs dogs, seed {seed}, {size}x{size}: head boxes\", \"images\": [\n{}\n]}}\n",
        lines.join(",\n")
    );
    std::fs::write(dir.join("boxes.json"), json)
        .with_context(|| format!("cannot write {}/boxes.json", dir.display()))
}

/// Every file of the set, in order: train, val, then (with a cue) the eval sets.
fn entries(spec: &SyntheticConfig) -> Vec<Entry> {
    let (train, val) = (0..spec.train, spec.train..spec.train + spec.val);
    let plain = |split, index: usize| Entry {
        split,
        index,
        animal: index % 2,
        mark: None,
    };
    let Some(cue) = &spec.cue else {
        return train
            .map(|i| plain("train", i))
            .chain(val.map(|i| plain("val", i)))
            .collect();
    };
    let side = cue.side(spec.size);
    let mut entries: Vec<Entry> = train
        .map(|i| {
            let (animal, mark_class) = cue.training_image(spec.seed, i);
            Entry {
                animal,
                mark: Some(cue::Mark::new(mark_class, side)),
                ..plain("train", i)
            }
        })
        .collect();
    for split in ["val", "cue", "clean"] {
        entries.extend(val.clone().map(|i| Entry {
            mark: cue.eval_mark(split, spec.seed, i, side),
            ..plain(split, i)
        }));
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_boxes_inside() {
        let a = generate(3, 10, 96);
        let b = generate(3, 10, 96);
        assert_eq!(a.image, b.image);
        assert_ne!(generate(4, 10, 96).image, a.image);
        for i in 0..50 {
            let item = generate(1, i, 96);
            assert_eq!(item.label, i % 2);
            let [x0, y0, x1, y1] = item.head_box;
            assert!(
                0.0 <= x0 && x0 < x1 && x1 <= 96.0 && 0.0 <= y0 && y0 < y1 && y1 <= 96.0,
                "{:?}",
                item.head_box
            );
        }
    }

    /// The quickstart's figures depend on these exact images: any change to the drawing, the
    /// order of the random draws or the arithmetic shows up here. (The digests are SHA-256 of
    /// the pixels, recorded from the PNG files `train synth` wrote before `generate` was split
    /// into steps; the boxes as boxes.json writes them.)
    #[test]
    fn images_are_pinned() {
        use sha2::{Digest, Sha256};
        let images = [(1, 0, 64), (1, 1, 64), (1, 2, 64), (1, 3, 64), (7, 5, 97)];
        let digests = [
            "cc6bcb44b025cbb6bf33b6f0e658b744f58f28ae3c28914762995152d833acba",
            "6cbc206456e66cfe697ed22b07e336d0edee7bcd3d638fa0309d6e26e645e6ec",
            "2fd2e687ca8aa89d8d37f858e0192ffb85ee0e8f81f25d3fe612780848ef4fb2",
            "238591bee74cefe11accfb8ab1bf9e5f16ef0dda87992433800f96ae00f5bcc6",
            "18314280adc2926399754a36030298cfe1e4676721d95d455dce572668cfb836",
        ];
        let boxes = [
            "21.8, 2.9, 44.6, 24.6",
            "19.5, 23.5, 48.4, 48.1",
            "15.3, 16.2, 42.7, 42.2",
            "14.5, 24.9, 37.4, 44.5",
            "38.6, 17.6, 72.0, 46.1",
        ];
        for (((seed, index, size), digest), head_box) in images.into_iter().zip(digests).zip(boxes)
        {
            let item = generate(seed, index, size);
            let got = format!("{:x}", Sha256::digest(item.image.as_raw()));
            assert_eq!(got, digest, "generate({seed}, {index}, {size})");
            let b = item.head_box;
            let got = format!("{:.1}, {:.1}, {:.1}, {:.1}", b[0], b[1], b[2], b[3]);
            assert_eq!(got, head_box, "generate({seed}, {index}, {size})");
        }
    }
}
