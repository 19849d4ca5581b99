//! The two ways the daemon runs, and what they share.
//!
//! [`sidecar`] is the long-lived runner for containers, hosts and Kubernetes; [`lambda`] drives
//! the same core from the Lambda lifecycle. Both build the pipeline's settings and the AWS
//! client's from the configuration here, serve the TCP port through [`Core::serve_tcp_port`], and
//! end through [`Core::shutdown`], the one shutdown path.

pub mod lambda;
pub mod sidecar;

use crate::aws::client::{xray_endpoint, ClientSettings, Deferred};
use crate::aws::otlp_traces::OtlpTraces;
use crate::aws::outbound::Outbound;
use crate::aws::signer::Signer;
use crate::backend::Reporter;
use crate::config::{Config, SpanUpload};
use crate::ingest::otlp_grpc::OtlpGrpc;
use crate::ingest::otlp_http::{OtlpHttp, OtlpListener};
use crate::ingest::udp;
use crate::pipeline::flush::RetryPolicy;
use crate::pipeline::spool::{Spool, SpoolSettings};
use crate::pipeline::{Pipeline, Settings, ShutdownReport, SpanRoute};
use crate::proxy::{ProxySettings, TcpService};
use crate::report::health::Health;
use crate::report::telemetry::Telemetry;
use crate::stats::{SpanRejected, SpanSource, Stats};
use crate::translate::{Options, Translator};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Udp(#[from] udp::BindError),
    #[error("listen tcp {address}: {source}")]
    Tcp { address: String, source: std::io::Error },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("invalid X-Ray endpoint: {0}")]
    Endpoint(String),
    #[error(transparent)]
    Region(crate::config::ConfigError),
    #[error("{0}")]
    Aws(String),
    #[error(transparent)]
    Tls(#[from] crate::proxy::TlsError),
    #[error("cannot set up TLS for the OTLP endpoint: {0}")]
    OtlpTls(std::io::Error),
    /// Another daemon holds the spool directory.
    #[error("{0}")]
    Spool(String),
}

/// Opens the disk spool when `XRAY_DAEMON_SPOOL_DIR` is set, with the counters it reports to.
pub(crate) fn open_spool(config: &Config, stats: &Arc<Stats>) -> Result<Option<Spool>, StartError> {
    let Some(dir) = &config.spool_dir else { return Ok(None) };
    let settings = SpoolSettings {
        dir: dir.clone(),
        max_bytes: config.spool_max_bytes,
        interval: config.spool_interval,
        replay_rate: config.spool_replay_rate,
    };
    info!(
        "Using the disk spool at {} (up to {} MB; records that wait over {:.3} seconds are written)",
        dir.display(),
        config.spool_max_bytes / crate::sizing::MB,
        config.spool_interval.as_secs_f64()
    );
    let documents = (config.span_upload == SpanUpload::Segments).then(|| Translator::new(&translate_options(config)));
    Spool::open(settings, stats, documents.as_ref()).map(Some).map_err(|e| StartError::Spool(e.to_string()))
}

/// The AWS clients' settings for `region`.
pub(crate) fn client_settings(config: &Config, region: &str) -> ClientSettings {
    ClientSettings {
        region: region.to_owned(),
        endpoint: xray_endpoint(config, region),
        attempt_timeout: config.upload_timeout,
        connect_timeout: Duration::from_secs(2).min(config.upload_timeout),
        role_arn: config.role_arn.clone(),
        proxy_address: config.proxy_address.clone(),
        no_verify_ssl: config.no_verify_ssl,
    }
}

/// Where spans go: `XRAY_DAEMON_OTLP_ENDPOINT`, else `/v1/traces` at the X-Ray endpoint the
/// uploads use.
pub(crate) fn otlp_endpoint(config: &Config, region: &str) -> String {
    match &config.otlp_endpoint {
        Some(url) => url.clone(),
        None => format!("{}/v1/traces", xray_endpoint(config, region).trim_end_matches('/')),
    }
}

/// How spans become segment documents (`XRAY_DAEMON_INDEXED_ATTRIBUTES`, `…_INDEX_ALL_…`).
fn translate_options(config: &Config) -> Options {
    Options { indexed_attributes: config.indexed_attributes.clone(), index_all_attributes: config.index_all_attributes }
}

/// Where spans go (`XRAY_DAEMON_SPAN_UPLOAD`): converted to segment documents, or to the OTLP
/// endpoint, signing with the credentials of `clients`.
pub(crate) fn span_route(
    config: &Config,
    region: &str,
    clients: Arc<Deferred>,
) -> Result<SpanRoute<OtlpTraces>, StartError> {
    if config.span_upload == SpanUpload::Segments {
        return Ok(SpanRoute::Segments(translate_options(config)));
    }
    let endpoint = otlp_endpoint(config, region);
    let uri: http::Uri = endpoint.parse().map_err(|e| StartError::Endpoint(format!("{endpoint}: {e}")))?;
    Ok(SpanRoute::Otlp(OtlpTraces::new(uri, clients, outbound(config), config.otlp_gzip, config.upload_timeout)))
}

