//! A run's inputs that must not be silently wrong: the feature cache (a stale entry with the
//! wrong row count), the boxes file (duplicate entries) and boxes of EXIF-rotated photos.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use image::metadata::Orientation;
use image::{DynamicImage, GrayImage, ImageEncoder, RgbImage};
use model::{Backbone, Vgg16};
use train::data::{self, Dataset, Sample};
use train::features::{Extractor, PooledFeatures};
use train::tensors::{read_safetensors, to_vec, write_safetensors, write_safetensors_f16};

/// A random VGG16 with every width divided by 8 (the cache tests need a backbone, not a good one).
fn backbone() -> Backbone {
    Backbone::Vgg16(Vgg16::random(8, &Device::flex()))
}

fn extractor(backbone: &Backbone, cache_dir: Option<PathBuf>) -> Extractor<'_> {
    Extractor::new(
        backbone,
        Device::flex(),
        [64, 64],
        4,
        "test".into(),
        cache_dir,
    )
    .unwrap()
}

/// Five small photos in ImageFolder layout (3 cats, 2 dogs).
fn small_set(dir: &Path) -> Dataset {
    for i in 0..5u8 {
        let class = if i < 3 { "cat" } else { "dog" };
        let path = dir.join(class).join(format!("{i}.png"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        RgbImage::from_fn(48, 40, |x, y| {
            image::Rgb([x as u8 * 5, y as u8 * 6, i * 50])
        })
        .save(&path)
        .unwrap();
    }
    data::scan(dir, "test").unwrap()
}

/// The one cache file whose name starts with `prefix`.
fn cache_file(cache: &Path, prefix: &str) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect();
    assert_eq!(
        files.len(),
        1,
        "one {prefix}* cache file expected: {files:?}"
    );
    files[0].clone()
}

/// Rewrite a cache file with only its first `rows` rows and, when given, another `kept` list:
/// a stale or damaged entry under the right key.
fn damage(path: &Path, rows: usize, kept: Option<&str>) {
    let file = read_safetensors(path).unwrap();
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = file
        .tensors
        .iter()
        .map(|(name, (shape, values))| {
            let row: usize = shape[1..].iter().product();
            let mut shape = shape.clone();
            shape[0] = rows;
            (name.clone(), shape, values[..rows * row].to_vec())
        })
        .collect();
    let mut metadata = file.metadata.clone();
    if let Some(kept) = kept {
        metadata.insert("kept".into(), kept.into());
    }
    let pooled = path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("pooled-");
    if pooled {
        write_safetensors_f16(path, &tensors, metadata).unwrap();
    } else {
        write_safetensors(path, &tensors, metadata).unwrap();
    }
}

fn values(features: &PooledFeatures) -> Vec<(String, [usize; 2], Vec<f32>)> {
    let mut out: Vec<_> = features
        .by_layer
        .iter()
        .map(|(name, t)| (name.clone(), t.dims(), to_vec(t.clone()).unwrap()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The cache is keyed by the images' content, so an entry with the wrong number of rows is
/// stale or damaged: it is recomputed (with a warning), never used for the wrong images.
#[test]
fn a_feature_cache_entry_with_the_wrong_row_count_is_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_set(&dir.path().join("data"));
    let cache = dir.path().join("cache");
    let backbone = backbone();
    let ex = extractor(&backbone, Some(cache.clone()));
    let first = ex.pooled(&data, "test").unwrap();
    assert!(!first.from_cache);
    assert_eq!(first.kept, [0, 1, 2, 3, 4]);
    let expected = values(&first);
    assert!(expected.iter().all(|(_, dims, _)| dims[0] == 5));
    assert!(
        ex.pooled(&data, "test").unwrap().from_cache,
        "an intact entry is used"
    );
    let path = cache_file(&cache, "pooled-");
    let intact = std::fs::read(&path).unwrap();
    let cases = [
        (4, None),                    // a row short; `kept` still lists 5 images
        (4, Some("0,1,2,3")),         // consistent with itself, but an image is missing
        (5, Some("0,1,2,3,9")),       // an index past the data set
        (5, Some("0,1,2,x,4")),       // an unparsable index
        (5, Some("0,1,1,3,4")),       // a repeated index
        (5, Some("")),                // no images kept
        (0, Some("")),                // empty tensors
        (5, Some("4,3,2,1,0")),       // out of order
        (3, Some("0,1,2,3,4,0,1,2")), // more indices than images
    ];
    for (rows, kept) in cases {
        std::fs::write(&path, &intact).unwrap();
        damage(&path, rows, kept);
        let again = ex
            .pooled(&data, "test")
            .unwrap_or_else(|e| panic!("{rows} rows, kept {kept:?}: {e:#}"));
        assert!(
            !again.from_cache,
            "{rows} rows, kept {kept:?}: a damaged cache entry was used"
        );
        assert_eq!(again.kept, [0, 1, 2, 3, 4]);
        assert_eq!(values(&again), expected, "{rows} rows, kept {kept:?}");
        // The recomputed entry replaced the damaged one.
        let repaired = ex.pooled(&data, "test").unwrap();
        assert!(repaired.from_cache, "{rows} rows, kept {kept:?}");
        assert_eq!(values(&repaired), expected);
    }
}

/// A chunk overwritten in place, at its full length (bit rot, a stray write on a shared
/// filesystem), fits every shape check: its checksum catches it, and it is recomputed.
#[test]
fn a_cache_entry_damaged_in_place_is_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_set(&dir.path().join("data"));
    let cache = dir.path().join("cache");
    let backbone = backbone();
    let ex = extractor(&backbone, Some(cache.clone()));
    let samples: Vec<&Sample> = data.samples.iter().collect();
    let expected = values(&ex.pooled(&data, "test").unwrap());
    let (maps, _) = ex.maps(&samples, "block5_conv3").unwrap();
    for prefix in ["pooled-", "maps-"] {
        let path = cache_file(&cache, prefix);
        let mut bytes = std::fs::read(&path).unwrap();
        let len = bytes.len();
        for b in &mut bytes[len - 6..len - 2] {
            *b ^= 0x5a;
        }
        std::fs::write(&path, &bytes).unwrap();
    }
    let again = ex.pooled(&data, "test").unwrap();
    assert!(!again.from_cache, "a damaged entry was used");
    assert_eq!(values(&again), expected);
    let (maps_again, _) = ex.maps(&samples, "block5_conv3").unwrap();
    assert_eq!(to_vec(maps_again).unwrap(), to_vec(maps).unwrap());
    // 5 images, pooled and maps, twice: nothing came from the damaged entries.
    assert_eq!(ex.tally.counts(), (20, 0));
}

/// The same for the activation maps' cache.
#[test]
fn a_maps_cache_entry_with_the_wrong_row_count_is_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_set(&dir.path().join("data"));
    let cache = dir.path().join("cache");
    let backbone = backbone();
    let ex = extractor(&backbone, Some(cache.clone()));
    let samples: Vec<&Sample> = data.samples.iter().collect();
    let (first, _) = ex.maps(&samples, "block5_conv3").unwrap();
    assert_eq!(first.dims()[0], 5);
    let path = cache_file(&cache, "maps-");
    damage(&path, 3, None);
    let (again, _) = ex.maps(&samples, "block5_conv3").unwrap();
    assert_eq!(again.dims(), first.dims(), "a damaged cache entry was used");
    assert_eq!(to_vec(again).unwrap(), to_vec(first).unwrap());
}

/// Two entries for one file name: different boxes are an error naming both entries and the
/// boxes file; the same box twice is harmless.
#[test]
fn duplicate_box_entries_are_an_error_unless_identical() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("boxes.json");
    std::fs::write(
        &path,
        r#"{"images": [
            {"file": "cat/a.jpg", "head_box_xyxy": [1, 2, 30, 40]},
            {"file": "b.jpg", "head_box_xyxy": [1, 2, 30, 40]},
            {"file": "dog/a.jpg", "head_box_xyxy": [5, 6, 30, 40]}
        ]}"#,
    )
    .unwrap();
    let error = format!("{:#}", data::read_annotations(&path).unwrap_err());
    for needle in [
        "a.jpg",
        "cat/a.jpg",
        "dog/a.jpg",
        &path.display().to_string(),
    ] {
        assert!(error.contains(needle), "`{needle}` missing from: {error}");
    }

    std::fs::write(
        &path,
        r#"{"images": [
            {"file": "cat/a.jpg", "head_box_xyxy": [1, 2, 30, 40]},
            {"file": "cat/a.jpg", "head_box_xyxy": [1, 2, 30, 40]},
            {"file": "b.jpg", "head_box_xyxy": [3, 4, 5, 6]}
        ]}"#,
    )
    .unwrap();
    let boxes = data::read_annotations(&path).unwrap();
    assert_eq!(boxes.len(), 2);
    assert_eq!(boxes["a.jpg"].head, [1.0, 2.0, 30.0, 40.0]);
}

