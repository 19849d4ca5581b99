//! PutTelemetryRecords: the per-minute counters X-Ray shows for a daemon.
//!
//! Same wire shape and gate as upstream: nothing is sent before the first datagram arrives;
//! after that one record per interval, even an all-zero one. Records that fail to send are kept
//! (at most 30, oldest dropped) and sent with the next ones, 10 per call. The counts are deltas
//! of the daemon's monotonic counters, so they are right where upstream's are not: "sent" means
//! accepted by X-Ray, and backend errors are classified by what actually happened.

use crate::backend::{Reporter, TelemetryApi, TelemetryBatch, TelemetryRecord as Record};
use crate::stats::{Api, Snapshot, Stats};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;
use tracing::debug;

const MAX_QUEUED_RECORDS: usize = 30;
const RECORDS_PER_CALL: usize = 10;

/// Collects records and sends them.
pub(crate) struct Telemetry<A> {
    api: A,
    stats: Arc<Stats>,
    reporter: Reporter,
    queue: VecDeque<Record>,
    last: Snapshot,
}

impl<A: TelemetryApi> Telemetry<A> {
    pub(crate) fn new(api: A, stats: Arc<Stats>, reporter: Reporter) -> Self {
        Telemetry { api, stats, reporter, queue: VecDeque::new(), last: Snapshot::default() }
    }

    /// Cuts a record of the counts since the previous one, if the gate is open.
    fn cut_record(&mut self) {
        if !self.stats.any_datagram_seen() {
            debug!("Skipped telemetry data as no segments found");
            return;
        }
        let now = self.stats.snapshot();
        let counts = now.since(&self.last);
        self.last = now;
        let timestamp =
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        if self.queue.len() == MAX_QUEUED_RECORDS {
            self.queue.pop_front();
            debug!("Telemetry Buffers truncated");
        }
        self.queue.push_back(Record { timestamp, counts });
    }

    /// Sends queued records; keeps the ones that failed.
    async fn send_queued(&mut self) {
        while !self.queue.is_empty() {
            let take = self.queue.len().min(RECORDS_PER_CALL);
            let records: Vec<Record> = self.queue.iter().take(take).cloned().collect();
            let batch = TelemetryBatch { reporter: self.reporter.clone(), records };
            match self.api.put_telemetry_records(batch).await {
                Ok(()) => {
                    self.queue.drain(..take);
                    debug!("Send {take} telemetry record(s)");
                }
                Err(e) => {
                    e.count(Api::PutTelemetryRecords, &self.stats);
                    debug!("Failed to send telemetry {} record(s). Re-queue records. {e}", self.queue.len());
                    return;
                }
            }
        }
    }

    /// Sends a record every `interval` until `shutdown`, then one last record.
    pub(crate) async fn run(mut self, interval: Duration, shutdown: CancellationToken) {
        debug!("Telemetry initiated");
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    self.cut_record();
                    self.send_queued().await;
                }
            }
        }
        self.cut_record();
        self.send_queued().await;
        debug!("telemetry: done!");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{BackendError, ErrorKind};
    use crate::stats::{ErrorClass, UpstreamClass};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder {
        batches: Mutex<Vec<TelemetryBatch>>,
        fail: Mutex<u32>,
    }

    impl TelemetryApi for Recorder {
        async fn put_telemetry_records(&self, batch: TelemetryBatch) -> Result<(), BackendError> {
            let mut fail = self.fail.lock().unwrap();
            if *fail > 0 {
                *fail -= 1;
                return Err(BackendError::new(ErrorKind::Timeout, "t"));
            }
            self.batches.lock().unwrap().push(batch);
            Ok(())
        }
    }

    #[tokio::test]
    async fn nothing_is_sent_before_the_first_datagram() {
        let api = Arc::new(Recorder::default());
        let stats = Arc::new(Stats::default());
        let mut t = Telemetry::new(api.clone(), stats.clone(), Reporter::default());
        t.cut_record();
        t.send_queued().await;
        assert!(api.batches.lock().unwrap().is_empty());
        // After one datagram, every interval yields a record, zero or not.
        stats.datagram_seen();
        Stats::add(&stats.received, 17);
        Stats::add(&stats.rejected_datagrams, 7);
        Stats::add(&stats.segments.sent, 9);
        stats.upstream_error(UpstreamClass::Http5xx);
        t.cut_record();
        t.send_queued().await;
        t.cut_record();
        t.send_queued().await;
        let batches = api.batches.lock().unwrap();
        assert_eq!(batches.len(), 2);
        let r = &batches[0].records[0].counts;
        assert_eq!((r.received, r.rejected(), r.sent, r.backend_error(UpstreamClass::Http5xx)), (17, 7, 9, 1));
        assert_eq!(batches[1].records[0].counts, Snapshot::default());
    }

    #[tokio::test]
    async fn failed_records_are_resent_with_the_next_ones_and_count_the_error() {
        let api = Arc::new(Recorder { fail: Mutex::new(1), ..Default::default() });
        let stats = Arc::new(Stats::default());
        stats.datagram_seen();
        let mut t = Telemetry::new(api.clone(), stats.clone(), Reporter::default());
        t.cut_record();
        t.send_queued().await;
        assert_eq!(stats.snapshot().backend_error(UpstreamClass::Timeout), 1);
        assert_eq!(stats.backend_errors(Api::PutTelemetryRecords, ErrorClass::Timeout), 1);
        t.cut_record();
        t.send_queued().await;
        let batches = api.batches.lock().unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].records.len(), 2);
        // The timeout of the first attempt shows up in the second record.
        assert_eq!(batches[0].records[1].counts.backend_error(UpstreamClass::Timeout), 1);
    }

    #[tokio::test]
    async fn the_queue_keeps_the_newest_thirty_records() {
        let api = Arc::new(Recorder { fail: Mutex::new(1000), ..Default::default() });
        let stats = Arc::new(Stats::default());
        stats.datagram_seen();
        let mut t = Telemetry::new(api, stats, Reporter::default());
        for _ in 0..35 {
            t.cut_record();
        }
        assert_eq!(t.queue.len(), MAX_QUEUED_RECORDS);
    }
}
