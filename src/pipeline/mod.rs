//! The mode-agnostic core, wired: one buffer and flush driver per signal behind the [`intake`]
//! the sources push into, and a [`Pipeline`] handle.
//!
//! The pipeline does not know its sources. The runner starts them: the servers push through an
//! [`Intake`]; a source that reads on its own (the UDP reader) is spawned through
//! [`Pipeline::spawn_source`], which gives it a [`SourceControl`] so that flush and shutdown can
//! reach it.
//!
//! Runners start a pipeline and then only call [`Pipeline::flush`] and [`Pipeline::shutdown`],
//! as an OpenTelemetry batch processor is driven through `force_flush` and `shutdown`. Both are
//! commands to the running tasks and take `&self`, so a flush in the background and a shutdown
//! can meet safely. Shutdown is one path with one deadline: stop the sources, let them read what
//! their sockets already hold, send everything buffered, then report what could not be sent
//! before the deadline. The [`buffer`] holds records until a [`flush`] driver takes them.

pub mod buffer;
pub(crate) mod disk_log;
pub(crate) mod flush;
pub mod intake;
pub(crate) mod spool;

use crate::backend::Sink;
use crate::signal::{Segments, Signal, SpanSegments, Spans};
use crate::stats::liveness::{AliveGuard, Liveness};
use crate::stats::Stats;
use crate::translate::{Options, Translator};
use buffer::{Budget, Buffer};
use flush::{Command, Driver, FlushPolicy, RetryPolicy, Uploader};
use intake::{Intake, SourceControl, SourceHandle, SpanForm};
use spool::{Spool, SpoolLane, SpoolSettings};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};
use tokio_util::sync::CancellationToken;

/// How the core is sized and paced.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The memory all buffers together may hold.
    pub(crate) buffer_bytes: usize,
    /// The most uploads in flight at once, per signal.
    pub(crate) concurrency: usize,
    /// How long a partial batch may wait.
    pub(crate) flush_delay: Duration,
    pub retry: RetryPolicy,
}

/// With a spool, the most of a shutdown's time kept for writing what is left to disk (a
/// quarter of it when it is shorter).
const SPOOL_MARGIN: std::time::Duration = std::time::Duration::from_millis(500);

/// Where the spans go, and so what the span buffer holds.
pub(crate) enum SpanRoute<P> {
    /// Converted to segment documents at the intake and sent through the segments' sink
    /// (`XRAY_DAEMON_SPAN_UPLOAD=segments`), with these translation options.
    Segments(Options),
    /// Requests as received, sent through `P` to X-Ray's OTLP endpoint
    /// (`XRAY_DAEMON_SPAN_UPLOAD=otlp`).
    Otlp(P),
}

/// A flush did not finish before its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline passed with {undelivered} segments not yet delivered")]
pub struct Timeout {
    pub undelivered: u64,
}

/// What a shutdown achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShutdownReport {
    /// Segments still held when the deadline passed (0 after a complete drain).
    pub undelivered: u64,
    /// Spans still held then.
    pub undelivered_spans: u64,
    /// Segments and spans written to the disk spool at the deadline.
    pub spooled: u64,
    /// How long the shutdown took.
    pub took: Duration,
}

/// One signal's buffer and the channel to its flush driver.
struct Lane {
    buffer: Arc<Buffer>,
    commands: mpsc::Sender<Command>,
    /// Stops the driver's uploads at once (their batches come back to the buffer).
    cut: CancellationToken,
    /// With a disk spool, this signal's log.
    spool: Option<Arc<SpoolLane>>,
}

impl Lane {
    /// Starts the driver of signal `S`, sending through `sink`, and with a spool (`lane` of it)
    /// its mover and replayer, which run until `stop_spool`. Returns the lane, the driver's task
    /// and the spool's tasks.
    fn start<S: Signal, K: Sink<S>>(
        sink: K,
        budget: &Arc<Budget>,
        settings: &Settings,
        stats: &Arc<Stats>,
        alive: AliveGuard,
        spool: Option<(Arc<SpoolLane>, &SpoolSettings)>,
        stop_spool: &CancellationToken,
    ) -> (Lane, JoinHandle<()>, Vec<JoinHandle<()>>) {
        let policy = FlushPolicy::of::<S>(settings.flush_delay);
        let buffer = Arc::new(Buffer::sharing(budget.clone(), policy.max_items));
        let mut uploader = Uploader::<S, K>::new(sink, stats.clone(), settings.retry);
        let mut spool_tasks = Vec::new();
        if let Some((lane, spool_settings)) = &spool {
            buffer.attach_spool();
            let (interval, rate, stop) = (spool_settings.interval, spool_settings.replay_rate, stop_spool.clone());
            spool_tasks.push(tokio::spawn(spool::mover(lane.clone(), buffer.clone(), interval, stop.clone())));
            spool_tasks.push(tokio::spawn(spool::replayer::<S>(lane.clone(), buffer.clone(), rate, stop)));
            uploader = uploader.with_spool(lane.clone(), interval);
        }
        let uploader = Arc::new(uploader);
        let driver = Driver { buffer: buffer.clone(), uploader, policy, concurrency: settings.concurrency };
        let (commands, commands_rx) = mpsc::channel(8);
        let cut = CancellationToken::new();
        let cut_driver = cut.clone();
        let task = tokio::spawn(async move {
            let _alive = alive;
            driver.run(commands_rx, cut_driver).await
        });
        (Lane { buffer, commands, cut, spool: spool.map(|(lane, _)| lane) }, task, spool_tasks)
    }