/// Outlines (`body_polygon_xy`) are read with the boxes; a malformed one names the file and
/// the entry.
#[test]
fn outlines_are_read_and_malformed_ones_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("boxes.json");
    std::fs::write(
        &path,
        r#"{"images": [
            {"file": "cat/a.jpg", "head_box_xyxy": [1, 2, 30, 40],
             "body_polygon_xy": [0, 0, 10, 0, 10, 10, 0, 10]},
            {"file": "b.jpg", "head_box_xyxy": [3, 4, 5, 6]}
        ]}"#,
    )
    .unwrap();
    let annotations = data::read_annotations(&path).unwrap();
    assert_eq!(
        annotations["a.jpg"].body.as_deref(),
        Some(&[(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)][..])
    );
    assert_eq!(annotations["b.jpg"].body, None);
    assert_eq!(annotations["b.jpg"].head, [3.0, 4.0, 5.0, 6.0]);
    for bad in ["[0, 0, 10, 0, 10]", "[0, 0, 10, 0]"] {
        let text = format!(
            r#"{{"images": [{{"file": "cat/a.jpg", "head_box_xyxy": [1, 2, 30, 40],
                "body_polygon_xy": {bad}}}]}}"#
        );
        std::fs::write(&path, text).unwrap();
        // Training reads the outlines too (`[data] boxes`), so a bad one stops a run at its
        // start with this message.
        let error = format!("{:#}", data::read_annotations(&path).unwrap_err());
        assert!(
            error.contains("body_polygon_xy of cat/a.jpg must be at least 3 finite x, y pairs"),
            "{bad}: {error}"
        );
    }
}

