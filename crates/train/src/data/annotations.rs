//! The boxes file (`[data] boxes`, `train explain --boxes`): each photo's head box and, where
//! given, the animal's outline, read and checked, and taken into the upright photo's pixels
//! (the photo as `read_rgb` gives it, EXIF orientation applied).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use callbacks::scores::localization_report::Annotation;
use image::metadata::Orientation;

use crate::data::images::{stored_size_and_orientation, upright_size};

/// Annotations by file name, as the boxes file gives them.
pub type Annotations = HashMap<String, Annotation>;

/// An annotation in its upright photo's pixels, with that photo's upright (width, height).
pub type UprightAnnotation = (Annotation, (usize, usize));

/// Upright annotations by photo path (see [`upright_annotations`]).
pub type UprightAnnotations = HashMap<PathBuf, UprightAnnotation>;

/// How far outside its photo a box corner or outline point may lie, as a share of the photo's
/// side (annotation tools round, and may put a point on the border); 2 px at least.
pub const OUTSIDE_MARGIN: f32 = 0.02;

/// The boxes file: `images[]` with `file` and `head_box_xyxy` (as Oxford-IIIT Pet's
/// `oxford_loc.json` and the synthetic set's `boxes.json`).
#[derive(serde::Deserialize)]
struct BoxFile {
    images: Vec<BoxEntry>,
}

#[derive(serde::Deserialize)]
struct BoxEntry {
    file: String,
    head_box_xyxy: [f32; 4],
    /// The whole animal's outline, x0, y0, x1, y1, … (Oxford-IIIT Pet's `oxford_loc.json`).
    #[serde(default)]
    body_polygon_xy: Option<Vec<f32>>,
    /// A spurious cue's box (the synthetic set's mark, `data::synth::cue`).
    #[serde(default)]
    cue_box_xyxy: Option<[f32; 4]>,
}

/// Read a boxes file: annotation (head box, and outline where given) by image file name; boxes
/// are matched to images by file name, without the folder. Boxes are in the pixels of the stored
/// file, before any EXIF orientation is applied (as Oxford-IIIT Pet's annotations are); see
/// [`upright_annotation`].
///
/// Two entries for one file name (`cat/a.jpg` and `dog/a.jpg`, or one file listed twice) are an
/// error when their boxes or outlines differ, as one would silently replace the other; the same
/// entry listed twice is accepted. An outline with an odd number of coordinates, fewer than 3
/// points or a non-finite value is an error.
pub fn read_annotations(path: &Path) -> Result<Annotations> {
    let (heads, outlines, cues) = read_entries(path)?;
    let mut annotations = HashMap::new();
    for (name, head) in heads {
        let body = match outlines.get(&name) {
            None => None,
            Some((xy, file)) => {
                if xy.len() % 2 != 0 || xy.len() < 6 || xy.iter().any(|v| !v.is_finite()) {
                    bail!(
                        "[data] boxes: {}: body_polygon_xy of {file} must be at least 3 finite \
                         x, y pairs (has {} values)",
                        path.display(),
                        xy.len()
                    );
                }
                Some(xy.chunks(2).map(|p| (p[0], p[1])).collect())
            }
        };
        let cue = cues.get(&name).copied();
        let annotation = Annotation { head, body, cue };
        annotations.insert(name, annotation);
    }
    Ok(annotations)
}

/// Head boxes, outlines as written (x, y, … and the entry's `file`) and cue boxes, by file
/// name.
type Entries = (
    HashMap<String, [f32; 4]>,
    HashMap<String, (Vec<f32>, String)>,
    HashMap<String, [f32; 4]>,
);

