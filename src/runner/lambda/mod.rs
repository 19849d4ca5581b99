//! Lambda extension mode: the same core as the sidecar, driven by the Lambda lifecycle.
//!
//! A Lambda sandbox freezes as soon as the runtime and every extension have asked for their next
//! event, and may be killed while frozen. So the extension decides *when* to flush from Lambda's
//! events (here) and leaves *how* to the shared [`Pipeline`]: by default it waits for the
//! Telemetry API's `platform.runtimeDone` of each invocation, sends what the function sent,
//! and only then asks for the next event. On SHUTDOWN it sends everything before the deadline.
//!
//! Boot order, for cold start: bind the UDP port, the telemetry listener and the OTLP listeners
//! (gRPC on 127.0.0.1:4317 and HTTP on 127.0.0.1:4318 unless set otherwise: the SDKs' defaults, so
//! a function that swaps ADOT's collector layer for this one changes nothing), register,
//! subscribe, then the first `/next`. No AWS call, no IMDS and no TLS handshake happens on that path: the
//! region and credentials come from Lambda's environment variables, and the SDK client is built
//! once the first event has arrived.

pub mod events;
pub(crate) mod listener;
pub(crate) mod runtime_api;

use super::{client_settings, resolve_credentials, span_route, Core, LambdaEnd, StartError};
use crate::aws::client::Deferred;
use crate::config::{Config, ConfigError, LambdaConfig, LambdaFlush};
use crate::ingest::udp;
use crate::report::logging;
use crate::stats::Stats;
use events::{time_until, NextEvent, PlatformEvent, ShutdownReason};
use runtime_api::{RuntimeApi, Subscription};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

/// What the extension keeps back from SHUTDOWN's deadline, so that it exits before Lambda's
/// SIGKILL rather than at it.
pub(crate) const SHUTDOWN_MARGIN: Duration = Duration::from_millis(150);
/// Used when a SHUTDOWN event has no readable deadline (Lambda gives extensions ~1.7 s).
const SHUTDOWN_FALLBACK: Duration = Duration::from_millis(1500);
/// How far past a background flush's start it may go before giving up (data stays buffered).
const BACKGROUND_FLUSH: Duration = Duration::from_secs(30);
/// `platform.runtimeDone` events remembered for invocations not yet seen (they can overtake).
const EARLY_EVENTS: usize = 16;

/// Why the extension stopped. Each becomes an `Extension.<reason>` error report to Lambda.
#[derive(Debug, thiserror::Error)]
pub enum LambdaError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Udp(#[from] udp::BindError),
    #[error("cannot listen for the Telemetry API on {address}: {source}")]
    Listener { address: String, source: std::io::Error },
    #[error("AWS_REGION is not set (Lambda sets it; set XRAY_DAEMON_REGION to override)")]
    NoRegion,
    #[error("{0}")]
    Client(String),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Api(#[from] runtime_api::ApiError),
}

impl LambdaError {
    /// The `Extension.<reason>` reported to Lambda.
    fn reason(&self) -> &'static str {
        match self {
            LambdaError::Config(_) | LambdaError::NoRegion => "ConfigInvalid",
            LambdaError::Udp(_) | LambdaError::Listener { .. } | LambdaError::Start(_) => "ListenFailed",
            LambdaError::Client(_) => "ClientFailed",
            LambdaError::Api(_) => "RuntimeApiFailed",
        }
    }
}

/// The extension's file name, which Lambda matches against what it launched from
/// `/opt/extensions/`.
pub(crate) fn extension_name() -> String {
    std::env::args_os()
        .next()
        .as_deref()
        .map(std::path::Path::new)
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "xray-daemon".to_owned())
}

