//! `train`: fine-tune a frozen pretrained backbone as a cat/dog classifier and watch CAM /
//! Grad-CAM heatmaps evolve in TensorBoard.
//!
//! - `train --config configs/cam.toml`: a training run (see [`fit`]).
//! - `train --resume runs/<run>`: continue a run from its last complete epoch.
//! - `train features --config C --shard K/N`: part of a run's backbone pass, into its cache.
//! - `train explain ...`: heatmap overlays for photos from a backbone and a trained head.
//! - `train sanity --run runs/<run>`: do the run's maps depend on the weights? (randomisation)
//! - `train compare runs/<a> runs/<b> --out DIR`: an HTML report of runs side by side.

use train::{
    commands::bench, commands::compare, commands::explain, commands::features, commands::pretrain,
    commands::sanity, config, data::synth, run::fit,
};

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

/// Fine-tune a frozen backbone and explain it with CAM / Grad-CAM.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Train with this config (TOML).
    #[arg(long, conflicts_with = "resume")]
    config: Option<PathBuf>,
    /// Continue the run in this directory from its last complete epoch (reads its config.toml).
    #[arg(long)]
    resume: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write heatmap overlays and maps for photos (or a tensor file).
    Explain(explain::ExplainArgs),
    /// Compute shard K of N of a run's backbone pass into its feature cache (Slurm, Kubernetes).
    Features(features::FeaturesArgs),
    /// Write a synthetic cats-vs-dogs data set (ImageFolder + boxes.json).
    Synth(SynthArgs),
    /// Pretrain the small backbone of the quickstart on synthetic images.
    Pretrain(pretrain::PretrainArgs),
    /// Model-parameter randomisation test of a run's explanations (Adebayo et al. 2018).
    Sanity(sanity::SanityArgs),
    /// An HTML report comparing runs side by side (overlays, metric charts, final table).
    Compare(compare::CompareArgs),
    /// Measure speed and memory (VGG16, EfficientNet-Lite0, the callbacks, head epochs) on random weights.
    Bench(bench::BenchArgs),
}

/// Arguments of `train synth`.
#[derive(Debug, clap::Args)]
struct SynthArgs {
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Training images.
    #[arg(long, default_value_t = 400)]
    train: usize,
    /// Validation images.
    #[arg(long, default_value_t = 200)]
    val: usize,
    /// Image size in pixels (square).
    #[arg(long, default_value_t = 96)]
    size: usize,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Add the spurious cue (a striped badge: cyan across for cat, magenta upright for dog) and
    /// the eval sets `cue/` and `clean/`: the badge's side in pixels (0: a quarter of the
    /// image's side).
    #[arg(long)]
    cue: Option<usize>,
    /// With `--cue`: share of training images whose mark has their label's colour.
    #[arg(long, default_value_t = 1.0)]
    mark_agrees: f64,
    /// With `--cue`: share of training images whose animal is their label's.
    #[arg(long, default_value_t = 0.8)]
    animal_agrees: f64,
}

fn run(cli: Cli) -> Result<()> {
    match (cli.command, cli.config, cli.resume) {
        (Some(Command::Explain(args)), _, _) => explain::run(&args),
        (Some(Command::Features(args)), _, _) => features::run(&args),
        (Some(Command::Synth(a)), _, _) => synth_command(&a),
        (Some(Command::Pretrain(args)), _, _) => pretrain::run(&args),
        (Some(Command::Sanity(args)), _, _) => sanity::run(&args),
        (Some(Command::Compare(args)), _, _) => compare::run(&args),
        (Some(Command::Bench(args)), _, _) => bench::run(&args),
        (None, Some(path), None) => fit::fit(config::Config::load(&path)?, None),
        (None, None, Some(dir)) => {
            let (config, dir) = fit::run_config(&dir, "--resume")?;
            fit::fit(config, Some(&dir))
        }
        _ => bail!(
            "nothing to do: give --config FILE, --resume RUN_DIR, or a subcommand (see --help)"
        ),
    }
}

/// `train synth`: the set, checked as a config's `[data] synthetic` is.
fn synth_command(a: &SynthArgs) -> Result<()> {
    let spec = config::SyntheticConfig {
        seed: a.seed,
        train: a.train,
        val: a.val,
        size: a.size,
        cue: a.cue.map(|side| config::CueConfig {
            size: (side > 0).then_some(side),
            mark_agrees: a.mark_agrees,
            animal_agrees: a.animal_agrees,
        }),
    };
    spec.check(&[])?;
    synth::write_dataset(&a.out, &spec)
}

/// mimalloc instead of glibc's malloc: the fast paths allocate and free multi-megabyte
/// activations layer after layer, and glibc hands such blocks back to the kernel on every free,
/// so each new one page-faults its way in again (see the README's performance section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the whole chain of causes on one line.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