/// How the daemon's own HTTP clients (the proxy's, the spans') reach AWS.
fn outbound(config: &Config) -> Outbound {
    Outbound {
        proxy_address: config.proxy_address.clone(),
        no_verify_ssl: config.no_verify_ssl,
        connect_timeout: Some(Duration::from_secs(2)),
    }
}

/// How the core is sized and paced, from the configuration.
pub(crate) fn pipeline_settings(config: &Config) -> Settings {
    Settings {
        buffer_bytes: usize::try_from(config.buffer_memory).unwrap_or(usize::MAX),
        concurrency: config.concurrency,
        flush_delay: Duration::from_secs(1),
        retry: RetryPolicy::default(),
    }
}

/// How often a telemetry record is cut, as upstream does.
const TELEMETRY_INTERVAL: Duration = Duration::from_secs(60);

/// Marks the daemon ready once credentials resolve; until then `/ready` says why not.
/// Retries every few seconds, since credentials can appear later (a mounted token, a role).
pub(crate) async fn resolve_credentials(signer: Arc<Signer>, health: Arc<Health>) {
    loop {
        match signer.credentials().await {
            Ok(_) => {
                health.set_ready();
                debug!("Credentials resolved; the daemon is ready");
                return;
            }
            Err(e) => {
                health.set_not_ready(e.to_string());
                warn!("{e}");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

/// The running daemon, as both runners hold it.
pub(crate) struct Core {
    pub config: Config,
    pub region: String,
    pub pipeline: Pipeline,
    pub health: Arc<Health>,
    /// Stops the TCP servers.
    pub(crate) stop_servers: CancellationToken,
    /// Stops the telemetry records, and their task.
    telemetry: (CancellationToken, Mutex<Option<JoinHandle<()>>>),
}

impl Core {
    /// Starts the pipeline, sending segments and telemetry records through `clients` and spans
    /// through `spans`, with the UDP reader on `socket` as its source.
    pub(crate) fn start(
        config: Config,
        region: String,
        clients: Arc<Deferred>,
        spans: SpanRoute<OtlpTraces>,
        socket: std::net::UdpSocket,
        stats: Arc<Stats>,
        spool: Option<Spool>,
    ) -> Core {
        let pipeline = Pipeline::start(clients.clone(), spans, pipeline_settings(&config), stats.clone(), spool);
        pipeline.spawn_source(|intake, control| udp::run(socket, intake, control));
        let stop_telemetry = CancellationToken::new();
        let telemetry = config.telemetry.then(|| {
            let reporter = Reporter {
                ec2_instance_id: config.instance_id.clone(),
                hostname: config.hostname.clone(),
                resource_arn: config.resource_arn.clone(),
            };
            let records = Telemetry::new(clients, stats, reporter);
            tokio::spawn(records.run(TELEMETRY_INTERVAL, stop_telemetry.clone()))
        });
        let health = Arc::new(Health::new(pipeline.liveness().clone()));
        Core {
            config,
            region,
            pipeline,
            health,
            stop_servers: CancellationToken::new(),
            telemetry: (stop_telemetry, Mutex::new(telemetry)),
        }
    }

    /// Serves the TCP port (sampling proxy, `/health`, `/ready`, `/metrics`) on `listener`
    /// until shutdown; the proxy signs with `signer`.
    pub(crate) fn serve_tcp_port(&self, listener: TcpListener, signer: Arc<Signer>) -> Result<(), StartError> {
        let config = &self.config;
        let proxy_endpoint = xray_endpoint(config, &self.region);
        let endpoint: http::Uri = proxy_endpoint.parse().map_err(|e| StartError::Endpoint(format!("{e}")))?;
        let settings = ProxySettings {
            endpoint,
            allow_all: config.proxy_allow_all,
            max_body: config.proxy_max_body,
            upstream_timeout: config.proxy_timeout,
            client_timeout: config.proxy_client_timeout,
            max_connections: config.max_connections,
        };
        let outbound = outbound(config);
        let service = TcpService::new(settings, &outbound, signer, &self.pipeline, self.health.clone())?;
        info!("HTTP Proxy server using X-Ray Endpoint : {proxy_endpoint}");
        info!("Starting proxy http server on {}", listener.local_addr().map(|a| a.to_string()).unwrap_or_default());
        if config.proxy_allow_all {
            warn!("XRAY_DAEMON_PROXY_ALLOW_ALL is on: the proxy signs and forwards any path to X-Ray");
        }
        tokio::spawn(crate::serve::run(listener, Arc::new(service), self.stop_servers.clone()));
        Ok(())
    }

    /// Serves OTLP/HTTP `POST /v1/traces` on a listener of its own until shutdown.
    pub(crate) fn serve_otlp(&self, listener: TcpListener) {
        let otlp = OtlpHttp::new(self.pipeline.intake().clone(), self.config.proxy_client_timeout);
        info!("Starting OTLP/HTTP server on {}", listener.local_addr().map(|a| a.to_string()).unwrap_or_default());
        tokio::spawn(crate::serve::run(
            listener,
            Arc::new(OtlpListener { otlp, max_connections: self.config.max_connections }),
            self.stop_servers.clone(),
        ));
    }

    /// Serves OTLP/gRPC `TraceService/Export` on `listener` until shutdown.
    pub(crate) fn serve_grpc(&self, listener: TcpListener) {
        let (timeout, max_connections) = (self.config.proxy_client_timeout, self.config.max_connections);
        let grpc = OtlpGrpc::new(self.pipeline.intake().clone(), timeout, max_connections);
        info!("Starting OTLP/gRPC server on {}", listener.local_addr().map(|a| a.to_string()).unwrap_or_default());
        tokio::spawn(crate::serve::run(listener, Arc::new(grpc), self.stop_servers.clone()));
    }

    /// The one shutdown path: stops the TCP servers, sends everything buffered before
    /// `started + budget`, and writes the last lines of the run: the sidecar's two, or for the
    /// Lambda extension (`lambda`) its one summary line.
    pub(crate) async fn shutdown(
        &self,
        started: Instant,
        budget: Duration,
        lambda: Option<LambdaEnd>,
    ) -> ShutdownReport {
        self.stop_servers.cancel();
        let mut report = self.pipeline.shutdown(started + budget).await;
        // The final telemetry record is cut after the drain, so it counts the last uploads.
        self.telemetry.0.cancel();
        let telemetry = self.telemetry.1.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut task) = telemetry {
            if timeout_at(started + budget, &mut task).await.is_err() {
                task.abort();
            }
        }
        report.took = started.elapsed();
        let stats = self.pipeline.stats();
        let s = stats.snapshot();
        if report.undelivered > 0 || report.undelivered_spans > 0 {
            let spans = match report.undelivered_spans {
                0 => String::new(),
                n => format!(" and {n} spans"),
            };
            error!(
                undelivered = report.undelivered + report.undelivered_spans,
                "Shutdown deadline of {:.3} seconds passed: {} segments{spans} were not delivered",
                budget.as_secs_f64(),
                report.undelivered
            );
        }
        let took = report.took.as_secs_f64();
        let otlp = s.otlp + Stats::read(&stats.otlp_sampled);
        let segments = format!(
            "Segments received: {}, sent: {}, rejected: {}, spilled over: {}, not delivered: {}, OTLP datagrams: {otlp}",
            s.received,
            s.sent,
            s.rejected(),
            s.spillover,
            report.undelivered,
        );
        if report.spooled > 0 {
            info!(
                "Wrote {} segments and spans still buffered to the spool; they are sent at the next start",
                report.spooled
            );
        }
        let spans = &stats.spans;
        let received: u64 = SpanSource::ALL.iter().map(|&s| Stats::read(&stats.spans_received[s as usize])).sum();
        let (spans_sent, spans_dropped) = (Stats::read(&spans.sent), Stats::read(&spans.spillover));
        let at_ingest: u64 = SpanRejected::ALL.iter().map(|&r| Stats::read(&stats.spans_rejected[r as usize])).sum();
        let spans_rejected = Stats::read(&spans.rejected) + at_ingest;
        let spans_line = format!(
            "Spans received: {received}, sent: {spans_sent}, rejected: {spans_rejected}, dropped: {spans_dropped}, \
             not delivered: {}",
            report.undelivered_spans
        );
        let Some(LambdaEnd { reason, invocations }) = lambda else {
            info!(
                duration_s = took,
                segments_sent = s.sent,
                dropped = s.spillover,
                undelivered = report.undelivered,
                "Shutdown finished in {took:.3} seconds. {segments}"
            );
            if received > 0 || report.undelivered_spans > 0 {
                info!(spans_sent, dropped = spans_dropped, undelivered = report.undelivered_spans, "{spans_line}");
            }
            return report;
        };
        let mut spans_line = spans_line;
        spans_line[..1].make_ascii_lowercase();
        info!(
            reason = reason.as_str(),
            invocations,
            duration_s = took,
            segments_sent = s.sent,
            spans_sent,
            rejected = s.rejected() + spans_rejected,
            dropped = s.spillover + spans_dropped,
            undelivered = report.undelivered + report.undelivered_spans,
            "Got SHUTDOWN ({reason}) after {invocations} invocations. Shutdown finished in {took:.3} seconds. \
             {segments}; {spans_line}"
        );
        report
    }
}

/// How a Lambda extension's run ended, for its summary line.
pub(crate) struct LambdaEnd {
    /// SHUTDOWN's reason: `spindown`, `timeout`, `failure`.
    pub(crate) reason: String,
    pub(crate) invocations: u64,
}