/// Runs the extension until SHUTDOWN. `config` may carry the error that loading it raised:
/// that error is reported to Lambda through `/init/error` after registering, since Lambda only
/// accepts error reports from a registered extension.
pub async fn run(config: Result<Config, ConfigError>, runtime_api: &str) -> Result<(), LambdaError> {
    let mut api = RuntimeApi::new(runtime_api);
    let managed = config.as_ref().ok().and_then(|c| c.lambda.as_ref()).is_some_and(|l| l.managed_instances);
    // 1. Listeners first, so nothing the function sends during its init is missed.
    let prepared = config.map_err(LambdaError::from).and_then(prepare);
    // 2. Register. Managed instances never freeze and only allow SHUTDOWN.
    let events: &[&str] = if managed { &["SHUTDOWN"] } else { &["INVOKE", "SHUTDOWN"] };
    let name = extension_name();
    let registration = match api.register(&name, events).await {
        Ok(r) => r,
        Err(e) => {
            // Without an identifier Lambda accepts no error report; exiting is the report.
            error!("Cannot register the Lambda extension {name:?}: {e}");
            return Err(e.into());
        }
    };
    debug!(
        "Registered extension {name} for function {} version {} (account {})",
        registration.function_name,
        registration.function_version,
        registration.account_id.as_deref().unwrap_or("unknown")
    );
    let prepared = match prepared {
        Ok(p) => p,
        Err(e) => return Err(report(&api, true, e).await),
    };
    match start(&api, prepared, managed).await {
        Ok(runner) => runner.run(&api).await,
        Err(e) => Err(report(&api, true, e).await),
    }
}

/// Tells Lambda why the extension exits, then hands the error back for the exit code.
async fn report(api: &RuntimeApi, initialising: bool, e: LambdaError) -> LambdaError {
    match &e {
        LambdaError::Config(problems) => logging::config_error(problems),
        e => error!("{e}"),
    }
    if let Err(report_failed) = api.report_error(initialising, e.reason(), &e.to_string()).await {
        warn!("Could not report the error to Lambda: {report_failed}");
    }
    e
}

/// What is bound and being built before registration.
struct Prepared {
    config: Config,
    lambda: LambdaConfig,
    region: String,
    socket: udp::Bound,
    telemetry: Option<TcpListener>,
    tcp: Option<TcpListener>,
    otlp: Option<TcpListener>,
    grpc: Option<TcpListener>,
}

fn prepare(config: Config) -> Result<Prepared, LambdaError> {
    let lambda = config.lambda.clone().ok_or(LambdaError::Client("not in Lambda mode".into()))?;
    let region =
        config.region.as_ref().map(|(r, _)| r.clone()).filter(|r| !r.is_empty()).ok_or(LambdaError::NoRegion)?;
    info!("Initializing AWS X-Ray daemon {} as a Lambda extension", env!("CARGO_PKG_VERSION"));
    let socket = udp::bind(&config.udp_address, config.receive_buffer)?;
    let telemetry = if lambda.managed_instances {
        None
    } else {
        let address = "0.0.0.0:0";
        Some(listen(address).map_err(|source| LambdaError::Listener { address: address.to_owned(), source })?)
    };
    let tcp = match lambda.proxy {
        false => None,
        true => Some(
            listen(&config.tcp_address)
                .map_err(|source| StartError::Tcp { address: config.tcp_address.clone(), source })?,
        ),
    };
    let otlp = config.otlp_address.as_deref().and_then(|a| listen_or_warn(a, "OTLP/HTTP", "XRAY_DAEMON_OTLP_ADDRESS"));
    let grpc = config.otlp_grpc_address.as_deref();
    let grpc = grpc.and_then(|a| listen_or_warn(a, "OTLP/gRPC", "XRAY_DAEMON_OTLP_GRPC_ADDRESS"));
    Ok(Prepared { config, lambda, region, socket, telemetry, tcp, otlp, grpc })
}

/// An OTLP listener at `address`, or, when it cannot be bound (another extension, ADOT's
/// collector say, holds the port), none and one warning: the extension runs without it rather
/// than fail the function.
fn listen_or_warn(address: &str, what: &str, variable: &str) -> Option<TcpListener> {
    listen(address)
        .map_err(|e| {
            warn!(
                "Cannot listen for {what} on {address} ({e}): running without it. Another extension may hold the \
                 port; {variable} moves it, or turns it off when set empty"
            )
        })
        .ok()
}

