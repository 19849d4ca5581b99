//! Unmaps the start-up code once the daemon is ready, so its resident memory is what it uses.
//!
//! Most of the idle daemon's RSS is its own code, not its data. Start-up runs through much of
//! the binary once (configuration, the credential chain, TLS roots, the SDK's client), and the
//! kernel maps up to 64 KiB around every code page it faults in, so after start-up nearly all of
//! the 5 MB of machine code counts as resident. The steady state runs a small part of it.
//!
//! [`unmap_startup_code`] asks the kernel (`madvise(MADV_DONTNEED)`) to drop this process's
//! mappings of the executable's read-only pages. Nothing is lost: they are clean copies of the
//! file, they stay in the page cache, and a page that runs again is mapped again on first use.
//! A mapping that holds a private copy of any page (written to, as a debugger's breakpoint does)
//! is left alone, since dropping it would undo the write.

use std::path::Path;

/// Drops the mappings of the executable's read-only pages. Returns how many bytes of mappings
/// it released (0 where `/proc` cannot be read, or off Linux).
pub fn unmap_startup_code() -> usize {
    let (Ok(smaps), Ok(exe)) = (std::fs::read_to_string("/proc/self/smaps"), std::fs::read_link("/proc/self/exe")) else {
        return 0;
    };
    let mut released = 0;
    for (start, end) in clean_read_only_mappings(&smaps, &exe) {
        // SAFETY: the range is a whole mapping of our own executable that is not writable and
        // holds no private (anonymous) page, so every page is an unmodified copy of the file.
        // MADV_DONTNEED on such a mapping only removes page-table entries; the next access
        // faults the same bytes in again from the page cache.
        let rc = unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        if rc == 0 {
            released += end - start;
        }
    }
    released
}

/// The address ranges of `exe`'s mappings in `smaps` (the format of `/proc/self/smaps`) that
/// are not writable and have no anonymous pages.
fn clean_read_only_mappings(smaps: &str, exe: &Path) -> Vec<(usize, usize)> {
    let exe = exe.to_string_lossy();
    let mut found = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if let Some((start, end)) = address_range(first) {
            // A mapping's header: "start-end perms offset dev inode path".
            let perms = fields.next().unwrap_or("");
            let path = fields.nth(3).unwrap_or("");
            let read_only = perms.starts_with('r') && perms.as_bytes().get(1) == Some(&b'-') && perms.ends_with('p');
            current = (read_only && path == exe && end > start).then_some((start, end));
        } else if first == "Anonymous:" {
            if let Some(range) = current.take() {
                if fields.next() == Some("0") {
                    found.push(range);
                }
            }
        }
    }
    found
}

/// `start-end` in hexadecimal, as a mapping's header line begins; `None` for any other line.
fn address_range(field: &str) -> Option<(usize, usize)> {
    let (start, end) = field.split_once('-')?;
    Some((usize::from_str_radix(start, 16).ok()?, usize::from_str_radix(end, 16).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
00400000-00401000 r--p 00000000 fd:00 42 /opt/extensions/xray-daemon
Size:                  4 kB
Anonymous:             0 kB
00401000-00900000 r-xp 00001000 fd:00 42 /opt/extensions/xray-daemon
Size:               5116 kB
Anonymous:             0 kB
00900000-00a00000 r--p 00500000 fd:00 42 /opt/extensions/xray-daemon
Anonymous:             8 kB
00a00000-00a10000 rw-p 00600000 fd:00 42 /opt/extensions/xray-daemon
Anonymous:            12 kB
00b00000-00b10000 r-xp 00000000 fd:00 43 /usr/lib/other.so
Anonymous:             0 kB
7f0000000000-7f0000100000 rw-p 00000000 00:00 0
Anonymous:          1024 kB
";

    #[test]
    fn only_clean_read_only_mappings_of_the_executable_are_dropped() {
        let found = clean_read_only_mappings(SMAPS, Path::new("/opt/extensions/xray-daemon"));
        // Not the r--p mapping with a private page, the writable data, another file, or the heap.
        assert_eq!(found, vec![(0x400000, 0x401000), (0x401000, 0x900000)]);
    }

    fn rss_file_kb() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("RssFile:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn the_process_keeps_running_with_less_code_resident() {
        let before = rss_file_kb();
        let released = unmap_startup_code();
        let after = rss_file_kb();
        assert!(released > 0, "nothing released");
        // The test binary's code is mapped again as this thread runs, but far less of it.
        assert!(after < before, "RssFile {before} kB before, {after} kB after");
        // Code still runs after its pages were dropped.
        assert_eq!(format!("{}", 40 + 2), "42");
    }
}
