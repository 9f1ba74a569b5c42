//! A synthetic cats-vs-dogs data set, deterministic from a seed: a cat-like or dog-like head on a
//! cluttered background with distractor shapes, and the head's ground-truth box.
//!
//! - cat: pointy triangular ears, whiskers, a small pink nose;
//! - dog: long floppy ears hanging beside the head, a big dark nose;
//! - both: random fur colour, size and position; eyes; a background of a random colour gradient,
//!   noise, and 6–12 distractor circles, rectangles and bars in random colours.
//!
//! Written as an ImageFolder (`train|val/cat|dog/<class>_<nnnn>.png`) plus `boxes.json` in the
//! annotation format the harness reads for Oxford-IIIT Pet (`images[].file`, `head_box_xyxy`).

use std::path::Path;

use anyhow::{Context, Result};
use image::{Rgb, RgbImage};
use rayon::prelude::*;

use model::rng::SplitMix64;

/// One generated image and its head box `[x0, y0, x1, y1]`.
pub struct SynthImage {
    /// The picture.
    pub image: RgbImage,
    /// 0 = cat, 1 = dog.
    pub label: usize,
    /// Ground-truth head box in pixels.
    pub head_box: [f32; 4],
}

fn colour(rng: &mut SplitMix64) -> [f32; 3] {
    [
        rng.next_f64() as f32 * 255.0,
        rng.next_f64() as f32 * 255.0,
        rng.next_f64() as f32 * 255.0,
    ]
}

fn range(rng: &mut SplitMix64, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * rng.next_f64() as f32
}

struct Canvas {
    size: usize,
    pixels: Vec<[f32; 3]>,
}

impl Canvas {
    fn fill(&mut self, inside: impl Fn(f32, f32) -> bool, c: [f32; 3]) {
        for y in 0..self.size {
            for x in 0..self.size {
                if inside(x as f32 + 0.5, y as f32 + 0.5) {
                    self.pixels[y * self.size + x] = c;
                }
            }
        }
    }

    fn ellipse(&mut self, cx: f32, cy: f32, rx: f32, ry: f32, angle: f32, c: [f32; 3]) {
        let (s, co) = angle.sin_cos();
        self.fill(
            |x, y| {
                let (dx, dy) = (x - cx, y - cy);
                let (u, v) = (dx * co + dy * s, -dx * s + dy * co);
                (u / rx).powi(2) + (v / ry).powi(2) <= 1.0
            },
            c,
        );
    }

    fn triangle(&mut self, p: [(f32, f32); 3], c: [f32; 3]) {
        let edge = |a: (f32, f32), b: (f32, f32), x: f32, y: f32| {
            (b.0 - a.0) * (y - a.1) - (b.1 - a.1) * (x - a.0)
        };
        self.fill(
            |x, y| {
                let d = [
                    edge(p[0], p[1], x, y),
                    edge(p[1], p[2], x, y),
                    edge(p[2], p[0], x, y),
                ];
                d.iter().all(|v| *v >= 0.0) || d.iter().all(|v| *v <= 0.0)
            },
            c,
        );
    }

    fn line(&mut self, a: (f32, f32), b: (f32, f32), width: f32, c: [f32; 3]) {
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len2 = (dx * dx + dy * dy).max(1e-6);
        self.fill(
            |x, y| {
                let t = (((x - a.0) * dx + (y - a.1) * dy) / len2).clamp(0.0, 1.0);
                let (px, py) = (a.0 + t * dx - x, a.1 + t * dy - y);
                px * px + py * py <= width * width / 4.0
            },
            c,
        );
    }
}

/// Where a head is drawn and in which colours.
struct Head {
    /// Centre.
    cx: f32,
    cy: f32,
    /// Radius.
    r: f32,
    /// The face's colour.
    fur: [f32; 3],
    /// The ears' colour (the fur, darker).
    dark: [f32; 3],
}

