//! ROAD against pytorch-grad-cam 1.5.7 (`tests/fixtures/road`, made by
//! `scripts/make_road_fixture.py` with the imputer's noise at 0): numpy's percentile masks
//! exactly, scipy's imputation on small images and on the photos, and the full-model MoRF, LeRF
//! and combined scores of the VGG16/16 gap-linear network of `tests/fixtures/vgg16-w16-methods`.
//! Then hand-made cases with known answers.

mod common;

use std::path::PathBuf;

use burn::tensor::{Tensor, TensorData};
use callbacks::scores::road::{
    self, impute, percentile, removal_keep_mask, road_scores, Imputer, Order, RoadError,
    RoadSummary, PERCENTILES,
};
use common::{max_abs_diff, to_vec, Fixture};
use model::HeadKind;
use safetensors::SafeTensors;

const IMPUTE_TOL: f32 = 1e-6;
const SCORE_TOL: f32 = 1e-6;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/road")
}

struct Reference {
    bytes: Vec<u8>,
    meta: serde_json::Value,
}

impl Reference {
    fn load() -> Self {
        let dir = fixture_dir();
        let bytes = std::fs::read(dir.join("road.safetensors")).expect("read road.safetensors");
        let meta = std::fs::read_to_string(dir.join("meta.json")).expect("read meta.json");
        let meta = serde_json::from_str(&meta).expect("parse meta.json");
        Self { bytes, meta }
    }

    fn tensor(&self, key: &str) -> (Vec<usize>, Vec<u8>) {
        let st = SafeTensors::deserialize(&self.bytes).expect("parse road.safetensors");
        let view = st.tensor(key).unwrap_or_else(|e| panic!("{key}: {e}"));
        (view.shape().to_vec(), view.data().to_vec())
    }

    fn floats(&self, key: &str) -> (Vec<usize>, Vec<f32>) {
        let (shape, data) = self.tensor(key);
        let values = data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (shape, values)
    }

    fn keep(&self, key: &str) -> Vec<bool> {
        self.tensor(key).1.into_iter().map(|v| v != 0).collect()
    }

    fn names(&self, key: &str) -> Vec<String> {
        match &self.meta[key] {
            serde_json::Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().into()).collect(),
            serde_json::Value::Object(o) => o.keys().cloned().collect(),
            _ => panic!("meta.json: no {key}"),
        }
    }
}

const ORDERS: [(&str, Order); 2] = [
    ("morf", Order::MostRelevantFirst),
    ("lerf", Order::LeastRelevantFirst),
];

#[test]
fn keep_masks_and_imputations_match_pytorch_grad_cam() {
    let r = Reference::load();
    let (mut worst, mut failures) = (0.0f32, Vec::new());
    for name in r.names("percentile_cases") {
        let (shape, image) = r.floats(&format!("{name}/image"));
        let (_, map) = r.floats(&format!("{name}/map"));
        let [c, h, w] = shape[..] else { panic!() };
        for (order_name, order) in ORDERS {
            for p in [10, 50, 90] {
                let key = format!("{name}/{order_name}_{p}");
                let keep = removal_keep_mask(&map, p as f32, order);
                let expected = r.keep(&format!("{key}/keep"));
                let wrong = keep.iter().zip(&expected).filter(|(a, b)| a != b).count();
                if wrong > 0 {
                    failures.push(format!("{key}: {wrong} mask pixels differ"));
                }
                let ours = impute(&image, c, h, w, &expected).expect("impute");
                let err = max_abs_diff(&ours, &r.floats(&format!("{key}/imputed")).1);
                println!(
                    "{key}: removed {}, max |Δ| {err:.2e}",
                    keep.iter().filter(|k| !**k).count()
                );
                worst = worst.max(err);
            }
        }
    }
    let (shape, image) = r.floats("masks/image");
    let [c, h, w] = shape[..] else { panic!() };
    for name in r.names("mask_cases") {
        let keep = r.keep(&format!("masks/{name}/keep"));
        let ours = impute(&image, c, h, w, &keep).expect("impute");
        let err = max_abs_diff(&ours, &r.floats(&format!("masks/{name}/imputed")).1);
        println!("mask case {name}: max |Δ| {err:.2e}");
        worst = worst.max(err);
    }
    println!("worst imputation deviation {worst:.2e}");
    assert!(failures.is_empty(), "{failures:?}");
    assert!(worst <= IMPUTE_TOL, "imputation off by {worst}");
}