    /// Items held now, waiting or being uploaded.
    fn held(&self) -> u64 {
        self.buffer.held_items()
    }

    /// Asks the driver to send everything now; the answer comes when it has.
    async fn flush(&self) -> Option<oneshot::Receiver<()>> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Flush(tx)).await.ok().map(|()| rx)
    }
}

/// The tasks a shutdown waits for; taken by the first shutdown.
struct Tasks {
    drivers: Vec<JoinHandle<()>>,
    /// The spool's movers and replayers.
    spool: Vec<JoinHandle<()>>,
}

/// A source spawned through [`Pipeline::spawn_source`].
struct Source {
    handle: SourceHandle,
    /// Taken by the first shutdown.
    task: Option<JoinHandle<()>>,
}

struct Shared {
    stats: Arc<Stats>,
    liveness: Arc<Liveness>,
    segments: Lane,
    spans: Lane,
    intake: Intake,
    sources: Mutex<Vec<Source>>,
    stop_sources: CancellationToken,
    stop_spool: CancellationToken,
    /// Held for the directory lock.
    _spool: Option<Spool>,
    tasks: Mutex<Option<Tasks>>,
}

/// A handle to the running core; clones share it.
#[derive(Clone)]
pub(crate) struct Pipeline {
    shared: Arc<Shared>,
}

impl Pipeline {
    /// Starts the flush drivers on the current runtime. `segments` takes the segment batches
    /// (and the spans', converted, on the [`SpanRoute::Segments`] route); `spans` says where the
    /// spans go. `spool`, opened with the same `stats` and the same route, turns the disk spool
    /// on.
    pub(crate) fn start<B, P>(
        segments: B,
        spans: SpanRoute<P>,
        settings: Settings,
        stats: Arc<Stats>,
        spool: Option<Spool>,
    ) -> Pipeline
    where
        B: Sink<Segments> + Sink<SpanSegments> + Clone,
        P: Sink<Spans>,
    {
        let budget = Arc::new(Budget::new(settings.buffer_bytes));
        let liveness = Arc::new(Liveness::default());
        let alive = || AliveGuard(liveness.clone(), |l| &l.uploads);
        let stop_spool = CancellationToken::new();
        let spool_of = |lane: fn(&Spool) -> &Arc<SpoolLane>| spool.as_ref().map(|s| (lane(s).clone(), &s.settings));
        let span_spool = spool_of(|s| &s.spans);
        let (span_lane, form) = match spans {
            SpanRoute::Segments(options) => (
                Lane::start::<SpanSegments, _>(
                    segments.clone(),
                    &budget,
                    &settings,
                    &stats,
                    alive(),
                    span_spool,
                    &stop_spool,
                ),
                SpanForm::Segments(Translator::new(&options)),
            ),
            SpanRoute::Otlp(sink) => (
                Lane::start::<Spans, _>(sink, &budget, &settings, &stats, alive(), span_spool, &stop_spool),
                SpanForm::Otlp,
            ),
        };
        let (segments, segments_driver, mut spool_tasks) = Lane::start::<Segments, _>(
            segments,
            &budget,
            &settings,
            &stats,
            alive(),
            spool_of(|s| &s.segments),
            &stop_spool,
        );
        let (spans, spans_driver, span_spool_tasks) = span_lane;
        spool_tasks.extend(span_spool_tasks);
        let intake = Intake::new(segments.buffer.clone(), spans.buffer.clone(), form, stats.clone());
        let tasks = Tasks { drivers: vec![segments_driver, spans_driver], spool: spool_tasks };
        let shared = Shared {
            stats,
            liveness,
            segments,
            spans,
            intake,
            sources: Mutex::new(Vec::new()),
            stop_sources: CancellationToken::new(),
            stop_spool,
            _spool: spool,
            tasks: Mutex::new(Some(tasks)),
        };
        Pipeline { shared: Arc::new(shared) }
    }

    /// Where sources hand their records in.
    pub(crate) fn intake(&self) -> &Intake {
        &self.shared.intake
    }

