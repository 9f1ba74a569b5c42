//! The report printed at the end of a run: read back from its metrics.csv (so it says what the
//! file says), plus what setting up cost.

use anyhow::Result;

use crate::run::metrics::{Metric, MetricsTable};
use crate::run::session::Session;

/// Print the summary of a finished session.
pub fn print(s: &Session) -> Result<()> {
    let table = MetricsTable::read(&s.run_dir.join("metrics.csv"))?;
    println!("\nsummary: {}", s.run_dir.display());
    if let Some((epoch, accuracy)) = table.best("val_accuracy") {
        println!("  best val accuracy {accuracy:.4} at epoch {epoch}");
    }
    for e in &s.sets.evals {
        if let Some((_, accuracy)) = table.last(&format!("{}_accuracy", e.name)) {
            println!("  {} accuracy {accuracy:.4} (last epoch)", e.name);
        }
    }

    let sets = s.sets.named();
    // What the backbone pass produced: the head's pooled input, or the cut's activations.
    let features = match s.training {
        crate::learn::Training::Head(_) => "pooled features",
        crate::learn::Training::Top(_) => "cut activations",
    };
    let images: usize = sets.iter().map(|(_, f)| f.samples.len()).sum();
    let backbone_seconds: f64 = sets.iter().map(|(_, f)| f.extracted.backbone_seconds).sum();
    if sets.iter().all(|(_, f)| f.extracted.from_cache) {
        println!("  backbone 0.0 s ({images} images, from the cache)");
    } else {
        println!(
            "  backbone {backbone_seconds:.1} s for {images} images = {:.1} img/s ({features})",
            images as f64 / backbone_seconds.max(1e-9)
        );
    }
    let total =
        |column: &str| -> f32 { table.rows.iter().filter_map(|r| r.values.get(column)).sum() };
    println!(
        "  callback maps {:.1} s, weights hash {:.1} s, training {:.2} s + evaluation {:.2} s, \
         callbacks {:.2} s, total {:.1} s",
        s.setup.map_seconds,
        s.setup.hash_seconds,
        total("train_seconds"),
        total("head_seconds") - total("train_seconds"),
        total("callback_seconds"),
        s.setup.started.elapsed().as_secs_f64()
    );
    let cache_bytes: u64 = sets.iter().map(|(_, f)| f.extracted.cache_bytes).sum();
    println!(
        "  feature cache: {:.2} MB of {features} on disk; {:.2} MB of features and maps in memory",
        cache_bytes as f64 / 1e6,
        s.setup.memory_bytes as f64 / 1e6
    );
    // Every set's unreadable files, eval sets' too, each under its set's name.
    let skipped: Vec<_> = sets
        .iter()
        .flat_map(|(name, f)| f.extracted.skipped.iter().map(move |file| (name, file)))
        .collect();
    println!("  skipped files: {}", skipped.len());
    for (set, file) in &skipped {
        println!("    {set}: {}: {}", file.path.display(), file.reason);
    }
    print_scores(&table);
    println!(
        "  open TensorBoard: scripts/tensorboard.sh {}",
        s.config.run.runs_dir.display()
    );
    Ok(())
}

/// The latest value of every method score and agreement measure, one line per method or pair.
fn print_scores(table: &MetricsTable) {
    let mut lines: Vec<(String, Vec<String>)> = Vec::new();
    for column in &table.columns {
        let Some((_, value)) = table.last(column) else {
            continue;
        };
        let (line, item) = match Metric::from_column(column) {
            Some(Metric::Score { method, score }) => {
                (method, format!("{} {value:.3}", score.replace('_', " ")))
            }
            Some(Metric::Agreement { pair, measure }) => {
                let measure = match measure.as_str() {
                    "spearman" => "Spearman",
                    _ => "top-20% IoU",
                };
                (format!("agreement {pair}"), format!("{measure} {value:.3}"))
            }
            _ => continue,
        };
        match lines.iter_mut().find(|(l, _)| *l == line) {
            Some((_, items)) => items.push(item),
            None => lines.push((line, vec![item])),
        }
    }
    for (line, items) in lines {
        println!("  {line} (last epoch): {}", items.join(", "));
    }
}
