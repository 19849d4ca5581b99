//! The long-lived runner for containers, hosts and Kubernetes: bind, run the pipeline until
//! SIGTERM or SIGINT, then drain within the shutdown deadline. A second signal exits at once.

use crate::aws::{self, ClientSettings, Signer};
use crate::batcher::FlushPolicy;
use crate::code_pages;
use crate::config::Config;
use crate::health::Health;
use crate::ingest;
use crate::proxy::{self, ProxySettings, TcpService};
use crate::outbound::Outbound;
use crate::region;
use crate::pipeline::{Pipeline, Settings, ShutdownReport};
use crate::stats::Stats;
use crate::telemetry::Reporter;
use crate::uploader::RetryPolicy;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Udp(#[from] ingest::BindError),
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
    Tls(#[from] proxy::TlsError),
}

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

/// The AWS clients' settings for `region`.
pub(crate) fn client_settings(config: &Config, region: &str) -> ClientSettings {
    ClientSettings {
        region: region.to_owned(),
        endpoint: config.endpoint.clone(),
        attempt_timeout: config.upload_timeout,
        connect_timeout: Duration::from_secs(2).min(config.upload_timeout),
        role_arn: config.role_arn.clone(),
        proxy_address: config.proxy_address.clone(),
        no_verify_ssl: config.no_verify_ssl,
    }
}

/// How the core is sized and paced, from the configuration.
pub(crate) fn pipeline_settings(config: &Config) -> Settings {
    let telemetry = config.telemetry.then(|| {
        let reporter = Reporter {
            ec2_instance_id: config.instance_id.clone(),
            hostname: config.hostname.clone(),
            resource_arn: config.resource_arn.clone(),
        };
        (reporter, Duration::from_secs(60))
    });
    Settings {
        buffer_bytes: usize::try_from(config.buffer_memory).unwrap_or(usize::MAX),
        concurrency: config.concurrency,
        flush: FlushPolicy::default(),
        retry: RetryPolicy::default(),
        telemetry,
    }
}

/// Serves the TCP port (sampling proxy, `/health`, `/ready`, `/metrics`) on `listener` until
/// `stop`.
pub(crate) fn spawn_proxy(
    listener: TcpListener,
    config: &Config,
    region: &str,
    signer: Arc<Signer>,
    pipeline: &Pipeline,
    health: Arc<Health>,
    stop: CancellationToken,
) -> Result<(), StartError> {
    let proxy_endpoint = config.xray_endpoint(region);
    let endpoint: http::Uri = proxy_endpoint.parse().map_err(|e| StartError::Endpoint(format!("{e}")))?;
    let settings = ProxySettings {
        endpoint,
        allow_all: config.proxy_allow_all,
        max_body: config.proxy_max_body,
        upstream_timeout: config.proxy_timeout,
        client_timeout: config.proxy_client_timeout,
    };
    let outbound = Outbound {
        proxy_address: config.proxy_address.clone(),
        no_verify_ssl: config.no_verify_ssl,
        connect_timeout: Some(Duration::from_secs(2)),
    };
    let service = TcpService::new(settings, &outbound, signer, pipeline.stats.clone(), pipeline.buffer.clone(), health)?;
    info!("HTTP Proxy server using X-Ray Endpoint : {proxy_endpoint}");
    info!("Starting proxy http server on {}", listener.local_addr().map(|a| a.to_string()).unwrap_or_default());
    if config.proxy_allow_all {
        warn!("XRAY_DAEMON_PROXY_ALLOW_ALL is on: the proxy signs and forwards any path to X-Ray");
    }
    tokio::spawn(proxy::run(listener, Arc::new(service), stop));
    Ok(())
}

/// The last lines of every run: what could not be sent, and the counters.
pub(crate) fn log_shutdown(report: &ShutdownReport, stats: &Stats, budget: Duration) {
    let s = stats.snapshot();
    if report.undelivered > 0 {
        error!(
            "Shutdown deadline of {:.3} seconds passed: {} segments were not delivered",
            budget.as_secs_f64(),
            report.undelivered
        );
    }
    info!(
        "Shutdown finished in {:.3} seconds. Segments received: {}, sent: {}, rejected: {}, spilled over: {}, not delivered: {}, OTLP datagrams: {}",
        report.took.as_secs_f64(),
        s.received,
        s.sent,
        s.rejected(),
        s.spillover,
        report.undelivered,
        s.otlp
    );
}

/// Runs until a shutdown signal and a drained pipeline. Returns the exit code.
pub async fn run(config: Config) -> Result<(), StartError> {
    // Signal handlers first: from the moment the daemon says it listens, SIGTERM drains.
    let mut sigterm = signal(SignalKind::terminate()).map_err(StartError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(StartError::Signals)?;

    info!("Initializing AWS X-Ray daemon {}", env!("CARGO_PKG_VERSION"));
    info!(
        "Using buffer memory limit of {} MB ({})",
        config.buffer_memory / (1024 * 1024),
        config.buffer_memory_source
    );
    if let Some(path) = &config.config_file {
        info!("Using config file: {}", path.display());
    }
    let (region, _) = region::resolve(&config).await.map_err(StartError::Region)?;
    info!("Using region: {region}");
    if let Some(role) = &config.role_arn {
        info!("Assuming role {role} (session name xray-daemon)");
    }
    if let Some(proxy) = &config.proxy_address {
        info!("Using proxy address: {proxy}");
    }
    if config.no_verify_ssl {
        warn!("NoVerifySSL is on: TLS certificates of X-Ray, STS and the proxy's upstream are not verified");
    }

    let aws = aws::load(&client_settings(&config, &region)).await.map_err(StartError::Aws)?;
    if let Some(endpoint) = &config.endpoint {
        debug!("Using Endpoint: {endpoint}");
    }
    // Bound before the UDP port so that a busy TCP address is reported before anything runs.
    let tcp = match TcpListener::bind(&config.tcp_address).await {
        Ok(l) => Some(l),
        Err(e) => {
            // As upstream: the daemon keeps running UDP-only.
            error!("proxy http server failed to listen: listen tcp {}: {e}", config.tcp_address);
            None
        }
    };
    let bound = ingest::bind(&config.udp_address, config.receive_buffer)?;
    let local_addr = bound.local_addr;
    let granted = bound.receive_buffer;
    let socket = bound.socket;

    let settings = pipeline_settings(&config);
    let stats = Arc::new(Stats::default());
    let signer = aws.signer;
    let pipeline = Pipeline::start(socket, aws.client, settings, stats.clone());

    let health = Arc::new(Health::new(pipeline.liveness.clone()));
    let stop_proxy = CancellationToken::new();
    if let Some(listener) = tcp {
        spawn_proxy(listener, &config, &region, signer.clone(), &pipeline, health.clone(), stop_proxy.clone())?;
    }
    tokio::spawn(async move {
        resolve_credentials(signer, health).await;
        // Start-up is over: only the code that runs from now on needs to stay mapped.
        let released = code_pages::unmap_startup_code();
        debug!("Unmapped {} KiB of start-up code", released / 1024);
    });
    // Everything runs: the UDP address is announced last, as the sign the daemon is up.
    ingest::log_bound(local_addr, granted, config.receive_buffer);

    let name = tokio::select! {
        _ = sigterm.recv() => "terminated",
        _ = sigint.recv() => "interrupt",
    };
    info!("Got shutdown signal: {name}");
    tokio::spawn(async move {
        tokio::select! {
            _ = sigterm.recv() => {},
            _ = sigint.recv() => {},
        }
        warn!("Got a second shutdown signal: exiting now without waiting for uploads");
        std::process::exit(1);
    });

    let deadline = tokio::time::Instant::now() + config.shutdown_timeout;
    stop_proxy.cancel();
    let report = pipeline.shutdown(deadline).await;
    log_shutdown(&report, &stats, config.shutdown_timeout);
    Ok(())
}