/// A TIFF block holding one IFD entry: Orientation (0x0112) = `value`.
fn exif_orientation(value: u8) -> Vec<u8> {
    let mut tiff = b"II*\0\x08\0\0\0".to_vec(); // little-endian, first IFD at offset 8
    tiff.extend([1, 0]); // one entry
    tiff.extend([0x12, 0x01, 3, 0, 1, 0, 0, 0, value, 0, 0, 0]); // SHORT, count 1
    tiff.extend([0, 0, 0, 0]); // no next IFD
    tiff
}

fn write_jpeg_with_orientation(image: &RgbImage, orientation: u8, path: &Path) {
    let mut bytes = Vec::new();
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95);
    encoder
        .set_exif_metadata(exif_orientation(orientation))
        .unwrap();
    encoder
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Mean absolute difference of two photos' pixels inside boxes of equal size.
fn crop_difference(a: &RgbImage, box_a: [f32; 4], b: &RgbImage, box_b: [f32; 4]) -> f64 {
    let (w, h) = (
        (box_a[2] - box_a[0]).round() as u32,
        (box_a[3] - box_a[1]).round() as u32,
    );
    let (mut sum, mut n) = (0.0, 0.0);
    for y in 0..h {
        for x in 0..w {
            let pa = a.get_pixel(box_a[0] as u32 + x, box_a[1] as u32 + y);
            let pb = b.get_pixel(box_b[0] as u32 + x, box_b[1] as u32 + y);
            for c in 0..3 {
                sum += (pa[c] as f64 - pb[c] as f64).abs();
                n += 1.0;
            }
        }
    }
    sum / n
}

