//! How much memory the segment buffer gets when no setting says: 1 % of the memory this process
//! may use (the cgroup limit in a container, else host RAM), at least 3 MB; in Lambda, 3 % of the
//! function's memory, at least 16 MB (the budget of Lambda's built-in daemon).
//!
//! Apart from the configuration because it asks the machine, not the user: `/proc/meminfo` and
//! the cgroup files, read under a root directory that tests replace.

use std::path::Path;

/// The smallest buffer upstream accepts, in MB.
pub(crate) const MIN_BUFFER_MB: u64 = 3;
pub(crate) const MB: u64 = 1024 * 1024;

/// In Lambda: 3 % of the function's memory or 16 MB, whichever is larger, and what that is.
/// `function_memory_mb`: `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, when Lambda sent a usable one.
pub(crate) fn lambda_buffer_memory(function_memory_mb: Option<u64>) -> (u64, String) {
    match function_memory_mb.filter(|&mb| mb > 0) {
        Some(mb) if mb.saturating_mul(MB) / 100 * 3 > 16 * MB => {
            (mb.saturating_mul(MB) / 100 * 3, format!("3% of the function's {mb} MB"))
        }
        Some(mb) => (16 * MB, format!("16 MB, more than 3% of the function's {mb} MB")),
        None => (16 * MB, "16 MB, Lambda's default".to_owned()),
    }
}

/// 1 % of the memory this process may use, at least 3 MB, and what that is.
pub(crate) fn default_buffer_memory() -> (u64, String) {
    let (total, source) = memory_available(Path::new("/"));
    let bytes = (total / 100).max(MIN_BUFFER_MB * MB);
    (bytes, format!("1% of {source}"))
}

/// The memory limit that applies to this process, and what it is.
fn memory_available(root: &Path) -> (u64, &'static str) {
    let host = std::fs::read_to_string(root.join("proc/meminfo")).ok().and_then(|m| parse_meminfo(&m));
    let cgroup = cgroup_limit(root);
    match (cgroup, host) {
        (Some(c), Some(h)) if c < h => (c, "the container memory limit"),
        (Some(c), None) => (c, "the container memory limit"),
        (_, Some(h)) => (h, "host memory"),
        (None, None) => (0, "an unknown amount of memory"),
    }
}

fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The memory limit of this process's cgroup (v2, else v1), if one is set.
fn cgroup_limit(root: &Path) -> Option<u64> {
    let read = |p: &Path| std::fs::read_to_string(root.join(p)).ok();
    let parse = |s: String| s.trim().parse::<u64>().ok().filter(|&n| n > 0 && n < (1 << 60));
    // cgroup v2: our own cgroup's memory.max, else the namespace root's.
    if let Some(own) = read(Path::new("proc/self/cgroup"))
        .and_then(|c| c.lines().find_map(|l| l.strip_prefix("0::").map(|p| p.trim_start_matches('/').to_owned())))
    {
        for dir in [format!("sys/fs/cgroup/{own}"), "sys/fs/cgroup".to_owned()] {
            if let Some(limit) = read(&Path::new(&dir).join("memory.max")).and_then(parse) {
                return Some(limit);
            }
        }
    }
    read(Path::new("sys/fs/cgroup/memory/memory.limit_in_bytes")).and_then(parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limit_prefers_a_smaller_cgroup_limit() {
        let dir = std::env::temp_dir().join(format!("xd-mem-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("proc/self")).unwrap();
        std::fs::create_dir_all(dir.join("sys/fs/cgroup/kubepods/pod1")).unwrap();
        std::fs::write(dir.join("proc/meminfo"), "MemTotal:       24000000 kB\nMemFree: 1 kB\n").unwrap();
        assert_eq!(memory_available(&dir), (24_000_000 * 1024, "host memory"));
        std::fs::write(dir.join("proc/self/cgroup"), "0::/kubepods/pod1\n").unwrap();
        std::fs::write(dir.join("sys/fs/cgroup/kubepods/pod1/memory.max"), "536870912\n").unwrap();
        assert_eq!(memory_available(&dir), (536_870_912, "the container memory limit"));
        std::fs::write(dir.join("sys/fs/cgroup/kubepods/pod1/memory.max"), "max\n").unwrap();
        assert_eq!(memory_available(&dir).1, "host memory");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lambda_gets_3_percent_of_the_function_or_16_mb() {
        assert_eq!(lambda_buffer_memory(Some(128)), (16 * MB, "16 MB, more than 3% of the function's 128 MB".into()));
        assert_eq!(lambda_buffer_memory(Some(2048)), (2048 * MB / 100 * 3, "3% of the function's 2048 MB".into()));
        assert_eq!(lambda_buffer_memory(Some(0)), (16 * MB, "16 MB, Lambda's default".into()));
        assert_eq!(lambda_buffer_memory(None).0, 16 * MB);
        assert_eq!(lambda_buffer_memory(Some(u64::MAX)).0, u64::MAX / 100 * 3);
    }

    #[test]
    fn the_default_is_at_least_3_mb() {
        let (bytes, source) = default_buffer_memory();
        assert!(bytes >= MIN_BUFFER_MB * MB, "{bytes}");
        assert!(source.starts_with("1% of "), "{source}");
    }
}