/// Binds a TCP listener synchronously (before registering), for the runtime to serve.
fn listen(address: &str) -> std::io::Result<TcpListener> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

/// Subscribes to the Telemetry API and starts the pipeline.
async fn start(api: &RuntimeApi, p: Prepared, managed: bool) -> Result<Runner, LambdaError> {
    let (events_tx, events_rx) = mpsc::channel(listener::QUEUE);
    let Prepared { config, lambda, region, socket, telemetry, tcp, otlp, grpc } = p;
    // The SDK client (credentials chain, TLS roots: PEM-decoding the system's CA bundle is most
    // of a boot's CPU) is built once the first event arrives, so that it does not delay init:
    // on the one-thread runtime, a build queued before the first `/next` would run before that
    // request is written. An upload that comes earlier starts it itself.
    let clients = Arc::new(Deferred::new(client_settings(&config, &region)));
    let spans = span_route(&config, &region, clients.clone())?;
    if config.spool_dir.is_some() {
        warn!("XRAY_DAEMON_SPOOL_DIR is ignored in Lambda: a frozen sandbox has no disk that outlives it");
    }
    let stats = Arc::new(Stats::default());
    let core = Core::start(config, region, clients.clone(), spans, socket.socket, stats, None);
    let mut telemetry_ok = false;
    if let Some(l) = telemetry {
        let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
        tokio::spawn(listener::run(l, events_tx, core.stop_servers.clone()));
        match api.subscribe(port).await {
            Ok(Subscription::Active) => telemetry_ok = true,
            Ok(Subscription::NotSupported(why)) => {
                info!("The Telemetry API is not available ({why}): segments are sent when the next invocation starts and at shutdown")
            }
            Err(e) => {
                warn!("Cannot subscribe to the Telemetry API ({e}): segments are sent when the next invocation starts and at shutdown")
            }
        }
    }
    if let Some(l) = otlp {
        core.serve_otlp(l);
    }
    if let Some(l) = grpc {
        core.serve_grpc(l);
    }
    if let Some(l) = tcp {
        // The proxy signs with the clients' credentials: with it on, init waits for them.
        let signer = clients.get().await.map_err(LambdaError::Client)?.signer.clone();
        core.serve_tcp_port(l, signer.clone())?;
        tokio::spawn(resolve_credentials(signer, core.health.clone()));
    }
    info!(
        "Using buffer memory limit of {} MB ({}); flushing {}",
        core.config.buffer_memory / (1024 * 1024),
        core.config.buffer_memory_source,
        match (managed, lambda.flush) {
            (true, _) => "continuously (Lambda Managed Instances never freeze) and at shutdown",
            (false, LambdaFlush::End) => "when each invocation ends",
            (false, LambdaFlush::NextInvoke) => "when the next invocation starts",
            (false, LambdaFlush::Background) => "in the background after each invocation",
        }
    );
    udp::log_bound(socket.local_addr, socket.receive_buffer, core.config.receive_buffer);
    let flush = if telemetry_ok { lambda.flush } else { LambdaFlush::NextInvoke };
    Ok(Runner {
        clients,
        flush_budget: core.config.shutdown_timeout,
        core,
        flush,
        events: events_rx,
        early: VecDeque::new(),
        background: None,
        invocations: 0,
    })
}

/// The event loop, from the first `/next` to SHUTDOWN.
struct Runner {
    /// Started at the first event.
    clients: Arc<Deferred>,
    core: Core,
    /// The strategy in force: the configured one, or `NextInvoke` without telemetry.
    flush: LambdaFlush,
    events: mpsc::Receiver<PlatformEvent>,
    /// `runtimeDone` request ids that arrived before their INVOKE was handled.
    early: VecDeque<String>,
    /// The upload started after the last invocation in `background` mode.
    background: Option<JoinHandle<()>>,
    /// The longest an end-of-invocation flush may add to an invocation.
    flush_budget: Duration,
    /// INVOKE events so far, for the summary at SHUTDOWN.
    invocations: u64,
}

