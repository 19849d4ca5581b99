//! The mode-agnostic core, wired: UDP reader → buffer → batcher → uploader, plus telemetry.
//!
//! Runners (the sidecar runner here, the Lambda runner later) start a [`Pipeline`] and then only
//! call [`Pipeline::flush`] and [`Pipeline::shutdown`]. Shutdown is one path with one deadline:
//! stop reading, read what the socket already holds, send everything buffered, then report what
//! could not be sent before the deadline.

use crate::batcher::{Batcher, Command, FlushPolicy};
use crate::buffer::SegmentBuffer;
use crate::health::{AliveGuard, Liveness};
use crate::ingest::{self, Sink};
use crate::stats::Stats;
use crate::telemetry::{Reporter, Telemetry};
use crate::uploader::{RetryPolicy, Uploader, XrayApi};
use std::sync::Arc;
use std::time::Duration;
use std::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};
use tokio_util::sync::CancellationToken;

/// How the core is sized and paced.
#[derive(Debug, Clone)]
pub struct Settings {
    pub buffer_bytes: usize,
    pub concurrency: usize,
    pub flush: FlushPolicy,
    pub retry: RetryPolicy,
    /// `None` turns telemetry off.
    pub telemetry: Option<(Reporter, Duration)>,
}

/// A flush or shutdown did not finish before its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline passed with {undelivered} segments not yet delivered")]
pub struct Timeout {
    pub undelivered: u64,
}

/// What a shutdown achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Segments still held when the deadline passed (0 after a complete drain).
    pub undelivered: u64,
    /// How long the shutdown took.
    pub took: Duration,
}

/// The running core.
pub struct Pipeline {
    pub stats: Arc<Stats>,
    pub buffer: Arc<SegmentBuffer>,
    /// Cleared when the reader or the upload loop stops, for `/health`.
    pub liveness: Arc<Liveness>,
    stop_ingest: CancellationToken,
    drain: mpsc::Sender<oneshot::Sender<()>>,
    ingest: JoinHandle<()>,
    commands: mpsc::Sender<Command>,
    batcher: JoinHandle<()>,
    stop_telemetry: CancellationToken,
    telemetry: Option<JoinHandle<()>>,
}

impl Pipeline {
    /// Starts the tasks on the current runtime. `socket` must already be bound.
    pub fn start<A: XrayApi>(socket: UdpSocket, api: A, settings: Settings, stats: Arc<Stats>) -> Pipeline {
        let api = Arc::new(api);
        let buffer = Arc::new(SegmentBuffer::new(settings.buffer_bytes, settings.flush.max_docs));

        let stop_ingest = CancellationToken::new();
        let (drain, drain_rx) = mpsc::channel(4);
        let sink = Sink::new(buffer.clone(), stats.clone());
        let liveness = Arc::new(Liveness::default());
        let guard = AliveGuard(liveness.clone(), |l| &l.ingest);
        let run_ingest = ingest::run(socket, sink, stop_ingest.clone(), drain_rx);
        let ingest = tokio::spawn(async move {
            let _alive = guard;
            run_ingest.await
        });

        let uploader = Arc::new(Uploader::new(api.clone(), buffer.clone(), stats.clone(), settings.retry));
        let batcher = Batcher { buffer: buffer.clone(), uploader, policy: settings.flush, concurrency: settings.concurrency };
        let (commands, commands_rx) = mpsc::channel(8);
        let guard = AliveGuard(liveness.clone(), |l| &l.uploads);
        let batcher = tokio::spawn(async move {
            let _alive = guard;
            batcher.run(commands_rx).await
        });

        let stop_telemetry = CancellationToken::new();
        let telemetry = settings.telemetry.map(|(reporter, interval)| {
            let t = Telemetry::new(api, stats.clone(), reporter);
            tokio::spawn(t.run(interval, stop_telemetry.clone()))
        });

        Pipeline { stats, buffer, liveness, stop_ingest, drain, ingest, commands, batcher, stop_telemetry, telemetry }
    }

    /// Segments held now (waiting or being uploaded).
    pub fn held(&self) -> u64 {
        let level = self.buffer.level();
        (level.queued + level.in_flight) as u64
    }

    /// Reads everything the socket holds, then sends everything buffered. Returns when all of
    /// it is delivered (or refused for good), or with [`Timeout`] at the deadline.
    pub async fn flush(&self, deadline: Instant) -> Result<(), Timeout> {
        let (tx, rx) = oneshot::channel();
        if self.drain.send(tx).await.is_ok() {
            let _ = timeout_at(deadline, rx).await;
        }
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Flush(tx)).await.is_err() {
            return Err(Timeout { undelivered: self.held() });
        }
        match timeout_at(deadline, rx).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Timeout { undelivered: self.held() }),
        }
    }

    /// Stops reading, drains the socket, sends everything, all before `deadline`. Whatever is
    /// still held then is counted as undelivered.
    pub async fn shutdown(mut self, deadline: Instant) -> ShutdownReport {
        let started = Instant::now();
        self.stop_ingest.cancel();
        if timeout_at(deadline, &mut self.ingest).await.is_err() {
            self.ingest.abort();
        }
        let _ = self.commands.send(Command::Close).await;
        if timeout_at(deadline, &mut self.batcher).await.is_err() {
            self.batcher.abort();
            let _ = (&mut self.batcher).await;
        }
        // The final telemetry record is cut after the drain, so it counts the last uploads.
        self.stop_telemetry.cancel();
        if let Some(mut t) = self.telemetry.take() {
            if timeout_at(deadline, &mut t).await.is_err() {
                t.abort();
            }
        }
        let undelivered = self.held();
        Stats::add(&self.stats.undelivered, undelivered);
        ShutdownReport { undelivered, took: started.elapsed() }
    }
}
