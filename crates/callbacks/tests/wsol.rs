//! MaxBoxAcc (multi-contour) and PxAP against wsolevaluation's algorithm run with OpenCV
//! (`tests/fixtures/wsol/expected.json`, made by `scripts/make_wsol_fixture.py`): blobs, a
//! ring with a hole, noise, regions on the border, values on bin edges, an all-zero map.

use callbacks::scores::wsol::{best_iou_per_threshold, MaxBoxAcc, PixelBox, PxAp};
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/wsol/expected.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("fixture JSON")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

#[test]
fn maxboxacc_and_pxap_match_wsolevaluation_with_opencv() {
    let fx = fixture();
    let (w, h) = (
        fx["width"].as_u64().unwrap() as usize,
        fx["height"].as_u64().unwrap() as usize,
    );
    let mut acc = MaxBoxAcc::default();
    let mut ap = PxAp::default();
    let maps = fx["maps"].as_array().unwrap();
    for (i, map) in maps.iter().enumerate() {
        let map: Vec<f32> = floats(map).into_iter().map(|v| v as f32).collect();
        let truth: Vec<PixelBox> = fx["boxes"][i]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                let b = floats(b);
                [b[0] as i64, b[1] as i64, b[2] as i64, b[3] as i64]
            })
            .collect();
        let ours = best_iou_per_threshold(&map, w, h, &truth);
        let reference = floats(&fx["best_iou_per_threshold"][i]);
        assert_eq!(ours.len(), reference.len());
        for (t, (a, b)) in ours.iter().zip(&reference).enumerate() {
            assert!(
                (a - b).abs() < 1e-12,
                "image {i}, threshold {t}: {a} vs {b}"
            );
        }
        acc.add(&map, w, h, &truth);
        let mask: Vec<bool> = floats(&fx["masks"][i]).iter().map(|v| *v > 0.5).collect();
        ap.add(&map, &mask);
    }
    let levels = floats(&fx["maxboxacc"]);
    assert_eq!(acc.images(), maps.len());
    for (a, b) in acc.at_levels().iter().zip(&levels) {
        assert!((a - b).abs() < 1e-12, "MaxBoxAcc {a} vs {b}");
    }
    let pxap = fx["pxap"].as_f64().unwrap();
    assert!(
        (ap.value() - pxap).abs() < 1e-9,
        "PxAP {} vs {pxap}",
        ap.value()
    );
}
