//! The images `train explain` explains: a tensor file's, one photo, or the photos under a
//! directory (resized and normalised), with the names their outputs get.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;
use model::WeightFile;

use super::ExplainArgs;
use crate::data::images;

/// The images to explain, already normalised, with their photos and output names.
pub(super) struct Inputs {
    /// The normalised images [N, 3, H, W].
    pub(super) batch: Tensor<4>,
    /// The photos at the network's input size.
    pub(super) photos: Vec<RgbImage>,
    /// Each image's output name (`<name>.png`).
    pub(super) names: Vec<String>,
    /// Each photo's file (none for a tensor file's images).
    pub(super) paths: Vec<Option<PathBuf>>,
}

/// The images `--input` names, at `--size` (photos), with their output names; an error when
/// none can be read or two would get one name.
pub(super) fn load_inputs(args: &ExplainArgs, device: &Device) -> Result<Inputs> {
    let input = &args.input;
    let is_tensor_file = input
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    if is_tensor_file {
        let file = WeightFile::open(input).with_context(|| "--input")?;
        let shape = file.shape("input").with_context(|| "--input")?;
        let [n, c, h, w] = shape[..] else {
            bail!(
                "--input {}: `input` must be [N, 3, H, W], is {shape:?}",
                input.display()
            );
        };
        if c != 3 {
            bail!(
                "--input {}: `input` must have 3 channels, has {c}",
                input.display()
            );
        }
        let values = file.tensor("input", &shape)?;
        let batch = Tensor::<4>::from_data(TensorData::new(values, [n, 3, h, w]), device);
        let photos = images::from_tensor(batch.clone())?;
        let names = (0..n).map(|i| format!("image_{i:03}")).collect();
        let paths = vec![None; n];
        return Ok(Inputs {
            batch,
            photos,
            names,
            paths,
        });
    }
    let paths = if input.is_dir() {
        // Not the output directory, when it lies inside the input (a second run would
        // explain the first one's overlays).
        let out = args.out_dir.canonicalize().ok();
        let mut paths = images::photos_under(input)?;
        paths.retain(|p| match (&out, p.canonicalize()) {
            (Some(out), Ok(p)) => !p.starts_with(out),
            _ => true,
        });
        paths
    } else if input.is_file() {
        vec![input.clone()]
    } else {
        bail!("--input {}: no such file or directory", input.display());
    };
    let mut photos = Vec::new();
    let mut names = Vec::new();
    let mut kept = Vec::new();
    for path in &paths {
        match images::read_rgb(path) {
            Ok(photo) => {
                photos.push(images::resize(&photo, args.size));
                names.push(output_name(input, path));
                kept.push(Some(path.clone()));
            }
            // One unreadable photo in a directory should not stop the rest.
            Err(e) if paths.len() > 1 => eprintln!("warning: skipping {}: {e:#}", path.display()),
            Err(e) => return Err(e),
        }
    }
    if photos.is_empty() {
        bail!("--input {}: no readable photos", input.display());
    }
    let mut seen = std::collections::HashMap::new();
    for (name, path) in names.iter().zip(&kept) {
        if let Some(earlier) = seen.insert(name.clone(), path) {
            bail!(
                "--input {}: {} and {} would both be written as {name}.png (rename one)",
                input.display(),
                display(earlier),
                display(path)
            );
        }
    }
    let batch = images::to_tensor(&photos, device);
    Ok(Inputs {
        batch,
        photos,
        names,
        paths: kept,
    })
}

fn display(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// A photo's output name: its path under `--input` without the extension, folders joined by
/// `_` (`cat/Abyssinian_12.jpg` → `cat_Abyssinian_12`); a single photo's stem.
fn output_name(input: &Path, path: &Path) -> String {
    match path.strip_prefix(input) {
        Ok(relative) if input.is_dir() => relative
            .with_extension("")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("_"),
        _ => stem(path),
    }
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into())
}
