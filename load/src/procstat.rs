//! CPU time and resident memory of a process, read from `/proc`.
//!
//! Used for the server under test (its PID) and for the generator itself,
//! so a saturated generator shows up next to the figures it produced.

use std::io;
use std::time::Duration;

/// Clock ticks per second in `/proc/PID/stat`: Linux fixes `USER_HZ` at 100
/// for user space on every architecture it runs on.
pub const USER_HZ: u64 = 100;

/// User plus system CPU time of every thread of `pid`.
pub fn cpu_time(pid: u32) -> io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat_cpu(&stat).ok_or_else(|| bad_data("stat"))
}

/// Resident set size of `pid` in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status_rss(&status).ok_or_else(|| bad_data("status"))
}

/// This process's CPU time.
pub fn own_cpu_time() -> io::Result<Duration> {
    cpu_time(std::process::id())
}

fn bad_data(file: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected /proc/PID/{file} format"),
    )
}

/// `utime + stime` from a `/proc/PID/stat` line. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted after its last `)`.
fn parse_stat_cpu(stat: &str) -> Option<Duration> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_ascii_whitespace();
    // After the name come field 3 (state) onwards; utime and stime are
    // fields 14 and 15.
    let utime: u64 = fields.nth(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime + stime;
    Some(Duration::from_millis(ticks * 1000 / USER_HZ))
}

/// `VmRSS` in bytes from `/proc/PID/status`.
fn parse_status_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_ascii_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_counts_fields_after_the_name() {
        let stat = "1234 (we ird) name) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4 0";
        assert_eq!(parse_stat_cpu(stat), Some(Duration::from_millis(3000)));
    }

    #[test]
    fn status_rss_is_in_bytes() {
        let status = "Name:\tx\nVmPeak:\t 9000 kB\nVmRSS:\t    1536 kB\nThreads:\t1\n";
        assert_eq!(parse_status_rss(status), Some(1536 * 1024));
    }

    #[test]
    fn own_process_is_readable() {
        assert!(rss_bytes(std::process::id()).unwrap() > 0);
        own_cpu_time().unwrap();
    }
}
