//! What `train explain` writes: an overlay (or guided gradients beside the photo) per image,
//! the table of logits and classes on stdout, `maps.safetensors` and, with `--boxes`,
//! `localization.json`.

use anyhow::{Context, Result};
use callbacks::{guided_beside_photo, overlay, OverlayStyle};

use super::inputs::Inputs;
use super::{boxes, ExplainArgs};
use crate::data::annotations::UprightAnnotations;
use crate::tensors::write_safetensors;
use callbacks::logging::tags::class_name;

/// What the method gave for every image, in order.
pub(super) struct Explained {
    /// The maps [N, H, W], or the guided gradients [N, 3, H, W].
    pub(super) maps: Vec<f32>,
    /// The raw maps [N, h, w] at the layer's resolution (map methods only).
    pub(super) raw: Vec<f32>,
    /// `[h, w]` of the raw maps.
    pub(super) raw_shape: [usize; 2],
    /// The logits [N, num_logits].
    pub(super) logits: Vec<f32>,
    /// Logits per image.
    pub(super) num_logits: usize,
    /// The class each image's map explains.
    pub(super) classes: Vec<f32>,
}

/// Write the pictures, print the table, score against `annotations` when given, and write
/// `maps.safetensors`.
pub(super) fn write(
    args: &ExplainArgs,
    inputs: &Inputs,
    explained: Explained,
    style: &OverlayStyle,
    annotations: Option<&UprightAnnotations>,
    class_names: &[String],
) -> Result<()> {
    let Explained {
        maps,
        raw,
        raw_shape,
        logits,
        num_logits,
        classes,
    } = explained;
    let [n, _, height, width] = inputs.batch.dims();
    let guided = args.method.is_guided();
    let plane = height * width * if guided { 3 } else { 1 };
    println!(
        "{:<28} {:>10} {:>9}  explained",
        "image", "logit(s)", "predicted"
    );
    for (i, (name, photo)) in inputs.names.iter().zip(&inputs.photos).enumerate() {
        let values = &maps[i * plane..(i + 1) * plane];
        let picture = match guided {
            true => guided_beside_photo(values, photo),
            false => overlay(values, photo, style),
        };
        let path = args.out_dir.join(format!("{name}.png"));
        picture
            .save(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let row = &logits[i * num_logits..(i + 1) * num_logits];
        let (predicted, _) = callbacks::scores::probabilities::prediction(row);
        let shown: Vec<String> = row.iter().map(|v| format!("{v:.3}")).collect();
        println!(
            "{name:<28} {:>10} {:>9}  {} ({})",
            shown.join(","),
            class_name(class_names, predicted),
            class_name(class_names, classes[i] as usize),
            args.method
        );
    }
    let maps_path = args.out_dir.join("maps.safetensors");
    if let Some(annotations) = annotations {
        let method = args.method.to_string();
        let plane = [height, width];
        let out = boxes::score(
            annotations,
            &method,
            &maps,
            plane,
            &inputs.paths,
            &callbacks::scores::localization_report::Baseline::scored(args.baselines),
            &args.out_dir,
        )?;
        println!("wrote {}", out.display());
    }
    let mut tensors = vec![
        ("logits".to_string(), vec![n, num_logits], logits),
        ("classes".to_string(), vec![n], classes),
    ];
    match guided {
        true => tensors.push(("maps".to_string(), vec![n, 3, height, width], maps)),
        false => {
            tensors.push(("maps".to_string(), vec![n, height, width], maps));
            tensors.push(("raw".to_string(), vec![n, raw_shape[0], raw_shape[1]], raw));
        }
    }
    write_safetensors(&maps_path, &tensors, Default::default())?;
    println!("wrote {n} overlays and {}", maps_path.display());
    Ok(())
}