#[test]
fn full_model_road_scores_match_pytorch_grad_cam() {
    let r = Reference::load();
    let fx = Fixture::local("vgg16-w16-methods");
    let model = fx.classifier(HeadKind::GapLinear);
    let input = fx.tensor::<4>("input");
    let [n, c, h, w] = input.dims();
    let images = to_vec(input);
    let logits = to_vec(model.forward(fx.tensor::<4>("input")));
    // The predicted class's probability: sigmoid(±logit), the sign fixed by the original image.
    let signs: Vec<f32> = logits
        .iter()
        .map(|&l| if l >= 0.0 { 1.0 } else { -1.0 })
        .collect();
    let device = fx.device.clone();
    let probability = |batch: &[f32], k: usize| -> Vec<f32> {
        let x = Tensor::<4>::from_data(TensorData::new(batch.to_vec(), [k, c, h, w]), &device);
        let out = to_vec(model.forward(x));
        out.iter()
            .zip(&signs)
            .map(|(l, s)| 1.0 / (1.0 + (-s * l).exp()))
            .collect()
    };
    let original = probability(&images, n);
    let err = max_abs_diff(&original, &r.floats("model/probability").1);
    println!("original probabilities {original:?}: max |Δ| {err:.2e}");
    assert!(err <= SCORE_TOL);
    let sets: Vec<String> = r.meta["model"]["map_sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().into())
        .collect();
    let mut worst = 0.0f32;
    for set in sets {
        let maps = to_vec(fx.tensor::<3>(&set));
        let scores = road_scores(
            &images,
            [n, c, h, w],
            &maps,
            &PERCENTILES,
            &Imputer::default(),
            |batch: &[f32], k: usize| Ok(probability(batch, k)),
        )
        .expect("road scores");
        let flat = |rows: &[Vec<f32>]| rows.concat();
        for (name, ours) in [
            ("morf", flat(&scores.morf)),
            ("lerf", flat(&scores.lerf)),
            ("combined", scores.combined.clone()),
        ] {
            let expected = r.floats(&format!("model/{set}/{name}")).1;
            let err = max_abs_diff(&ours, &expected);
            println!("{set} {name}: max |Δ| {err:.2e}\n  ours {ours:?}\n  ref  {expected:?}");
            worst = worst.max(err);
        }
    }
    // The photos' imputed images at MoRF-10 (90 % removed, 96x128).
    let maps = to_vec(fx.tensor::<3>("scorecam"));
    let expected = r.floats("model/scorecam/morf_10_imputed").1;
    let mut ours = Vec::new();
    for i in 0..n {
        let keep = removal_keep_mask(
            &maps[i * h * w..(i + 1) * h * w],
            10.0,
            Order::MostRelevantFirst,
        );
        let image = &images[i * c * h * w..(i + 1) * c * h * w];
        ours.extend(impute(image, c, h, w, &keep).expect("impute"));
    }
    let err = max_abs_diff(&ours, &expected);
    println!("photos, MoRF-10 imputation: max |Δ| {err:.2e}");
    assert!(err <= IMPUTE_TOL, "photo imputation off by {err}");
    assert!(worst <= SCORE_TOL, "ROAD scores off by {worst}");
}

/// `road::evaluate` (the loggers' entry: 8-bit photos, a class per photo) equals
/// `road_scores` on the photos normalised by hand with ImageNet's mean and std and the
/// probability of each photo's predicted class.
#[test]
fn evaluate_normalises_the_photos_and_scores_the_given_classes() {
    let fx = Fixture::local("vgg16-w16-methods");
    let model = fx.classifier(HeadKind::GapLinear);
    let input = fx.tensor::<4>("input");
    let [n, c, h, w] = input.dims();
    let (mean, std) = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
    let values = to_vec(input);
    let photos: Vec<image::RgbImage> = (0..n)
        .map(|i| {
            image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
                image::Rgb(std::array::from_fn(|k| {
                    let v = values[((i * c + k) * h + y as usize) * w + x as usize];
                    ((v * std[k] + mean[k]) * 255.0).round().clamp(0.0, 255.0) as u8
                }))
            })
        })
        .collect();
    let by_hand: Vec<f32> = photos
        .iter()
        .flat_map(|p| {
            (0..c).flat_map(move |k| {
                p.pixels()
                    .map(move |px| (f32::from(px.0[k]) / 255.0 - mean[k]) / std[k])
            })
        })
        .collect();
    let device = fx.device.clone();
    let forward = |batch: &[f32], k: usize| {
        let x = Tensor::<4>::from_data(TensorData::new(batch.to_vec(), [k, c, h, w]), &device);
        to_vec(model.forward(x))
    };
    let logits = forward(&by_hand, n);
    let classes: Vec<usize> = logits.iter().map(|&z| usize::from(z >= 0.0)).collect();
    let maps = to_vec(fx.tensor::<3>("gradcam"));
    let expected = road_scores(
        &by_hand,
        [n, c, h, w],
        &maps,
        &PERCENTILES,
        &Imputer::default(),
        |batch: &[f32], k: usize| {
            Ok(forward(batch, k)
                .iter()
                .zip(&classes)
                .map(|(z, &class)| {
                    let signed = if class == 1 { *z } else { -z };
                    1.0 / (1.0 + (-signed).exp())
                })
                .collect())
        },
    )
    .unwrap();
    let mean_of = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
    let ours = road::evaluate(&model, &photos, &maps, &classes, &device).unwrap();
    let want = [
        mean_of(&expected.morf.concat()),
        mean_of(&expected.lerf.concat()),
        mean_of(&expected.combined),
    ];
    for ((name, got), want) in RoadSummary::NAMES.iter().zip(ours.values()).zip(want) {
        assert!(
            (f64::from(got) - want).abs() < 1e-6,
            "{name}: {got} vs {want}"
        );
    }
    // The class matters: the other class's probability moves the other way.
    let flipped: Vec<usize> = classes.iter().map(|c| 1 - c).collect();
    let other = road::evaluate(&model, &photos, &maps, &flipped, &device).unwrap();
    assert!(
        (other.morf - ours.morf).abs() > 1e-3,
        "{other:?} vs {ours:?}"
    );
    // Maps shorter than the photos are an error, not a panic.
    let short = road::evaluate(&model, &photos, &maps[..h * w], &classes, &device);
    assert!(
        matches!(short, Err(RoadError::Shape { what: "maps", .. })),
        "{short:?}"
    );
}

