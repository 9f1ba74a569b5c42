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
