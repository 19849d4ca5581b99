//! What keeps the data path's log lines few: a warning logged at most once per interval, which
//! says how many were held back, and the target of the lines that repeat with the traffic.
//! The subscriber that writes them is set up in `report::logging`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

/// The target of events that repeat with the traffic (each batch sent), held back in Lambda mode.
pub const ROUTINE: &str = "xray_daemon::routine";

/// Logs a warning at most once per interval and says how many were held back in between.
pub(crate) struct RateLimitedWarn {
    interval_secs: u64,
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimitedWarn {
    pub(crate) const fn new(interval_secs: u64) -> Self {
        RateLimitedWarn { interval_secs, last: AtomicU64::new(0), suppressed: AtomicU64::new(0) }
    }

    /// Returns `Some(suppressed_since_last)` when a line may be logged now.
    pub(crate) fn check(&self) -> Option<u64> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let last = self.last.load(Relaxed);
        let due = last == 0 || now >= last + self.interval_secs;
        if due && self.last.compare_exchange(last, now.max(1), Relaxed, Relaxed).is_ok() {
            return Some(self.suppressed.swap(0, Relaxed));
        }
        self.suppressed.fetch_add(1, Relaxed);
        None
    }
}

/// What a line logged after [`RateLimitedWarn::check`] adds about the lines held back.
pub(crate) fn suppressed_note(suppressed: u64) -> String {
    if suppressed == 0 {
        String::new()
    } else {
        format!(" ({suppressed} similar messages suppressed)")
    }
}
