//! Reading back the images a run logged to TensorBoard (for `train sanity` and `train compare`).

use std::path::Path;

use anyhow::{Context, Result};

/// The images a run logged to TensorBoard under tags starting with `prefix`, decoded, as
/// (tag, step, image); for a tag and step logged twice (a resumed run) the last one.
pub fn logged_images(run_dir: &Path, prefix: &str) -> Result<Vec<(String, i64, image::RgbImage)>> {
    let logged = tensorboard::read::run_images(run_dir, prefix)
        .with_context(|| format!("cannot read the event files in {}", run_dir.display()))?;
    let mut out: Vec<(String, i64, image::RgbImage)> = Vec::new();
    for image in logged {
        let decoded = crate::data::images::decode_rgb(
            &image.png,
            &format!(
                "{}: image {} step {}",
                run_dir.display(),
                image.tag,
                image.step
            ),
        )?;
        match out
            .iter_mut()
            .find(|(t, s, _)| *t == image.tag && *s == image.step)
        {
            Some(slot) => slot.2 = decoded,
            None => out.push((image.tag, image.step, decoded)),
        }
    }
    Ok(out)
}
