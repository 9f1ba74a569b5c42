//! Evolution views of one validation image under one method of one run: a strip of its
//! overlays at chosen logged steps (left to right, each labelled with its step) and an animated
//! GIF of every logged step. Step 0 is the untrained head (runs before issue 15 start at 1).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, Frame, Rgb, RgbImage};
use tensorboard::read::LoggedImage;

use super::html::{escape, file_safe, step_label};

/// At most this many frames in a strip.
pub const MAX_STRIP_FRAMES: usize = 11;
/// Each GIF frame is shown this long.
pub const FRAME_MS: u32 = 600;
/// White pixels between the frames of a strip.
const GAP: u32 = 4;

/// The files written for one image, method and run.
#[derive(Debug)]
pub struct Views {
    /// The strip's file name (beside the page, under images/).
    pub strip: String,
    /// The GIF's file name.
    pub gif: String,
    /// The steps in the strip.
    pub strip_steps: Vec<i64>,
    /// The GIF's frame count (every logged step).
    pub frames: usize,
}

/// The steps a strip shows: all of them when there are at most `max`, else `max` (at least 2)
/// spaced evenly by step value (the logged step nearest to each even target), always the first
/// and the last.
pub fn strip_steps(steps: &[i64], max: usize) -> Vec<i64> {
    let mut all = steps.to_vec();
    all.sort_unstable();
    all.dedup();
    let max = max.max(2);
    let (Some(&first), Some(&last)) = (all.first(), all.last()) else {
        return all;
    };
    if all.len() <= max {
        return all;
    }
    let mut picked: Vec<i64> = (0..max)
        .map(|k| {
            let target = first as f64 + (last - first) as f64 * k as f64 / (max - 1) as f64;
            *all.iter()
                .min_by(|a, b| {
                    let (da, db) = ((**a as f64 - target).abs(), (**b as f64 - target).abs());
                    da.total_cmp(&db).then(a.cmp(b))
                })
                .unwrap_or(&first)
        })
        .collect();
    picked.dedup();
    picked
}

/// Every logged image of `tag`, decoded, by step (the last record of a step wins: a resumed
/// run may log a step twice).
fn frames(images: &[LoggedImage], tag: &str) -> Result<BTreeMap<i64, RgbImage>> {
    let mut png = BTreeMap::new();
    for image in images.iter().filter(|i| i.tag == tag) {
        png.insert(image.step, &image.png);
    }
    png.into_iter()
        .map(|(step, bytes)| {
            let image = image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
                .with_context(|| format!("{tag} at step {step}: not a PNG"))?;
            Ok((step, image.to_rgb8()))
        })
        .collect()
}

/// `frame` (resized to `size` if it differs) above a white band with the step's label.
fn labelled(frame: &RgbImage, step: i64, (w, h): (u32, u32)) -> Result<RgbImage> {
    let font = (w / 8).clamp(9, 16);
    let band = font + 6;
    let mut out = RgbImage::from_pixel(w, h + band, Rgb([255, 255, 255]));
    let resized;
    let frame = if frame.dimensions() == (w, h) {
        frame
    } else {
        resized = image::imageops::resize(frame, w, h, image::imageops::FilterType::Triangle);
        &resized
    };
    image::imageops::replace(&mut out, frame, 0, 0);
    crate::plot::label(&mut out, &step_label(step), font, (2, h as i32 + 2))?;
    Ok(out)
}

/// Frames (all of one size, as [`labelled`] makes them) side by side with white gaps.
pub fn strip(frames: &[RgbImage]) -> RgbImage {
    callbacks::logging::grid::grid_with_gap(frames, frames.len(), GAP)
}

/// An animated GIF of `frames` (all of the first frame's size), [`FRAME_MS`] each, looping
/// forever.
pub fn gif(frames: &[RgbImage]) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    {
        // Speed 10 of 1–30: quantisation good enough for heatmaps, far faster than 1.
        let mut encoder = GifEncoder::new_with_speed(&mut bytes, 10);
        encoder.set_repeat(Repeat::Infinite)?;
        for f in frames {
            let rgba = image::DynamicImage::ImageRgb8(f.clone()).to_rgba8();
            encoder.encode_frame(Frame::from_parts(
                rgba,
                0,
                0,
                Delay::from_numer_denom_ms(FRAME_MS, 1),
            ))?;
        }
    }
    Ok(bytes)
}

/// Writes the strip (`<stem>_strip.png`) and the GIF (`<stem>_evolution.gif`) of `tag` into
/// `dir`; None when the run logged no image under `tag`.
pub fn write(images: &[LoggedImage], tag: &str, dir: &Path, stem: &str) -> Result<Option<Views>> {
    let frames = frames(images, tag)?;
    let Some(size) = frames.values().next().map(RgbImage::dimensions) else {
        return Ok(None);
    };
    let labelled: BTreeMap<i64, RgbImage> = frames
        .iter()
        .map(|(&step, f)| Ok((step, labelled(f, step, size)?)))
        .collect::<Result<_>>()?;
    let steps: Vec<i64> = labelled.keys().copied().collect();
    let strip_steps = strip_steps(&steps, MAX_STRIP_FRAMES);
    let chosen: Vec<RgbImage> = strip_steps.iter().map(|s| labelled[s].clone()).collect();
    let all: Vec<RgbImage> = labelled.into_values().collect();
    let stem = file_safe(stem);
    let views = Views {
        strip: format!("{stem}_strip.png"),
        gif: format!("{stem}_evolution.gif"),
        strip_steps,
        frames: all.len(),
    };
    let strip_path = dir.join(&views.strip);
    strip(&chosen)
        .save(&strip_path)
        .with_context(|| format!("cannot write {}", strip_path.display()))?;
    let gif_path = dir.join(&views.gif);
    let bytes = gif(&all).map_err(|e| anyhow!("encoding {}: {e}", gif_path.display()))?;
    std::fs::write(&gif_path, bytes)
        .with_context(|| format!("cannot write {}", gif_path.display()))?;
    Ok(Some(views))
}