fn read_entries(path: &Path) -> Result<Entries> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("[data] boxes: cannot read {}", path.display()))?;
    let file: BoxFile =
        serde_json::from_str(&text).with_context(|| format!("[data] boxes: {}", path.display()))?;
    // File name → (box, the entry's `file` as written).
    let mut boxes: HashMap<String, ([f32; 4], String)> = HashMap::new();
    let mut outlines = HashMap::new();
    let mut cues: HashMap<String, ([f32; 4], String)> = HashMap::new();
    for entry in file.images {
        let name = Path::new(&entry.file)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or(entry.file.clone());
        // The outline's points are checked by `read_annotations`, their place in the photo by
        // `upright_annotation`.
        if let Some(xy) = &entry.body_polygon_xy {
            match outlines.get(&name) {
                Some((earlier, earlier_file)) if earlier != xy => bail!(
                    "[data] boxes: {}: two entries for file name `{name}` with different \
                     body_polygon_xy: {earlier_file} and {}",
                    path.display(),
                    entry.file
                ),
                _ => {
                    outlines.insert(name.clone(), (xy.clone(), entry.file.clone()));
                }
            }
        }
        for b in std::iter::once(&entry.head_box_xyxy).chain(&entry.cue_box_xyxy) {
            let [x0, y0, x1, y1] = *b;
            if !(x0 < x1 && y0 < y1) || b.iter().any(|v| !v.is_finite()) {
                bail!(
                    "[data] boxes: {}: box {b:?} of {} is empty or invalid",
                    path.display(),
                    entry.file
                );
            }
        }
        if let Some(cue) = entry.cue_box_xyxy {
            match cues.get(&name) {
                Some((earlier, earlier_file)) if *earlier != cue => bail!(
                    "[data] boxes: {}: two entries for file name `{name}` with different \
                     cue_box_xyxy: {earlier_file} and {}",
                    path.display(),
                    entry.file
                ),
                _ => {
                    cues.insert(name.clone(), (cue, entry.file.clone()));
                }
            }
        }
        match boxes.get(&name) {
            Some((earlier, _)) if *earlier == entry.head_box_xyxy => {}
            Some((earlier, earlier_file)) => bail!(
                "[data] boxes: {}: two entries for file name `{name}` with different boxes: \
                 {earlier_file} {earlier:?} and {} {:?} (images are matched to boxes by file \
                 name, so each name may have one box)",
                path.display(),
                entry.file,
                entry.head_box_xyxy
            ),
            None => {
                boxes.insert(name, (entry.head_box_xyxy, entry.file));
            }
        }
    }
    let heads = boxes.into_iter().map(|(name, (b, _))| (name, b)).collect();
    let cues = cues.into_iter().map(|(name, (b, _))| (name, b)).collect();
    Ok((heads, outlines, cues))
}

/// Refuse an annotation reaching outside its stored photo (`width`, `height`) by more than the
/// margin.
fn check_inside(path: &Path, truth: &Annotation, (width, height): (u32, u32)) -> Result<()> {
    let (w, h) = (width as f32, height as f32);
    let (mx, my) = ((OUTSIDE_MARGIN * w).max(2.0), (OUTSIDE_MARGIN * h).max(2.0));
    let inside = |(x, y): (f32, f32)| x >= -mx && x <= w + mx && y >= -my && y <= h + my;
    for (what, b) in
        std::iter::once(("head box", &truth.head)).chain(truth.cue.iter().map(|c| ("cue box", c)))
    {
        let [x0, y0, x1, y1] = *b;
        if !inside((x0, y0)) || !inside((x1, y1)) {
            bail!(
                "[data] boxes: the {what} {b:?} of {} lies outside the photo ({width}x{height})",
                path.display()
            );
        }
    }
    if let Some(point) = truth.body.iter().flatten().find(|p| !inside(**p)) {
        bail!(
            "[data] boxes: the outline (body_polygon_xy) of {} has the point {point:?} outside \
             the photo ({width}x{height})",
            path.display()
        );
    }
    Ok(())
}

/// A point of a photo stored as `(width, height)` with EXIF `orientation`, in the stored file's
/// continuous pixel coordinates (pixel (i, j) covers [i, i+1) x [j, j+1)), mapped to the upright
/// photo's, as [`DynamicImage::apply_orientation`] (and so [`read_rgb`]) moves the pixels.
pub fn upright_point(
    (x, y): (f32, f32),
    (width, height): (f32, f32),
    orientation: Orientation,
) -> (f32, f32) {
    let (w, h) = (width, height);
    match orientation {
        Orientation::NoTransforms => (x, y),
        // 90° clockwise: the stored left column becomes the top row.
        Orientation::Rotate90 => (h - y, x),
        Orientation::Rotate180 => (w - x, h - y),
        // 90° counter-clockwise.
        Orientation::Rotate270 => (y, w - x),
        Orientation::FlipHorizontal => (w - x, y),
        Orientation::FlipVertical => (x, h - y),
        // Turned 90° clockwise, then mirrored: a transpose.
        Orientation::Rotate90FlipH => (y, x),
        // Turned 90° counter-clockwise, then mirrored: the anti-diagonal transpose.
        Orientation::Rotate270FlipH => (h - y, w - x),
    }
}