/// A real photo stored turned by each of the 8 EXIF orientations (pixels transformed, the tag
/// saying how to turn them back), with its head box given in the stored file's pixels as
/// Oxford-IIIT Pet's annotations are: the box scored must be the upright photo's (where the maps
/// come from), on the same content as in the unrotated photo, and the size the upright size.
#[test]
fn boxes_of_exif_rotated_photos_are_scored_in_the_upright_frame() {
    let catdog = common::shared_dir().join("data/catdog");
    let annotations: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(catdog.join("annotations/oxford_loc.json")).unwrap(),
    )
    .unwrap();
    // A portrait photo (335x500), so that a quarter turn swaps unequal sides.
    let entry = annotations["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["file"] == "oxford_loc/cat/Abyssinian_12.jpg")
        .expect("Abyssinian_12 in oxford_loc.json");
    let head: Vec<f32> = entry["head_box_xyxy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let head = [head[0], head[1], head[2], head[3]];
    let original =
        train::data::images::read_rgb(&catdog.join(entry["file"].as_str().unwrap())).unwrap();
    let (w, h) = original.dimensions();
    assert_eq!((w, h), (335, 500));
    let mask = GrayImage::from_fn(w, h, |x, y| {
        let (cx, cy) = (x as f32 + 0.5, y as f32 + 0.5);
        let inside = head[0] <= cx && cx < head[2] && head[1] <= cy && cy < head[3];
        image::Luma([if inside { 255 } else { 0 }])
    });

    let dir = tempfile::tempdir().unwrap();
    let val_dir = dir.path().join("val");
    let mut entries = Vec::new();
    for exif in 1..=8u8 {
        let orientation = Orientation::from_exif(exif).unwrap();
        // The transform whose EXIF turn (`orientation`) gives the upright photo back.
        let inverse = match orientation {
            Orientation::Rotate90 => Orientation::Rotate270,
            Orientation::Rotate270 => Orientation::Rotate90,
            other => other,
        };
        let mut stored = DynamicImage::ImageRgb8(original.clone());
        stored.apply_orientation(inverse);
        let mut back = stored.clone();
        back.apply_orientation(orientation);
        assert_eq!(
            back.to_rgb8(),
            original,
            "EXIF {exif}: the inverse is wrong"
        );
        // The box in the stored file's pixels, found independently of the code under test:
        // the bounding box of the transformed box mask.
        let mut stored_mask = DynamicImage::ImageLuma8(mask.clone());
        stored_mask.apply_orientation(inverse);
        let stored_mask = stored_mask.to_luma8();
        let inside: Vec<(u32, u32)> = stored_mask
            .enumerate_pixels()
            .filter(|p| p.2[0] > 0)
            .map(|p| (p.0, p.1))
            .collect();
        let stored_box = [
            inside.iter().map(|p| p.0).min().unwrap() as f32,
            inside.iter().map(|p| p.1).min().unwrap() as f32,
            inside.iter().map(|p| p.0).max().unwrap() as f32 + 1.0,
            inside.iter().map(|p| p.1).max().unwrap() as f32 + 1.0,
        ];
        let class = if exif % 2 == 0 { "cat" } else { "dog" };
        let file = format!("{class}/exif{exif}.jpg");
        write_jpeg_with_orientation(&stored.to_rgb8(), exif, &val_dir.join(&file));
        // The outline: the box's corners, which must turn with the photo as the box does.
        let [x0, y0, x1, y1] = stored_box;
        entries.push(
            serde_json::json!({"file": file, "head_box_xyxy": stored_box,
            "body_polygon_xy": [x0, y0, x1, y0, x1, y1, x0, y1]}),
        );
    }
    let boxes_path = dir.path().join("boxes.json");
    std::fs::write(
        &boxes_path,
        serde_json::json!({ "images": entries }).to_string(),
    )
    .unwrap();
    let boxes = data::read_annotations(&boxes_path).unwrap();
    let val = data::scan(&val_dir, "val").unwrap();

    let config = train::config::Config::parse(
        r#"[run]
name = "exif"
[data]
train_dir = "unused"
image_size = 64
[model]
backbone = "vgg16"
weights = "unused"
head = "gap-linear"
[train]
epochs = 1
batch_size = 16
learning_rate = 1e-2
[[callbacks]]
kind = "cam"
layer = "block5_conv3"
"#,
    )
    .unwrap();
    let spec = &config.callbacks[0];
    let backbone = backbone();
    let ex = extractor(&backbone, None);
    // The input of the layer after block5_conv3 (16) = its activations.
    let baselines = [callbacks::scores::localization_report::Baseline::Centre];
    let photos = val.samples.iter().map(|s| s.path.as_path());
    let upright = train::data::annotations::upright_annotations(&boxes, photos).unwrap();
    let with_box: Vec<&Sample> = val.samples.iter().collect();
    let (set, _) =
        train::run::setup::localization_set(&ex, &with_box, &upright, spec, 17, &baselines)
            .unwrap();
    let set = set.expect("a localization set");
    assert_eq!(set.annotations.len(), 8);
    assert_eq!(set.baselines.len(), 1);
    assert_eq!(set.activations.dims()[0], 8);
    for (i, sample) in val.samples.iter().enumerate() {
        let name = sample.path.file_name().unwrap().to_string_lossy();
        // The decoder turns the photo upright: the maps are the upright photo's.
        let upright = train::data::images::read_rgb(&sample.path).unwrap();
        assert_eq!(upright.dimensions(), (w, h), "{name}");
        assert_eq!(
            set.sizes[i],
            (w as usize, h as usize),
            "{name}: scored at the stored size, not the upright one"
        );
        let scored = set.annotations[i].head;
        assert!(
            scored.iter().zip(head).all(|(a, b)| (a - b).abs() < 1e-3),
            "{name}: box {scored:?} scored, {head:?} expected (stored {:?})",
            boxes[&*name].head
        );
        let outline = set.annotations[i].body.as_deref().unwrap();
        let xs = outline.iter().map(|p| p.0);
        let ys = outline.iter().map(|p| p.1);
        let outline_box = [
            xs.clone().fold(f32::MAX, f32::min),
            ys.clone().fold(f32::MAX, f32::min),
            xs.fold(f32::MIN, f32::max),
            ys.fold(f32::MIN, f32::max),
        ];
        assert!(
            outline_box
                .iter()
                .zip(head)
                .all(|(a, b)| (a - b).abs() < 1e-3),
            "{name}: outline {outline:?} not turned with the photo (box {head:?})"
        );
        // On the same content: the upright photo inside the scored box is the original photo
        // inside its box (up to JPEG's loss).
        let difference = crop_difference(&upright, scored, &original, head);
        assert!(difference < 6.0, "{name}: mean difference {difference}");
    }
}
