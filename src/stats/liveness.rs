//! Whether the core's tasks still run: each holds a guard that clears its flag when the task ends
//! for any reason, and `/health` reads the flags (`report::health`).

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

/// Liveness flags of the core tasks.
#[derive(Debug)]
pub(crate) struct Liveness {
    pub ingest: AtomicBool,
    pub uploads: AtomicBool,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness { ingest: AtomicBool::new(true), uploads: AtomicBool::new(true) }
    }
}

impl Liveness {
    /// `None` when alive, else which task stopped.
    pub(crate) fn problem(&self) -> Option<&'static str> {
        if !self.ingest.load(Relaxed) {
            Some("the UDP reader has stopped")
        } else if !self.uploads.load(Relaxed) {
            Some("the upload loop has stopped")
        } else {
            None
        }
    }
}

/// Clears a flag when dropped: held by a task for as long as it runs.
pub(crate) struct AliveGuard(pub Arc<Liveness>, pub fn(&Liveness) -> &AtomicBool);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        (self.1)(&self.0).store(false, Relaxed);
    }
}
