//! Progress: a bar (indicatif) on a terminal, plain log lines (every 20 %) otherwise.

use std::io::IsTerminal;
use std::time::Instant;

/// Progress of `total` items.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    label: String,
    total: usize,
    done: usize,
    next_report: f64,
    start: Instant,
}

impl Progress {
    /// Start counting `total` items of `label`.
    pub fn new(label: &str, total: usize) -> Self {
        let bar = std::io::stdout().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            let style = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style.progress_chars("=> "));
            bar.set_message(label.to_string());
            bar
        });
        Self {
            bar,
            label: label.to_string(),
            total,
            done: 0,
            next_report: 0.2,
            start: Instant::now(),
        }
    }

    /// `n` more items done.
    pub fn add(&mut self, n: usize) {
        self.done += n;
        match &self.bar {
            Some(bar) => bar.inc(n as u64),
            None => {
                let fraction = self.done as f64 / self.total.max(1) as f64;
                if fraction >= self.next_report || self.done == self.total {
                    let rate = self.done as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
                    println!("{}: {}/{} ({rate:.1}/s)", self.label, self.done, self.total);
                    while self.next_report <= fraction {
                        self.next_report += 0.2;
                    }
                }
            }
        }
    }

    /// Whether a bar is shown (on a terminal).
    pub fn is_bar(&self) -> bool {
        self.bar.is_some()
    }

    /// Print a line without breaking the bar.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => println!("{line}"),
        }
    }

    /// Done.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