/// The GIF and the strip side by side, under a title.
pub fn html(views: &Views, title: &str) -> String {
    let steps = views
        .strip_steps
        .iter()
        .map(|&s| step_label(s))
        .collect::<Vec<_>>()
        .join(", ");
    let title = escape(title);
    format!(
        "<div class=\"evolution\"><div class=\"evolution-title\">{title}</div>\n\
         <div class=\"evolution-views\">\
         <figure><img src=\"images/{gif}\" alt=\"{title}: animation\">\
         <figcaption>all {n} logged steps, {secs} s each</figcaption></figure>\
         <figure class=\"strip\"><img src=\"images/{strip}\" alt=\"{title}: {steps}\">\
         <figcaption>{steps}</figcaption></figure></div></div>\n",
        gif = views.gif,
        strip = views.strip,
        n = views.frames,
        secs = f64::from(FRAME_MS) / 1000.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::AnimationDecoder;

    #[test]
    fn strip_keeps_first_and_last_and_spaces_evenly() {
        // Every epoch of a 100-epoch run with step 0: every tenth.
        let steps: Vec<i64> = (0..=100).collect();
        assert_eq!(
            strip_steps(&steps, 11),
            (0..=10).map(|k| k * 10).collect::<Vec<_>>()
        );
        // An old run (no step 0) of 20 epochs: 11 frames from 1 to 20, gaps of 1 or 2.
        let old: Vec<i64> = (1..=20).collect();
        let picked = strip_steps(&old, 11);
        assert_eq!(picked.len(), 11, "{picked:?}");
        assert_eq!((picked[0], picked[10]), (1, 20), "{picked:?}");
        let gaps: Vec<i64> = picked.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|g| (1..=2).contains(g)), "{picked:?}");
        // Few steps: all of them, sorted, once each.
        assert_eq!(strip_steps(&[3, 1, 2, 2], 11), vec![1, 2, 3]);
        assert_eq!(strip_steps(&[5], 11), vec![5]);
        assert!(strip_steps(&[], 11).is_empty());
        // Irregular logging (every 5 epochs, then every epoch): spaced by step, not by index.
        let mut irregular: Vec<i64> = (0..=50).step_by(5).collect();
        irregular.extend(51..=60);
        let picked = strip_steps(&irregular, 4);
        assert_eq!(picked, vec![0, 20, 40, 60]);
    }

    fn tile(step: i64) -> RgbImage {
        let v = (step * 20).clamp(0, 255) as u8;
        RgbImage::from_fn(32, 24, |x, _| Rgb([v, (x * 8) as u8, 255 - v]))
    }

    fn logged(tag: &str, step: i64, image: &RgbImage) -> LoggedImage {
        let mut png = Vec::new();
        image
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        LoggedImage {
            tag: tag.into(),
            step,
            png,
        }
    }

    #[test]
    fn gif_has_one_frame_per_logged_step_and_the_strip_is_chosen() {
        let dir = tempfile::tempdir().unwrap();
        let mut images = vec![logged("originals/cat.1", 0, &tile(0))];
        for step in 0..=12 {
            images.push(logged("cam/cat.1", step, &tile(step)));
            images.push(logged("gradcam/cat.1", step, &tile(step)));
        }
        // A resumed run logged step 4 again: counted once.
        images.push(logged("cam/cat.1", 4, &tile(4)));
        let views = write(&images, "cam/cat.1", dir.path(), "img0_run0_cam")
            .unwrap()
            .unwrap();
        assert_eq!(views.frames, 13);
        assert_eq!(views.strip_steps.len(), 11);
        assert_eq!(views.strip_steps.first(), Some(&0));
        assert_eq!(views.strip_steps.last(), Some(&12));

        let file = std::fs::File::open(dir.path().join(&views.gif)).unwrap();
        let decoder = image::codecs::gif::GifDecoder::new(std::io::BufReader::new(file)).unwrap();
        let frames = decoder.into_frames().collect_frames().unwrap();
        assert_eq!(frames.len(), 13);
        for f in &frames {
            let (num, den) = f.delay().numer_denom_ms();
            assert_eq!(num / den, FRAME_MS);
        }
        // The first frame shows the first step's colours (red 0, blue 255 at the top left).
        let p = frames[0].buffer().get_pixel(0, 0).0;
        assert!(p[0] < 30 && p[2] > 225, "{p:?}");
        let last = frames[12].buffer().get_pixel(0, 0).0;
        assert!(last[0] > 225 && last[2] < 30, "{last:?}");

        // The strip: 11 labelled frames side by side.
        let strip = image::open(dir.path().join(&views.strip))
            .unwrap()
            .to_rgb8();
        assert_eq!(strip.width(), 11 * 32 + 10 * GAP);
        assert!(strip.height() > 24, "no label band: {}", strip.height());
        let html = html(&views, "run cam");
        assert!(html.contains(&views.gif) && html.contains(&views.strip));
        assert!(
            html.contains("untrained") && html.contains("epoch 12"),
            "{html}"
        );

        // An old run without step 0, and a tag never logged.
        let old: Vec<LoggedImage> = (1..=3).map(|s| logged("cam/dog", s, &tile(s))).collect();
        let views = write(&old, "cam/dog", dir.path(), "old").unwrap().unwrap();
        assert_eq!(views.strip_steps, vec![1, 2, 3]);
        assert_eq!(views.frames, 3);
        assert!(write(&old, "gradcam/dog", dir.path(), "none")
            .unwrap()
            .is_none());
    }
}