impl Head {
    /// A head of random size, position (at least its diameter from the edges) and fur, on an
    /// image of side `s`.
    fn random(rng: &mut SplitMix64, s: f32) -> Self {
        let r = range(rng, 0.11, 0.19) * s;
        let margin = 2.0 * r;
        let cx = range(rng, margin, s - margin);
        let cy = range(rng, margin, s - margin);
        let fur = colour(rng);
        let dark = fur.map(|v| v * 0.45);
        Self {
            cx,
            cy,
            r,
            fur,
            dark,
        }
    }
}

impl Canvas {
    /// A `size`×`size` canvas shading from `top` to `bottom`.
    fn gradient(size: usize, top: [f32; 3], bottom: [f32; 3]) -> Self {
        let s = size as f32;
        let mut canvas = Canvas {
            size,
            pixels: vec![[0.0; 3]; size * size],
        };
        for y in 0..size {
            let t = y as f32 / s;
            for x in 0..size {
                canvas.pixels[y * size + x] =
                    std::array::from_fn(|c| top[c] * (1.0 - t) + bottom[c] * t);
            }
        }
        canvas
    }

    /// 6–12 distractors: circles, rectangles, bars, in random colours.
    fn distractors(&mut self, rng: &mut SplitMix64) {
        let s = self.size as f32;
        for _ in 0..6 + rng.below(7) {
            let c = colour(rng);
            let (cx, cy) = (range(rng, 0.0, s), range(rng, 0.0, s));
            match rng.below(3) {
                0 => {
                    let r = range(rng, 0.03, 0.12) * s;
                    self.ellipse(cx, cy, r, r, 0.0, c);
                }
                1 => {
                    let (w, h) = (range(rng, 0.05, 0.25) * s, range(rng, 0.05, 0.25) * s);
                    self.fill(
                        |x, y| (x - cx).abs() < w / 2.0 && (y - cy).abs() < h / 2.0,
                        c,
                    );
                }
                _ => {
                    let angle = range(rng, 0.0, std::f32::consts::PI);
                    let len = range(rng, 0.2, 0.6) * s;
                    let (dx, dy) = (angle.cos() * len / 2.0, angle.sin() * len / 2.0);
                    self.line(
                        (cx - dx, cy - dy),
                        (cx + dx, cy + dy),
                        range(rng, 0.01, 0.04) * s,
                        c,
                    );
                }
            }
        }
    }

    /// A cat's head: pointy ears, whiskers, pink nose. Returns its box.
    fn cat(&mut self, head: &Head) -> [f32; 4] {
        let Head {
            cx,
            cy,
            r,
            fur,
            dark,
        } = *head;
        for side in [-1.0f32, 1.0] {
            let base = (cx + side * 0.75 * r, cy - 0.45 * r);
            let inner = (cx + side * 0.15 * r, cy - 0.8 * r);
            let tip = (cx + side * 0.8 * r, cy - 1.75 * r);
            self.triangle([base, inner, tip], dark);
        }
        self.ellipse(cx, cy, r, r * 0.92, 0.0, fur);
        self.triangle(
            [
                (cx - 0.15 * r, cy + 0.15 * r),
                (cx + 0.15 * r, cy + 0.15 * r),
                (cx, cy + 0.32 * r),
            ],
            [240.0, 120.0, 150.0],
        );
        for side in [-1.0f32, 1.0] {
            for k in [-1.0f32, 0.0, 1.0] {
                self.line(
                    (cx + side * 0.3 * r, cy + 0.35 * r),
                    (cx + side * 1.45 * r, cy + (0.2 + 0.25 * k) * r),
                    (0.05 * r).max(1.0),
                    [20.0, 20.0, 20.0],
                );
            }
        }
        [cx - 1.45 * r, cy - 1.75 * r, cx + 1.45 * r, cy + r]
    }

