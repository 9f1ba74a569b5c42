//! `train`: fine-tune a frozen pretrained backbone as a cat/dog classifier and watch CAM /
//! Grad-CAM heatmaps evolve. Subcommands:
//!
//! - `train explain ...`: heatmap overlays for photos from a backbone and a trained head.

mod explain;
mod images;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Fine-tune a frozen backbone and explain it with CAM / Grad-CAM.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write heatmap overlays and maps for photos (or a tensor file).
    Explain(explain::ExplainArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Explain(args) => explain::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the whole chain of causes on one line.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