impl Runner {
    async fn run(mut self, api: &RuntimeApi) -> Result<(), LambdaError> {
        let mut initialising = true;
        loop {
            let event = match api.next().await {
                Ok(event) => event,
                Err(e) => {
                    self.core.stop_servers.cancel();
                    return Err(report(api, initialising, e.into()).await);
                }
            };
            initialising = false;
            self.clients.start();
            match event {
                NextEvent::Invoke { request_id, deadline_ms } => {
                    self.invocations += 1;
                    self.invoke(&request_id, deadline_ms).await
                }
                NextEvent::Shutdown { reason, deadline_ms } => {
                    self.shutdown(reason, deadline_ms).await;
                    return Ok(());
                }
            }
        }
    }

    /// Everything that must happen before the extension asks for the next event.
    async fn invoke(&mut self, request_id: &str, deadline_ms: u64) {
        let deadline = Instant::now() + time_until(deadline_ms);
        let flush_by = deadline.min(Instant::now() + self.flush_budget);
        match self.flush {
            LambdaFlush::NextInvoke => self.flush_now(flush_by).await,
            LambdaFlush::End | LambdaFlush::Background => {
                if !self.runtime_done(request_id, deadline).await {
                    warn!(
                        "No platform.runtimeDone arrived for request {request_id} before its deadline: from now on segments are sent when the next invocation starts and at shutdown"
                    );
                    self.flush = LambdaFlush::NextInvoke;
                    return;
                }
                if self.flush == LambdaFlush::End {
                    self.flush_now(flush_by).await;
                } else {
                    // The previous background upload must finish before a new one starts.
                    if let Some(previous) = self.background.take() {
                        let _ = tokio::time::timeout_at(flush_by, previous).await;
                    }
                    let pipeline = self.core.pipeline.clone();
                    self.background = Some(tokio::spawn(async move {
                        if let Err(e) = pipeline.flush(Instant::now() + BACKGROUND_FLUSH).await {
                            debug!("Background flush: {e}");
                        }
                    }));
                }
            }
        }
    }

    async fn flush_now(&self, by: Instant) {
        let started = Instant::now();
        match self.core.pipeline.flush(by).await {
            Ok(()) => debug!("Flushed in {:.1} ms", started.elapsed().as_secs_f64() * 1000.0),
            Err(e) => warn!("Flush stopped at the invocation's time limit: {e}; they stay buffered for the next flush"),
        }
    }

    /// Waits for `platform.runtimeDone` of `request_id`, until `deadline`.
    async fn runtime_done(&mut self, request_id: &str, deadline: Instant) -> bool {
        if let Some(i) = self.early.iter().position(|id| id == request_id) {
            self.early.remove(i);
            return true;
        }
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(PlatformEvent::RuntimeDone { request_id: id, status })) => {
                    if id == request_id {
                        debug!("Invocation {id} done ({status})");
                        return true;
                    }
                    if self.early.len() == EARLY_EVENTS {
                        self.early.pop_front();
                    }
                    self.early.push_back(id);
                }
                Ok(None) | Err(_) => return false,
            }
        }
    }

    /// Sends everything before SHUTDOWN's deadline (less a margin), then returns to exit 0.
    async fn shutdown(mut self, reason: ShutdownReason, deadline_ms: u64) {
        let left = match time_until(deadline_ms) {
            d if d.is_zero() && deadline_ms == 0 => SHUTDOWN_FALLBACK,
            d => d.saturating_sub(SHUTDOWN_MARGIN),
        };
        debug!("Sending what is buffered within {:.3} seconds, for SHUTDOWN ({reason})", left.as_secs_f64());
        let started = Instant::now();
        if let Some(previous) = self.background.take() {
            let _ = tokio::time::timeout_at(started + left, previous).await;
        }
        let end = LambdaEnd { reason: reason.to_string(), invocations: self.invocations };
        self.core.shutdown(started, left, Some(end)).await;
    }
}
