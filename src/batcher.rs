//! When to send: turns the buffer into PutTraceSegments batches.
//!
//! The decision is the pure function [`FlushPolicy::decide`]: send when a full batch is waiting,
//! when the oldest waiting segment has waited `max_delay` (so a partial batch leaves within 1 s
//! of its first segment), or at once while a flush or shutdown is draining the buffer. The loop
//! in [`Batcher::run`] only carries decisions out: it takes a batch, starts its upload on a
//! bounded set of tasks, and answers flush requests once the buffer is empty and nothing is in
//! flight. How a batch is sent is the uploader's business.

use crate::buffer::SegmentBuffer;
use crate::uploader::{Uploader, XrayApi, MAX_BYTES_PER_CALL, MAX_DOCS_PER_CALL};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// What the batcher should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Take a batch now.
    Send,
    /// Nothing to send before this moment (unless more segments arrive).
    WaitUntil(Instant),
    /// The buffer is empty.
    Idle,
}

/// The "when" rules.
#[derive(Debug, Clone, Copy)]
pub struct FlushPolicy {
    /// A batch of this many segments goes at once.
    pub max_docs: usize,
    /// A partial batch goes this long after its oldest segment arrived.
    pub max_delay: Duration,
}

impl Default for FlushPolicy {
    fn default() -> Self {
        FlushPolicy { max_docs: MAX_DOCS_PER_CALL, max_delay: Duration::from_secs(1) }
    }
}

impl FlushPolicy {
    pub fn decide(&self, queued: usize, oldest: Option<Instant>, now: Instant, draining: bool) -> Decision {
        let Some(oldest) = oldest else { return Decision::Idle };
        let due = oldest + self.max_delay;
        if draining || queued >= self.max_docs || now >= due {
            Decision::Send
        } else {
            Decision::WaitUntil(due)
        }
    }
}

/// Requests from the pipeline to the batcher.
#[derive(Debug)]
pub enum Command {
    /// Send everything now; answer when the buffer is empty and no upload is in flight.
    Flush(oneshot::Sender<()>),
    /// Like `Flush`, then stop.
    Close,
}

/// Owns the upload tasks.
pub struct Batcher<A> {
    pub buffer: Arc<SegmentBuffer>,
    pub uploader: Arc<Uploader<A>>,
    pub policy: FlushPolicy,
    /// The most uploads in flight at once.
    pub concurrency: usize,
}

impl<A: XrayApi> Batcher<A> {
    /// Runs until `Close` (or the command channel closes) and the buffer has drained.
    pub async fn run(self, mut commands: mpsc::Receiver<Command>) {
        let mut uploads = JoinSet::new();
        let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
        let mut closing = false;
        let concurrency = self.concurrency.max(1);
        loop {
            let level = self.buffer.level();
            let draining = closing || !waiters.is_empty();
            if draining && level.queued == 0 && uploads.is_empty() {
                for w in waiters.drain(..) {
                    let _ = w.send(());
                }
                if closing {
                    return;
                }
            }
            let decision = self.policy.decide(level.queued, self.buffer.oldest_arrival(), Instant::now(), draining);
            let slot_free = uploads.len() < concurrency;
            if decision == Decision::Send && slot_free {
                if let Some(batch) = self.buffer.take_batch(self.policy.max_docs, MAX_BYTES_PER_CALL) {
                    let uploader = self.uploader.clone();
                    uploads.spawn(async move { uploader.deliver(batch).await });
                }
                continue;
            }
            let wake_at = match decision {
                Decision::WaitUntil(t) if slot_free => Some(t),
                _ => None,
            };
            tokio::select! {
                _ = self.buffer.arrived() => {}
                Some(_) = uploads.join_next(), if !uploads.is_empty() => {}
                _ = sleep_until(wake_at), if wake_at.is_some() => {}
                command = commands.recv(), if !closing => match command {
                    Some(Command::Flush(reply)) => waiters.push(reply),
                    Some(Command::Close) | None => closing = true,
                },
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decide_sends_full_batches_at_once() {
        let p = FlushPolicy::default();
        let now = Instant::now();
        assert_eq!(p.decide(50, Some(now), now, false), Decision::Send);
        assert_eq!(p.decide(120, Some(now), now, false), Decision::Send);
    }

    #[test]
    fn decide_holds_a_partial_batch_until_one_second_after_its_first_segment() {
        let p = FlushPolicy::default();
        let first = Instant::now();
        let later = first + Duration::from_millis(400);
        assert_eq!(p.decide(3, Some(first), later, false), Decision::WaitUntil(first + Duration::from_secs(1)));
        assert_eq!(p.decide(3, Some(first), first + Duration::from_secs(1), false), Decision::Send);
    }

    #[test]
    fn decide_sends_anything_while_draining_and_idles_when_empty() {
        let p = FlushPolicy::default();
        let now = Instant::now();
        assert_eq!(p.decide(1, Some(now), now, true), Decision::Send);
        assert_eq!(p.decide(0, None, now, true), Decision::Idle);
        assert_eq!(p.decide(0, None, now, false), Decision::Idle);
    }
}