/// A smooth 3×h×w test image.
fn image(h: usize, w: usize) -> Vec<f32> {
    (0..3 * h * w)
        .map(|i| {
            let (c, r, q) = (i / (h * w), i / w % h, i % w);
            (r as f32 * 0.3 + c as f32).sin() + (q as f32 * 0.17).cos()
        })
        .collect()
}

#[test]
fn a_single_removed_pixel_is_the_weighted_mean_of_its_neighbours() {
    let (h, w) = (5, 6);
    let img = image(h, w);
    let at = |c: usize, r: usize, q: usize| img[c * h * w + r * w + q];
    for (r, q) in [(2, 3), (0, 0), (4, 2), (0, 5)] {
        let mut keep = vec![true; h * w];
        keep[r * w + q] = false;
        let out = impute(&img, 3, h, w, &keep).unwrap();
        for c in 0..3 {
            let (mut sum, mut total) = (0.0f64, 0.0f64);
            for (dr, dq) in (-1i32..=1).flat_map(|a| (-1i32..=1).map(move |b| (a, b))) {
                let (rr, qq) = (r as i32 + dr, q as i32 + dq);
                if (dr, dq) == (0, 0) || rr < 0 || qq < 0 || rr >= h as i32 || qq >= w as i32 {
                    continue;
                }
                let weight = if dr == 0 || dq == 0 {
                    1.0 / 6.0
                } else {
                    1.0 / 12.0
                };
                sum += weight * f64::from(at(c, rr as usize, qq as usize));
                total += weight;
            }
            let got = out[c * h * w + r * w + q];
            assert!(
                (f64::from(got) - sum / total).abs() < 1e-6,
                "({r}, {q}) channel {c}: {got} vs {}",
                sum / total
            );
        }
        // Every known pixel is unchanged, bit for bit.
        for (i, (a, b)) in out.iter().zip(&img).enumerate() {
            if i % (h * w) != r * w + q {
                assert_eq!(a.to_bits(), b.to_bits());
            }
        }
    }
}