    /// Spawns a source that reads on its own: `run` gets the intake and the control through
    /// which [`Pipeline::flush`] asks it to read what it holds and [`Pipeline::shutdown`] stops
    /// it. While it runs, `/health` counts it alive.
    pub(crate) fn spawn_source<F, Fut>(&self, run: F)
    where
        F: FnOnce(Intake, SourceControl) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (control, handle) = SourceControl::new(self.shared.stop_sources.clone());
        let alive = AliveGuard(self.shared.liveness.clone(), |l| &l.ingest);
        let running = run(self.shared.intake.clone(), control);
        let task = tokio::spawn(async move {
            let _alive = alive;
            running.await
        });
        self.sources().push(Source { handle, task: Some(task) });
    }

    fn sources(&self) -> std::sync::MutexGuard<'_, Vec<Source>> {
        self.shared.sources.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn stats(&self) -> &Arc<Stats> {
        &self.shared.stats
    }

    /// The segment buffer, for `/metrics`.
    pub(crate) fn segment_buffer(&self) -> &Arc<Buffer> {
        &self.shared.segments.buffer
    }

    /// The span buffer, for OTLP/HTTP requests and `/metrics`.
    pub(crate) fn span_buffer(&self) -> &Arc<Buffer> {
        &self.shared.spans.buffer
    }

    /// Cleared when the reader or an upload loop stops, for `/health`.
    pub(crate) fn liveness(&self) -> &Arc<Liveness> {
        &self.shared.liveness
    }

    /// Segments held now (waiting or being uploaded).
    pub(crate) fn held(&self) -> u64 {
        self.shared.segments.held()
    }

    /// Has the sources read everything their sockets hold, then sends everything buffered,
    /// segments and spans. Returns when all of it is delivered (or refused for good), or with
    /// [`Timeout`] at the deadline.
    pub(crate) async fn flush(&self, deadline: Instant) -> Result<(), Timeout> {
        let drains: Vec<_> = self.sources().iter().map(|s| s.handle.drain.clone()).collect();
        for drain in drains {
            let (tx, rx) = oneshot::channel();
            if drain.send(tx).await.is_ok() {
                let _ = timeout_at(deadline, rx).await;
            }
        }
        let (segments, spans) = (self.shared.segments.flush().await, self.shared.spans.flush().await);
        let mut done = true;
        for answer in [segments, spans] {
            done &= match answer {
                Some(rx) => matches!(timeout_at(deadline, rx).await, Ok(Ok(()))),
                None => false,
            };
        }
        if done {
            Ok(())
        } else {
            Err(Timeout { undelivered: self.held() })
        }
    }

    /// Stops reading, drains the socket, sends everything, all before `deadline`. With a disk
    /// spool, the uploads stop a little earlier and what is left is written to disk. Whatever is
    /// still held then is counted as undelivered. A second call only reports what is held.
    pub(crate) async fn shutdown(&self, deadline: Instant) -> ShutdownReport {
        let started = Instant::now();
        let lanes = [&self.shared.segments, &self.shared.spans];
        let spooled = lanes.iter().any(|l| l.spool.is_some());
        let tasks = self.shared.tasks.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(Tasks { drivers, spool }) = tasks else {
            let undelivered_spans = self.shared.spans.held();
            return ShutdownReport { undelivered: self.held(), undelivered_spans, spooled: 0, took: started.elapsed() };
        };
        // Nothing more is read back from disk, and the movers stop: the drain below writes.
        self.shared.stop_spool.cancel();
        for task in spool {
            let _ = timeout_at(deadline, task).await;
        }
        self.shared.stop_sources.cancel();
        let sources: Vec<_> = self.sources().iter_mut().filter_map(|s| s.task.take()).collect();
        for mut source in sources {
            if timeout_at(deadline, &mut source).await.is_err() {
                source.abort();
            }
        }
        for lane in lanes {
            let _ = lane.commands.send(Command::Close).await;
        }
        // With a spool, the uploads stop early enough to write what is left.
        let uploads_until =
            if spooled { deadline - (deadline - Instant::now()).min(SPOOL_MARGIN * 4) / 4 } else { deadline };
        // Counted when the deadline passes: aborting a driver drops its uploads, and their
        // batches return their bytes to the budget (or, with a spool, their records) as they go.
        let mut at_deadline = None;
        for (lane, mut driver) in lanes.iter().zip(drivers) {
            if timeout_at(uploads_until, &mut driver).await.is_err() {
                if !spooled {
                    at_deadline.get_or_insert_with(|| (self.held(), self.shared.spans.held()));
                }
                lane.cut.cancel();
                if timeout_at(deadline, &mut driver).await.is_err() {
                    driver.abort();
                    let _ = driver.await;
                }
            }
        }
        let mut written = 0;
        for lane in lanes {
            if let Some(spool) = &lane.spool {
                let far = Instant::now() + std::time::Duration::from_secs(3600);
                while let Some(mut batch) = lane.buffer.take_waiting(far) {
                    match timeout_at(deadline, spool.spill(&mut batch)).await {
                        Ok(n) => written += n,
                        Err(_) => break,
                    }
                }
            }
        }
        let (undelivered, undelivered_spans) = at_deadline.unwrap_or_else(|| (self.held(), self.shared.spans.held()));
        Stats::add(&Segments::delivery(&self.shared.stats).undelivered, undelivered);
        Stats::add(&Spans::delivery(&self.shared.stats).undelivered, undelivered_spans);
        ShutdownReport { undelivered, undelivered_spans, spooled: written, took: started.elapsed() }
    }
}
