//! Test hooks, set through the environment: nothing here runs unless a test asks for it.

/// `EPOCH` or `EPOCH:SECONDS`: after checkpointing that epoch, stall (600 s by default), so a
/// test can SIGKILL the run or pull its directory away mid-run.
pub const STALL_ENV: &str = "TRAIN_TEST_STALL_AFTER_EPOCH";

/// Called once an epoch's checkpoint is on disk.
pub fn after_checkpoint(epoch: usize) {
    let Ok(value) = std::env::var(STALL_ENV) else {
        return;
    };
    let (at, seconds) = value.split_once(':').unwrap_or((&value, "600"));
    if let (Ok(at), Ok(seconds)) = (at.parse::<usize>(), seconds.parse::<u64>()) {
        if at == epoch {
            eprintln!("{STALL_ENV}: stalled after epoch {epoch}");
            std::thread::sleep(std::time::Duration::from_secs(seconds));
        }
    }
}

/// Set (to anything): stall for 600 s during the run's end, after the callbacks' last word is
/// flushed to disk and before the end is marked done, so a test can SIGKILL a run mid-end.
pub const STALL_END_ENV: &str = "TRAIN_TEST_STALL_DURING_END";

/// Called during the run's end; `flush` puts what was written so far on disk first (only when
/// a test asked for the stall).
pub fn during_end(flush: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    if std::env::var_os(STALL_END_ENV).is_none() {
        return Ok(());
    }
    flush()?;
    eprintln!("{STALL_END_ENV}: stalled during the run's end");
    std::thread::sleep(std::time::Duration::from_secs(600));
    Ok(())
}