#[test]
fn one_known_pixel_spreads_everywhere_and_none_known_gives_zero() {
    let (h, w) = (9, 11);
    let img = image(h, w);
    let mut keep = vec![false; h * w];
    keep[4 * w + 7] = true;
    let out = impute(&img, 3, h, w, &keep).unwrap();
    for c in 0..3 {
        let v = img[c * h * w + 4 * w + 7];
        assert!(out[c * h * w..(c + 1) * h * w]
            .iter()
            .all(|x| (x - v).abs() < 1e-5));
    }
    // Nothing known: the system is singular; the documented fill is 0 (what scipy returns).
    let none = vec![false; h * w];
    assert!(impute(&img, 3, h, w, &none)
        .unwrap()
        .iter()
        .all(|&x| x == 0.0));
    let noisy = Imputer {
        noise: 0.5,
        seed: 3,
        ..Imputer::default()
    };
    let out = noisy.impute(&img, 3, h, w, &none).unwrap();
    let mean = out.iter().sum::<f32>() / out.len() as f32;
    let sd = (out.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / out.len() as f32).sqrt();
    assert!(out.iter().all(|x| x.is_finite()) && mean.abs() < 0.15 && (sd - 0.5).abs() < 0.1);
    // A constant map removes everything, at every percentile and in both orders.
    for (_, order) in ORDERS {
        assert!(removal_keep_mask(&vec![0.25; h * w], 50.0, order)
            .iter()
            .all(|k| !k));
    }
}

#[test]
fn noise_is_seeded_and_only_on_imputed_pixels() {
    let (h, w) = (8, 8);
    let img = image(h, w);
    let keep: Vec<bool> = (0..h * w).map(|i| i % 3 != 0).collect();
    let noisy = |seed| {
        Imputer {
            noise: 0.01,
            seed,
            ..Imputer::default()
        }
        .impute(&img, 3, h, w, &keep)
        .unwrap()
    };
    let clean = impute(&img, 3, h, w, &keep).unwrap();
    let (a, b, other) = (noisy(1), noisy(1), noisy(2));
    assert_eq!(a, b);
    assert_ne!(a, other);
    for (i, ((x, y), z)) in a.iter().zip(&clean).zip(&img).enumerate() {
        if keep[i % (h * w)] {
            assert_eq!(x, z);
        } else {
            assert!((x - y).abs() < 0.08 && x != y);
        }
    }
}

/// exp(−d² / `spread`), d the distance from the centre of an h × w grid.
fn centred_gaussian(h: usize, w: usize, spread: f32) -> Vec<f32> {
    let (cr, cc) = ((h as f32 - 1.0) / 2.0, (w as f32 - 1.0) / 2.0);
    (0..h * w)
        .map(|i| {
            let (r, q) = ((i / w) as f32 - cr, (i % w) as f32 - cc);
            (-(r * r + q * q) / spread).exp()
        })
        .collect()
}

#[test]
fn the_solver_reports_non_convergence() {
    let (h, w) = (64, 64);
    let img = image(h, w);
    let map = centred_gaussian(h, w, 800.0);
    let keep = removal_keep_mask(&map, 10.0, Order::MostRelevantFirst);
    let capped = Imputer {
        max_iterations: 1,
        ..Imputer::default()
    };
    match capped.impute(&img, 3, h, w, &keep) {
        Err(RoadError::NotConverged {
            iterations: 1,
            residual,
        }) => assert!(residual > 1e-10),
        other => panic!("expected NotConverged, got {other:?}"),
    }
    assert!(impute(&img, 3, h, w, &keep).is_ok());
    assert!(matches!(
        impute(&img, 3, h, w, &keep[1..]),
        Err(RoadError::Shape {
            what: "keep mask",
            ..
        })
    ));
}

#[test]
fn percentile_masks_keep_the_expected_counts() {
    let map: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
    assert!((percentile(&map, 10.0) - 0.099).abs() < 1e-6);
    for p in [10, 25, 50, 90] {
        let morf = removal_keep_mask(&map, p as f32, Order::MostRelevantFirst);
        let lerf = removal_keep_mask(&map, p as f32, Order::LeastRelevantFirst);
        assert_eq!(morf.iter().filter(|k| **k).count(), p);
        assert_eq!(lerf.iter().filter(|k| **k).count(), p);
        // MoRF keeps the least relevant pixels, LeRF the most relevant ones.
        assert!(morf[0] && !morf[99] && lerf[99] && !lerf[0]);
    }
    let mut with_nan = map.clone();
    with_nan[3] = f32::NAN;
    assert!(removal_keep_mask(&with_nan, 50.0, Order::MostRelevantFirst)
        .iter()
        .all(|k| !k));
}

