//! Drawing the synthetic pictures: a canvas of float RGB pixels, its shapes, the two animals'
//! heads and the noisy final picture.

use image::{Rgb, RgbImage};

use model::rng::SplitMix64;

pub(super) fn colour(rng: &mut SplitMix64) -> [f32; 3] {
    [
        rng.next_f64() as f32 * 255.0,
        rng.next_f64() as f32 * 255.0,
        rng.next_f64() as f32 * 255.0,
    ]
}

pub(super) fn range(rng: &mut SplitMix64, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * rng.next_f64() as f32
}

pub(super) struct Canvas {
    pub(super) size: usize,
    pub(super) pixels: Vec<[f32; 3]>,
}

impl Canvas {
    pub(super) fn fill(&mut self, inside: impl Fn(f32, f32) -> bool, c: [f32; 3]) {
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
pub(super) struct Head {
    /// Centre.
    pub(super) cx: f32,
    pub(super) cy: f32,
    /// Radius.
    pub(super) r: f32,
    /// The face's colour.
    pub(super) fur: [f32; 3],
    /// The ears' colour (the fur, darker).
    pub(super) dark: [f32; 3],
}

impl Head {
    /// A head of random size, position (at least its diameter from the edges) and fur, on an
    /// image of side `s`.
    pub(super) fn random(rng: &mut SplitMix64, s: f32) -> Self {
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
    pub(super) fn gradient(size: usize, top: [f32; 3], bottom: [f32; 3]) -> Self {
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
    pub(super) fn distractors(&mut self, rng: &mut SplitMix64) {
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
    pub(super) fn cat(&mut self, head: &Head) -> [f32; 4] {
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
    pub(super) fn dog(&mut self, head: &Head) -> [f32; 4] {
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
    pub(super) fn eyes(&mut self, &Head { cx, cy, r, .. }: &Head) {
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
    pub(super) fn noisy_image(&self, rng: &mut SplitMix64) -> RgbImage {
        let size = self.size;
        RgbImage::from_fn(size as u32, size as u32, |x, y| {
            let p = self.pixels[y as usize * size + x as usize];
            Rgb(std::array::from_fn(|c| {
                (p[c] + range(rng, -12.0, 12.0)).round().clamp(0.0, 255.0) as u8
            }))
        })
    }
}
