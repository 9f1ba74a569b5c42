//! The shortcut in the synthetic set: a spurious cue that a model can learn instead of the
//! animal ("Clever Hans"). The cue is a striped badge in a corner of the picture: cyan stripes
//! across for "cat", magenta stripes upright for "dog", on a dim shade of the same colour, in a
//! corner that misses the head box where one does.
//!
//! Why stripes: the quickstart's backbone was pretrained on animals of random fur colour, so its
//! features hardly tell colours apart, and a plain coloured square was learned late or not at
//! all; stripe orientation is what its early layers already see. Why dim between the stripes: on
//! black, the badge's edges drew the untrained model's map to it before any training (a shortcut
//! already "found" at step 0); at 25 % of the colour it draws little until the model learns it.
//!
//! - train: the mark goes with the label in `mark_agrees` of the images, and the animal in
//!   `animal_agrees`; when the animal alone explains fewer labels than the mark, the mark is
//!   the better predictor and a model that can see it learns it.
//! - val: the validation animals, each with a mark of a random colour (uncorrelated with the
//!   label): the maps drawn on them show whether the model looks at the mark.
//! - eval `cue`: the same animals, the mark going with the label; eval `clean`: the same animals
//!   without a mark. Accuracy on `cue` minus accuracy on `clean` is what the shortcut is worth.

use model::rng::SplitMix64;

use super::canvas::Canvas;
use crate::config::CueConfig;

/// The mark's colour per class: cyan for cat (0), magenta for dog (1).
pub const MARK_COLOURS: [[f32; 3]; 2] = [[0.0, 235.0, 235.0], [235.0, 0.0, 235.0]];

/// The shade between the stripes, as a share of the stripes' colour.
const DIM: f32 = 0.25;

/// The eval sets a cue adds (each its own folder of the set).
pub const EVAL_SETS: [&str; 2] = ["cue", "clean"];

/// One mark to draw: its class's colour and its side in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mark {
    /// Whose colour: 0 = cat (cyan), 1 = dog (magenta).
    pub class: usize,
    /// Side in pixels.
    pub side: f32,
}

impl Mark {
    /// A mark of `class`'s colour, `side` pixels square.
    pub fn new(class: usize, side: usize) -> Self {
        Self {
            class,
            side: side as f32,
        }
    }
}

/// A random stream of image `index`'s own for one purpose (`salt`), apart from its picture's.
fn stream(seed: u64, index: usize, salt: u64) -> SplitMix64 {
    SplitMix64::new(
        seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ (index as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9)
            ^ salt.wrapping_mul(0x94d0_49bb_1331_11eb),
    )
}

/// The stream that places image `index`'s mark (the same in every variant of the image).
pub(super) fn corner_rng(seed: u64, index: usize) -> SplitMix64 {
    stream(seed, index, 1)
}

impl CueConfig {
    /// The mark's side for pictures of side `size`: `size` px, by default a quarter of the
    /// picture's side.
    pub fn side(&self, size: usize) -> usize {
        self.size.unwrap_or(size / 4)
    }

    /// Training image `index` (label `index % 2`): the animal drawn and the mark's class.
    pub fn training_image(&self, seed: u64, index: usize) -> (usize, usize) {
        let label = index % 2;
        let mut rng = stream(seed, index, 2);
        let animal = if rng.next_f64() < self.animal_agrees {
            label
        } else {
            1 - label
        };
        let mark = if rng.next_f64() < self.mark_agrees {
            label
        } else {
            1 - label
        };
        (animal, mark)
    }

    /// The mark of validation image `index` in `split`: a random colour in `val`, the label's
    /// in `cue`, none in `clean`.
    pub fn eval_mark(&self, split: &str, seed: u64, index: usize, side: usize) -> Option<Mark> {
        match split {
            "val" => Some(Mark::new(stream(seed, index, 3).below(2), side)),
            "cue" => Some(Mark::new(index % 2, side)),
            _ => None,
        }
    }
}