#[test]
fn road_scores_follow_the_combined_formula() {
    let (n, h, w) = (2, 12, 10);
    let images: Vec<f32> = (0..n).flat_map(|_| image(h, w)).collect();
    let maps: Vec<f32> = (0..n * h * w)
        .map(|i| ((i * 37) % 101) as f32 / 100.0)
        .collect();
    // A "probability": the mean of each image.
    let probability = |batch: &[f32], k: usize| -> Vec<f32> {
        assert_eq!(k, n);
        batch
            .chunks(3 * h * w)
            .map(|x| x.iter().sum::<f32>() / x.len() as f32)
            .collect()
    };
    let s = road_scores(
        &images,
        [n, 3, h, w],
        &maps,
        &[10.0, 50.0],
        &Imputer::default(),
        |batch: &[f32], k: usize| Ok(probability(batch, k)),
    )
    .unwrap();
    // A classifier that fails is an error, not a score.
    let failing = road_scores(
        &images,
        [n, 3, h, w],
        &maps,
        &[10.0],
        &Imputer::default(),
        |_: &[f32], _: usize| Err("no device".to_string()),
    );
    assert_eq!(
        failing.unwrap_err(),
        RoadError::Probability("no device".into())
    );
    assert_eq!((s.morf.len(), s.morf[0].len(), s.combined.len()), (n, 2, n));
    for i in 0..n {
        let mean = |row: &[f32]| row.iter().sum::<f32>() / row.len() as f32;
        let expected = (mean(&s.lerf[i]) - mean(&s.morf[i])) / 2.0;
        assert!((s.combined[i] - expected).abs() < 1e-6);
        let keep = removal_keep_mask(
            &maps[i * h * w..(i + 1) * h * w],
            50.0,
            Order::MostRelevantFirst,
        );
        let one = &images[i * 3 * h * w..(i + 1) * 3 * h * w];
        let imputed = impute(one, 3, h, w, &keep).unwrap();
        let m = |x: &[f32]| x.iter().sum::<f32>() / x.len() as f32;
        assert!((s.morf[i][1] - (m(&imputed) - m(one))).abs() < 1e-6);
    }
    let short = road_scores(
        &images,
        [n, 3, h, w],
        &maps,
        &[10.0],
        &Imputer::default(),
        |_: &[f32], _| Ok(vec![0.5]),
    );
    assert!(matches!(
        short,
        Err(RoadError::Shape {
            what: "probabilities",
            ..
        })
    ));
}

/// Timing, not a check: `cargo test --release -p callbacks --test road -- --ignored --nocapture`.
#[test]
#[ignore]
fn imputation_time_at_224() {
    let (h, w) = (224, 224);
    let img = image(h, w);
    let blob = centred_gaussian(h, w, 5000.0);
    let mut state = 12345u64;
    let scattered: Vec<f32> = (0..h * w)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect();
    for (name, map, p, order) in [
        (
            "central blob, MoRF-10 (90 % removed)",
            &blob,
            10.0,
            Order::MostRelevantFirst,
        ),
        (
            "border ring, LeRF-10 (90 % removed)",
            &blob,
            10.0,
            Order::LeastRelevantFirst,
        ),
        (
            "scattered, 90 % removed",
            &scattered,
            10.0,
            Order::MostRelevantFirst,
        ),
        (
            "scattered, 50 % removed",
            &scattered,
            50.0,
            Order::MostRelevantFirst,
        ),
    ] {
        let keep = removal_keep_mask(map, p, order);
        let best = (0..7)
            .map(|_| {
                let start = std::time::Instant::now();
                impute(&img, 3, h, w, &keep).unwrap();
                start.elapsed().as_secs_f64() * 1e3
            })
            .fold(f64::MAX, f64::min);
        println!("3x224x224, {name}: best of 7 {best:.1} ms");
    }
}
