//! Figures about this process, for reports and benchmarks (Linux; `None` elsewhere).

use std::time::Duration;

/// The peak resident set size of this process in bytes (`VmHWM` in `/proc/self/status`).
///
/// ```
/// let peak = secagg::process::peak_rss_bytes();
/// # #[cfg(target_os = "linux")]
/// assert!(peak.is_some_and(|b| b > 0));
/// ```
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU time (user + system, all threads) this process has used so far.
///
/// ```
/// let spent = secagg::process::process_cpu_time();
/// # #[cfg(target_os = "linux")]
/// assert!(spent.is_some());
/// ```
pub fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // /proc reports in USER_HZ, which Linux fixes at 100 for user space.
    Some(Duration::from_millis(ticks * 10))
}