/// A box `[x0, y0, x1, y1]` in the pixels of a photo stored as `(width, height)` with EXIF
/// `orientation` (as Oxford-IIIT Pet's annotations give boxes) → the same region in the upright
/// photo's pixels (what the maps are made from): both corners mapped, then re-ordered.
pub fn upright_box(b: [f32; 4], size: (u32, u32), orientation: Orientation) -> [f32; 4] {
    let size = (size.0 as f32, size.1 as f32);
    let (ax, ay) = upright_point((b[0], b[1]), size, orientation);
    let (bx, by) = upright_point((b[2], b[3]), size, orientation);
    [ax.min(bx), ay.min(by), ax.max(bx), ay.max(by)]
}

/// An annotation given in the stored file's pixels (as Oxford-IIIT Pet's are), taken into the
/// upright photo's pixels (`read_rgb` applies the EXIF orientation, and the maps follow the
/// upright photo): the head box and the outline are turned with it. Also the upright
/// (width, height).
///
/// A box or outline point outside the photo by more than [`OUTSIDE_MARGIN`] of its side (at
/// least 2 px) is an error naming the file: clipped to the photo it would score as a valid,
/// often perfect, region.
pub fn upright_annotation(path: &Path, truth: &Annotation) -> Result<(Annotation, (usize, usize))> {
    let (stored, orientation) = stored_size_and_orientation(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    check_inside(path, truth, stored)?;
    let (w, h) = upright_size(stored, orientation);
    let size = (stored.0 as f32, stored.1 as f32);
    let mut truth = truth.clone();
    truth.head = upright_box(truth.head, stored, orientation);
    truth.cue = truth.cue.map(|b| upright_box(b, stored, orientation));
    if let Some(outline) = &mut truth.body {
        for point in outline.iter_mut() {
            *point = upright_point(*point, size, orientation);
        }
    }
    Ok((truth, (w as usize, h as usize)))
}

/// The upright annotation of each of `photos` that has an entry in `boxes` (matched by file
/// name), by photo path: each read from its photo's header once, and checked against it
/// ([`upright_annotation`]). What a run and `train explain --boxes` score.
pub fn upright_annotations<'a>(
    boxes: &Annotations,
    photos: impl IntoIterator<Item = &'a Path>,
) -> Result<UprightAnnotations> {
    let mut upright = HashMap::new();
    for path in photos {
        let name = path.file_name().map(|n| n.to_string_lossy());
        if let Some(truth) = name.and_then(|n| boxes.get(&*n)) {
            upright.insert(path.to_path_buf(), upright_annotation(path, truth)?);
        }
    }
    Ok(upright)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A box or outline reaching outside its photo is an error naming the file; a point on the
    /// border, or a pixel past it, is accepted (an outline at 1e30 used to be clipped to the
    /// whole photo and score MaxBoxAccV2 and PxAP of 1.0).
    #[test]
    fn annotations_outside_their_photo_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let photo = dir.path().join("cat.1.png");
        image::RgbImage::new(200, 100).save(&photo).unwrap();
        let inside = Annotation {
            head: [10.0, 10.0, 60.0, 50.0],
            body: Some(vec![
                (0.0, 0.0),
                (200.0, 0.0),
                (201.5, 100.0),
                (-1.0, 100.5),
            ]),
            cue: Some([150.0, 0.0, 200.0, 40.0]),
        };
        let (upright, size) = upright_annotation(&photo, &inside).unwrap();
        assert_eq!((upright, size), (inside.clone(), (200, 100)));
        let far = Annotation {
            body: Some(vec![(0.0, 0.0), (1e30, 0.0), (10.0, 50.0)]),
            ..inside.clone()
        };
        let error = format!("{:#}", upright_annotation(&photo, &far).unwrap_err());
        assert!(
            error.contains("cat.1.png") && error.contains("outside"),
            "{error}"
        );
        assert!(error.contains("body_polygon_xy"), "{error}");
        let cue_outside = Annotation {
            cue: Some([150.0, 0.0, 230.0, 40.0]),
            ..inside.clone()
        };
        let error = format!(
            "{:#}",
            upright_annotation(&photo, &cue_outside).unwrap_err()
        );
        assert!(error.contains("cue box"), "{error}");
        for head in [[10.0, 10.0, 260.0, 50.0], [-30.0, 10.0, 60.0, 50.0]] {
            let wide = Annotation {
                head,
                ..inside.clone()
            };
            let error = format!("{:#}", upright_annotation(&photo, &wide).unwrap_err());
            assert!(
                error.contains("head box") && error.contains("cat.1.png"),
                "{error}"
            );
        }
    }
}
