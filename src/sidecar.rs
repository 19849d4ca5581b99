//! The long-lived runner for containers, hosts and Kubernetes: bind, run the pipeline until
//! SIGTERM or SIGINT, then drain within the shutdown deadline. A second signal exits at once.

use crate::aws::{self, ClientSettings};
use crate::batcher::FlushPolicy;
use crate::config::Config;
use crate::ingest;
use crate::pipeline::{Pipeline, Settings};
use crate::stats::Stats;
use crate::telemetry::Reporter;
use crate::uploader::RetryPolicy;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
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
    info!("Using region: {}", config.region);

    let client = aws::xray_client(&ClientSettings {
        region: config.region.clone(),
        endpoint: config.endpoint.clone(),
        attempt_timeout: config.upload_timeout,
        connect_timeout: Duration::from_secs(2).min(config.upload_timeout),
    })
    .await;
    if let Some(endpoint) = &config.endpoint {
        debug!("Using Endpoint: {endpoint}");
    }

    // The sampling proxy arrives with its own issue; until then the TCP address is reserved so
    // deployments that pass -t keep working, and connections are closed at once.
    let tcp = TcpListener::bind(&config.tcp_address)
        .await
        .map_err(|source| StartError::Tcp { address: config.tcp_address.clone(), source })?;
    debug!("Reserved TCP {} (sampling proxy not enabled in this version)", tcp.local_addr().map(|a| a.to_string()).unwrap_or_default());
    tokio::spawn(async move {
        while let Ok((conn, _)) = tcp.accept().await {
            drop(conn);
        }
    });

    let bound = ingest::bind(&config.udp_address, config.receive_buffer)?;
    let local_addr = bound.local_addr;
    let granted = bound.receive_buffer;
    let socket = tokio::net::UdpSocket::from_std(bound.socket)
        .map_err(|source| ingest::BindError::Bind { address: config.udp_address.clone(), source })?;

    let telemetry = config.telemetry.then(|| {
        let reporter = Reporter {
            ec2_instance_id: config.instance_id.clone(),
            hostname: config.hostname.clone(),
            resource_arn: config.resource_arn.clone(),
        };
        (reporter, Duration::from_secs(60))
    });
    let settings = Settings {
        buffer_bytes: usize::try_from(config.buffer_memory).unwrap_or(usize::MAX),
        concurrency: config.concurrency,
        flush: FlushPolicy::default(),
        retry: RetryPolicy::default(),
        telemetry,
    };
    let stats = Arc::new(Stats::default());
    let pipeline = Pipeline::start(socket, client, settings, stats.clone());
    // Reading has started: only now announce the address.
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
    let report = pipeline.shutdown(deadline).await;
    let s = stats.snapshot();
    if report.undelivered > 0 {
        error!(
            "Shutdown deadline of {:.3} seconds passed: {} segments were not delivered",
            config.shutdown_timeout.as_secs_f64(),
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
    Ok(())
}
