//! The benchmark suite: every scenario against chatgate and nats-server,
//! several runs each, written up as `BENCHMARKS.md` with SVG plots.

use std::process::Command;

use crate::cli::SuiteCommand;
use crate::error::LoadError;

/// Pins this process and all its threads to `core` with `taskset`.
pub fn pin_self(core: usize) -> Result<(), LoadError> {
    let status = Command::new("taskset")
        .args([
            "-a",
            "-cp",
            &core.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(LoadError::Server(format!("taskset: {status}")))
    }
}

/// Runs the suite.
pub async fn run(_args: &SuiteCommand) -> Result<(), LoadError> {
    Err(LoadError::Scenario("suite: not yet".into()))
}