impl Canvas {
    /// Paint `mark` in a corner (3 % of the side in from the edges) that misses `head_box`,
    /// chosen by `rng` among those that do (among all four when none does). Returns its box.
    pub(super) fn mark(
        &mut self,
        mark: Mark,
        head_box: &[f32; 4],
        rng: &mut SplitMix64,
    ) -> [f32; 4] {
        let s = self.size as f32;
        let (inset, side) = ((0.03 * s).round(), mark.side);
        let far = s - inset - side;
        let corners = [(inset, inset), (far, inset), (inset, far), (far, far)]
            .map(|(x, y)| [x, y, x + side, y + side]);
        let misses = |b: &[f32; 4]| {
            b[2] <= head_box[0] || head_box[2] <= b[0] || b[3] <= head_box[1] || head_box[3] <= b[1]
        };
        let free: Vec<[f32; 4]> = corners.iter().copied().filter(|b| misses(b)).collect();
        let choices = if free.is_empty() {
            corners.to_vec()
        } else {
            free
        };
        let b = choices[rng.below(choices.len())];
        let colour = MARK_COLOURS[mark.class];
        let stripe = (side / 8.0).max(1.0);
        // Stripes of the class's colour on a dim shade of it: across for cat, upright for dog.
        let across = mark.class == 0;
        self.fill(
            |x, y| b[0] <= x && x < b[2] && b[1] <= y && y < b[3],
            colour.map(|c| c * DIM),
        );
        self.fill(
            |x, y| {
                let t = if across { y - b[1] } else { x - b[0] };
                b[0] <= x
                    && x < b[2]
                    && b[1] <= y
                    && y < b[3]
                    && ((t / stripe) as usize).is_multiple_of(2)
            },
            colour,
        );
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SyntheticConfig;
    use crate::data::synth::draw;

    fn cue() -> CueConfig {
        CueConfig {
            size: None,
            mark_agrees: 1.0,
            animal_agrees: 0.7,
        }
    }

    #[test]
    fn variants_differ_only_in_the_animal_and_the_mark() {
        let mark = Some(Mark::new(1, 24));
        let (a, b) = (draw(3, 11, 96, 1, mark), draw(3, 11, 96, 1, None));
        let cue_box = a.cue_box.expect("a mark's box");
        assert_eq!((a.head_box, b.cue_box), (b.head_box, None));
        assert_eq!(cue_box[2] - cue_box[0], 24.0);
        let (ra, rb) = (a.image.as_raw(), b.image.as_raw());
        let differ = ra.iter().zip(rb).filter(|(x, y)| x != y).count();
        assert!(
            differ > 0 && differ <= 24 * 24 * 3,
            "{differ} values differ"
        );
        // The mark misses the head where a corner allows it.
        let h = a.head_box;
        let overlaps =
            cue_box[0] < h[2] && h[0] < cue_box[2] && cue_box[1] < h[3] && h[1] < cue_box[3];
        assert!(!overlaps, "{cue_box:?} over {h:?}");
        // The same corner in every variant of the image; magenta stripes upright for dog,
        // cyan ones across for cat.
        let c = draw(3, 11, 96, 1, Some(Mark::new(0, 24)));
        assert_eq!(c.cue_box, a.cue_box);
        let at = |img: &image::RgbImage, dx: f32, dy: f32| {
            img.get_pixel((cue_box[0] + dx) as u32, (cue_box[1] + dy) as u32)
                .0
        };
        // 3-px stripes: pixel 1 in a stripe, pixel 4 between two, at a quarter of the colour
        // (red for magenta, green for cyan).
        for dy in [1.0, 4.0] {
            assert!(at(&a.image, 1.0, dy)[0] > 200 && at(&a.image, 4.0, dy)[0] < 80);
        }
        for dx in [1.0, 4.0] {
            assert!(at(&c.image, dx, 1.0)[1] > 200 && at(&c.image, dx, 4.0)[1] < 80);
        }
    }

    /// The shortcut quickstart's figures depend on the badge's exact pixels: a change to its
    /// drawing shows up here (and then the cache directory's `badge1` in run/setup.rs must change too, or runs
    /// would keep reading sets drawn the old way).
    #[test]
    fn a_badged_image_is_pinned() {
        use sha2::{Digest, Sha256};
        let item = draw(1, 7, 64, 0, Some(Mark::new(1, 16)));
        let digest = format!("{:x}", Sha256::digest(item.image.as_raw()));
        let pinned = "9c151ad3c187321e469f15782d3e62487d8c6cd005c59e77253537ff2c7bffad";
        assert_eq!(
            (digest.as_str(), item.cue_box),
            (pinned, Some([46.0, 2.0, 62.0, 18.0]))
        );
    }

    #[test]
    fn training_shares_follow_the_config() {
        let cue = CueConfig {
            mark_agrees: 0.9,
            ..cue()
        };
        let n = 4000;
        let (mut animal, mut mark) = (0, 0);
        for i in 0..n {
            let (a, m) = cue.training_image(5, i);
            animal += usize::from(a == i % 2);
            mark += usize::from(m == i % 2);
        }
        let share = |k: usize| k as f64 / n as f64;
        assert!((share(animal) - 0.7).abs() < 0.03, "{}", share(animal));
        assert!((share(mark) - 0.9).abs() < 0.02, "{}", share(mark));
    }

    #[test]
    fn the_written_set_has_eval_sets_and_cue_boxes() {
        let dir = tempfile::tempdir().unwrap();
        let spec = SyntheticConfig {
            seed: 2,
            train: 6,
            val: 4,
            size: 64,
            cue: Some(cue()),
        };
        crate::data::synth::write_dataset(dir.path(), &spec).unwrap();
        for split in ["train", "val", "cue", "clean"] {
            let n = walk(&dir.path().join(split));
            assert_eq!(n, if split == "train" { 6 } else { 4 }, "{split}");
        }
        let boxes = std::fs::read_to_string(dir.path().join("boxes.json")).unwrap();
        assert_eq!(boxes.matches("cue_box_xyxy").count(), 10, "{boxes}");
        assert!(!boxes.contains("clean/") && !boxes.contains("\"cue/"));
        // The eval sets' files are named apart from val's, so no box matches them.
        let names: Vec<String> = std::fs::read_dir(dir.path().join("clean/cat"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| n.ends_with("-clean.png")), "{names:?}");
    }

    fn walk(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| std::fs::read_dir(e.unwrap().path()).unwrap().count())
            .sum()
    }
}
