//! How a logger's maps move while the model trains: the drift scalars (1 − mean Spearman ρ of
//! each image's map with the previous drawing's, and with the first drawing's — step 0, before
//! any update) and the frames of the evolution strip (each image's map at a spread of the drawn
//! steps, the first and the latest always included).

use rayon::prelude::*;
use std::collections::HashMap;

use crate::scores::ranks::spearman;

/// The most frames a strip keeps: beyond it every other middle frame is dropped, so long runs
/// keep an evenly thinned subset.
pub const MAX_FRAMES: usize = 11;

/// The maps a logger drew before: what the drifts are measured against, and the strip's frames.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MapHistory {
    /// Maps [N·H·W] of the first drawing.
    start: Option<Vec<f32>>,
    /// Maps [N·H·W] of the latest drawing.
    previous: Option<Vec<f32>>,
    /// (step, maps quantised to 0..=255) of the kept frames, in step order.
    frames: Vec<(usize, Vec<u8>)>,
}

/// The drifts of one drawing (`None` when there is nothing to compare with yet).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Drift {
    /// Against the previous drawing.
    pub drift: Option<f32>,
    /// Against the first drawing (step 0).
    pub from_start: Option<f32>,
}

/// 1 − the mean Spearman ρ of corresponding maps (`plane` values each) of `a` and `b`.
pub fn drift(a: &[f32], b: &[f32], plane: usize) -> f32 {
    let n = (a.len().min(b.len()) / plane.max(1)).max(1);
    // Images in parallel, summed in order (the same figure on any thread count).
    let rhos: Vec<f32> = a
        .par_chunks(plane.max(1))
        .zip(b.par_chunks(plane.max(1)))
        .map(|(x, y)| spearman(x, y))
        .collect();
    1.0 - rhos.iter().sum::<f32>() / n as f32
}

impl MapHistory {
    /// Record the maps [N·plane] drawn at `step`, each in [0, 1]; returns their drifts.
    pub fn record(&mut self, step: usize, maps: &[f32], plane: usize) -> Drift {
        let against = |other: &Option<Vec<f32>>| {
            other
                .as_ref()
                .filter(|o| o.len() == maps.len())
                .map(|o| drift(o, maps, plane))
        };
        let result = Drift {
            drift: against(&self.previous),
            from_start: against(&self.start),
        };
        if self.start.is_none() {
            self.start = Some(maps.to_vec());
        }
        self.previous = Some(maps.to_vec());
        self.frames.retain(|(s, _)| *s != step);
        self.frames.push((
            step,
            maps.iter()
                .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
                .collect(),
        ));
        if self.frames.len() > MAX_FRAMES {
            let last = self.frames.len() - 1;
            let mut i = 0;
            self.frames.retain(|_| {
                let keep = i == 0 || i == last || i % 2 == 0;
                i += 1;
                keep
            });
        }
        result
    }

    /// The kept frames: (step, maps quantised to 0..=255), in step order.
    pub fn frames(&self) -> &[(usize, Vec<u8>)] {
        &self.frames
    }

    /// The history as named byte blobs (for a checkpoint; empty before the first drawing).
    pub fn save(&self) -> Vec<(String, Vec<u8>)> {
        let (Some(start), Some(previous)) = (&self.start, &self.previous) else {
            return Vec::new();
        };
        let floats = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        vec![
            ("start".into(), floats(start)),
            ("previous".into(), floats(previous)),
            (
                "frame_steps".into(),
                self.frames
                    .iter()
                    .flat_map(|(s, _)| (*s as u64).to_le_bytes())
                    .collect(),
            ),
            (
                "frames".into(),
                self.frames.iter().flat_map(|(_, m)| m.clone()).collect(),
            ),
        ]
    }

    /// A history [`save`](Self::save)d before (no blobs: an empty history).
    pub fn load(blobs: &HashMap<String, Vec<u8>>) -> Result<Self, String> {
        if blobs.is_empty() {
            return Ok(Self::default());
        }
        let blob = |name: &str| blobs.get(name).ok_or(format!("`{name}` is missing"));
        let floats = |name: &str| -> Result<Vec<f32>, String> {
            let bytes = blob(name)?;
            if !bytes.len().is_multiple_of(4) {
                return Err(format!("`{name}` is not f32 values"));
            }
            Ok(bytes
                .chunks(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        };
        let (start, previous) = (floats("start")?, floats("previous")?);
        let steps = blob("frame_steps")?;
        let frames = blob("frames")?;
        let size = start.len();
        if previous.len() != size
            || !steps.len().is_multiple_of(8)
            || frames.len() != steps.len() / 8 * size
        {
            return Err("the saved maps have inconsistent sizes".into());
        }
        let frames = steps
            .chunks(8)
            .zip(frames.chunks(size.max(1)))
            .map(|(s, m)| {
                let mut step = [0u8; 8];
                step.copy_from_slice(s);
                (u64::from_le_bytes(step) as usize, m.to_vec())
            })
            .collect();
        Ok(Self {
            start: Some(start),
            previous: Some(previous),
            frames,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drifts_against_the_previous_and_the_first_drawing() {
        let mut h = MapHistory::default();
        let a = [0.0, 0.5, 1.0, 0.2, 0.1, 0.9, 0.3, 0.4];
        let reversed: Vec<f32> = a.iter().rev().copied().collect();
        assert_eq!(
            h.record(0, &a, 4),
            Drift {
                drift: None,
                from_start: None
            }
        );
        let same = h.record(1, &a, 4);
        assert_eq!((same.drift, same.from_start), (Some(0.0), Some(0.0)));
        let moved = h.record(2, &reversed, 4);
        let d = moved.drift.unwrap();
        assert!(d > 0.5, "{d}");
        assert_eq!(moved.from_start, moved.drift);
        let back = h.record(3, &a, 4);
        assert_eq!(back.from_start, Some(0.0));
        assert!(back.drift.unwrap() > 0.5);
    }

    #[test]
    fn frames_keep_first_and_last_and_thin_evenly() {
        let mut h = MapHistory::default();
        for step in 0..=40 {
            h.record(step, &[step as f32 / 40.0, 0.5], 2);
            assert!(h.frames().len() <= MAX_FRAMES);
            assert_eq!(h.frames()[0].0, 0);
            assert_eq!(h.frames().last().unwrap().0, step);
        }
        let steps: Vec<usize> = h.frames().iter().map(|f| f.0).collect();
        assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
        assert!(steps.len() >= 6, "{steps:?}");
    }

    #[test]
    fn saved_history_loads_back_and_bad_blobs_are_errors() {
        let mut h = MapHistory::default();
        h.record(0, &[0.1, 0.2, 0.3, 0.4], 2);
        h.record(2, &[0.4, 0.3, 0.2, 0.1], 2);
        let blobs: HashMap<String, Vec<u8>> = h.save().into_iter().collect();
        assert_eq!(MapHistory::load(&blobs).unwrap(), {
            let mut q = h.clone();
            // Quantised frames and exact maps both survive.
            q.frames = h.frames.clone();
            q
        });
        assert_eq!(
            MapHistory::load(&HashMap::new()).unwrap(),
            MapHistory::default()
        );
        let mut broken = blobs.clone();
        broken.get_mut("frames").unwrap().pop();
        assert!(MapHistory::load(&broken).is_err());
        broken.remove("start");
        assert!(MapHistory::load(&broken).is_err());
    }
}
