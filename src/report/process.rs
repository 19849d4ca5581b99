//! The standard `process_*` metrics, read from `/proc/self` at each scrape.
//!
//! Every Prometheus client library exports them under the same names, so dashboards and alerts
//! written for any exporter's memory, CPU and file descriptors work on the daemon too. Node
//! exporters see the host, not one container's process. The parsers take the files' text, so
//! they are tested without a `/proc`.

use std::fs;

/// What `/proc/self` says about the daemon. A value that could not be read is `None` and its
/// metric is left out.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Process {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub start_time_seconds: Option<f64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

/// The fields of `/proc/self/stat` the metrics use, in their raw units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    /// User and system CPU time, in clock ticks.
    utime: u64,
    stime: u64,
    /// When the process started, in clock ticks after boot.
    starttime: u64,
    /// Virtual memory size, in bytes.
    vsize: u64,
    /// Resident set size, in pages.
    rss: u64,
}

impl Process {
    /// Reads the current values.
    pub(crate) fn read() -> Process {
        let stat = fs::read_to_string("/proc/self/stat").ok().and_then(|t| parse_stat(&t));
        // SAFETY: sysconf only reads a system constant.
        let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
        let ticks = (ticks > 0).then_some(ticks as f64);
        let boot = fs::read_to_string("/proc/stat").ok().and_then(|t| boot_time(&t));
        Process {
            cpu_seconds: stat.zip(ticks).map(|(s, t)| (s.utime + s.stime) as f64 / t),
            resident_bytes: stat.map(|s| s.rss.saturating_mul(page.max(0) as u64)),
            virtual_bytes: stat.map(|s| s.vsize),
            start_time_seconds: stat.zip(ticks).zip(boot).map(|((s, t), b)| b as f64 + s.starttime as f64 / t),
            open_fds: fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64),
            max_fds: fs::read_to_string("/proc/self/limits").ok().and_then(|t| max_open_files(&t)),
        }
    }
}

/// The fields of `/proc/self/stat`. The command name (2nd field) is in parentheses and may hold
/// spaces and parentheses itself, so fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // After the name: state is field 3; utime is 14, stime 15, starttime 22, vsize 23, rss 24.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat { utime: field(14)?, stime: field(15)?, starttime: field(22)?, vsize: field(23)?, rss: field(24)? })
}

/// `btime` of `/proc/stat`: when the system booted, in seconds since the epoch.
fn boot_time(text: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()
}

/// The soft limit on open files, from `/proc/self/limits`; none if unlimited.
fn max_open_files(text: &str) -> Option<u64> {
    let line = text.lines().find_map(|l| l.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let text = "4242 (xray (d) ) S 1 4242 4242 0 -1 4194560 1161 0 0 0 150 25 0 0 20 0 3 0 \
                    98765 12345678 1600 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(
            parse_stat(text),
            Some(Stat { utime: 150, stime: 25, starttime: 98765, vsize: 12_345_678, rss: 1600 })
        );
        assert_eq!(parse_stat("4242 (truncated) S 1 2"), None);
        assert_eq!(parse_stat("no parentheses"), None);
    }

    #[test]
    fn boot_time_and_open_file_limit_are_found() {
        assert_eq!(boot_time("cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n"), Some(1_700_000_000));
        assert_eq!(boot_time("cpu 1\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(max_open_files("Max open files            unlimited            unlimited            files\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_memory_cpu_time_and_open_files() {
        let p = Process::read();
        assert!(p.resident_bytes.is_some_and(|b| b > 100_000), "{p:?}");
        assert!(p.virtual_bytes >= p.resident_bytes, "{p:?}");
        assert!(p.cpu_seconds.is_some_and(|s| s >= 0.0), "{p:?}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(p.start_time_seconds.is_some_and(|t| t > now - 86_400.0 && t <= now + 1.0), "{p:?}");
        assert!(p.open_fds.is_some_and(|n| n >= 3) && p.max_fds.is_some_and(|m| m >= p.open_fds.unwrap()), "{p:?}");
    }
}
