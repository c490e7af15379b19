//! The machine and software a suite ran on, for the report's header.

use std::path::Path;
use std::process::Command;

/// Facts about the machine and the builds.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Logical cores.
    pub cores: usize,
    /// Memory in GiB.
    pub memory_gib: f64,
    /// Kernel release.
    pub kernel: String,
    /// When the suite ran.
    pub date: String,
    /// `rustc --version`.
    pub rustc: String,
    /// `nats-server --version`.
    pub nats: String,
    /// The workspace's commit.
    pub commit: String,
}

/// Reads what can be read; unknown facts stay `?`.
pub fn describe(workspace: &Path, nats_bin: &Path) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "?".to_owned(), |(_, v)| v.trim().to_owned());
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kib| kib / (1024.0 * 1024.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "?".to_owned(), |s| s.trim().to_owned());
    let dirty = output(
        Command::new("git")
            .args(["status", "--porcelain"])
            .current_dir(workspace),
    ) != "?";
    let commit = output(
        Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .current_dir(workspace),
    );
    Machine {
        cpu,
        cores,
        memory_gib,
        kernel,
        date: output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])),
        rustc: output(Command::new("rustc").arg("--version")),
        nats: output(Command::new(nats_bin).arg("--version")),
        commit: if dirty {
            format!("{commit} (with local changes)")
        } else {
            commit
        },
    }
}

/// The trimmed stdout of a command, or `?`.
fn output(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "?".to_owned())
}