    /// A dog's head: floppy ears hanging beside it, big dark nose. Returns its box.
    fn dog(&mut self, head: &Head) -> [f32; 4] {
        let Head {
            cx,
            cy,
            r,
            fur,
            dark,
        } = *head;
        for side in [-1.0f32, 1.0] {
            self.ellipse(
                cx + side * 1.0 * r,
                cy + 0.35 * r,
                0.35 * r,
                0.95 * r,
                side * 0.25,
                dark,
            );
        }
        self.ellipse(cx, cy, r, r, 0.0, fur);
        self.ellipse(
            cx,
            cy + 0.4 * r,
            0.32 * r,
            0.24 * r,
            0.0,
            [15.0, 15.0, 15.0],
        );
        [cx - 1.35 * r, cy - r, cx + 1.35 * r, cy + 1.3 * r]
    }

    /// Both animals' eyes.
    fn eyes(&mut self, &Head { cx, cy, r, .. }: &Head) {
        for side in [-1.0f32, 1.0] {
            self.ellipse(
                cx + side * 0.38 * r,
                cy - 0.2 * r,
                0.12 * r,
                0.12 * r,
                0.0,
                [10.0, 10.0, 10.0],
            );
        }
    }

    /// The picture: each channel of each pixel (row by row) plus uniform noise in ±12, rounded.
    fn noisy_image(&self, rng: &mut SplitMix64) -> RgbImage {
        let size = self.size;
        RgbImage::from_fn(size as u32, size as u32, |x, y| {
            let p = self.pixels[y as usize * size + x as usize];
            Rgb(std::array::from_fn(|c| {
                (p[c] + range(rng, -12.0, 12.0)).round().clamp(0.0, 255.0) as u8
            }))
        })
    }
}

/// Generate image `index` of the set with `seed` (cats and dogs alternate: even = cat).
pub fn generate(seed: u64, index: usize, size: usize) -> SynthImage {
    let mut rng = SplitMix64::new(
        seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
            ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    let label = index % 2;
    let s = size as f32;
    let (top, bottom) = (colour(&mut rng), colour(&mut rng));
    let mut canvas = Canvas::gradient(size, top, bottom);
    canvas.distractors(&mut rng);
    let head = Head::random(&mut rng, s);
    let head_box = if label == 0 {
        canvas.cat(&head)
    } else {
        canvas.dog(&head)
    };
    canvas.eyes(&head);
    let image = canvas.noisy_image(&mut rng);
    let head_box = head_box.map(|v| v.clamp(0.0, s));
    SynthImage {
        image,
        label,
        head_box,
    }
}

/// Write `train` + `val` images (ImageFolder under `dir`) and `dir/boxes.json`.
pub fn write_dataset(dir: &Path, seed: u64, train: usize, val: usize, size: usize) -> Result<()> {
    let items: Vec<(&str, usize)> = (0..train)
        .map(|i| ("train", i))
        .chain((train..train + val).map(|i| ("val", i)))
        .collect();
    // Images in parallel; the entries keep their order.
    let entries = items
        .into_par_iter()
        .map(|(split, index)| -> Result<String> {
            let item = generate(seed, index, size);
            let class = ["cat", "dog"][item.label];
            let file = format!("{split}/{class}/{class}_{index:05}.png");
            let path = dir.join(&file);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            item.image
                .save(&path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            let b = item.head_box;
            Ok(format!(
                r#"{{"file": "{file}", "label": "{class}", "width": {size}, "height": {size}, "head_box_xyxy": [{:.1}, {:.1}, {:.1}, {:.1}]}}"#,
                b[0], b[1], b[2], b[3]
            ))
        })
        .collect::<Result<Vec<String>>>()?;
    let json = format!(
        "{{\"description\": \"synthetic cats vs dogs, seed {seed}, {size}x{size}: head boxes\", \"images\": [\n{}\n]}}\n",
        entries.join(",\n")
    );
    std::fs::write(dir.join("boxes.json"), json)
        .with_context(|| format!("cannot write {}/boxes.json", dir.display()))
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
