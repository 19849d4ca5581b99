//! The long-lived runner for containers, hosts and Kubernetes: bind, run the pipeline until
//! SIGTERM or SIGINT, then drain within the shutdown deadline. A second signal exits at once.

use super::{client_settings, open_spool, resolve_credentials, span_route, Core, StartError};
use crate::aws::client::Deferred;
use crate::aws::region;
use crate::config::Config;
use crate::ingest::udp;
use crate::pipeline::SpanRoute;
use crate::stats::Stats;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{debug, error, info, warn};

/// Runs until a shutdown signal and a drained pipeline. Returns the exit code.
pub async fn run(config: Config) -> Result<(), StartError> {
    // Signal handlers first: from the moment the daemon says it listens, SIGTERM drains.
    let mut sigterm = signal(SignalKind::terminate()).map_err(StartError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(StartError::Signals)?;

    info!("Initializing AWS X-Ray daemon {}", env!("CARGO_PKG_VERSION"));
    info!("Using buffer memory limit of {} MB ({})", config.buffer_memory / (1024 * 1024), config.buffer_memory_source);
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

    let clients = Arc::new(Deferred::new(client_settings(&config, &region)));
    let signer = clients.get().await.map_err(StartError::Aws)?.signer.clone();
    let spans = span_route(&config, &region, clients.clone())?;
    if let SpanRoute::Otlp(sink) = &spans {
        sink.client().await.map_err(StartError::OtlpTls)?;
    }
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
    let otlp = bind_optional(config.otlp_address.as_deref()).await?;
    let grpc = bind_optional(config.otlp_grpc_address.as_deref()).await?;
    let bound = udp::bind(&config.udp_address, config.receive_buffer)?;
    let local_addr = bound.local_addr;
    let granted = bound.receive_buffer;
    let socket = bound.socket;

    let stats = Arc::new(Stats::default());
    let spool = open_spool(&config, &stats)?;
    let core = Core::start(config, region, clients, spans, socket, stats, spool);
    if let Some(listener) = tcp {
        core.serve_tcp_port(listener, signer.clone())?;
    }
    if let Some(listener) = otlp {
        core.serve_otlp(listener);
    }
    if let Some(listener) = grpc {
        core.serve_grpc(listener);
    }
    tokio::spawn(resolve_credentials(signer, core.health.clone()));
    // Everything runs: the UDP address is announced last, as the sign the daemon is up.
    udp::log_bound(local_addr, granted, core.config.receive_buffer);

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

    core.shutdown(tokio::time::Instant::now(), core.config.shutdown_timeout, None).await;
    Ok(())
}

/// A listener at `address`, when one is set; the daemon does not start without it.
async fn bind_optional(address: Option<&str>) -> Result<Option<TcpListener>, StartError> {
    let Some(address) = address else { return Ok(None) };
    let listener = TcpListener::bind(address).await;
    listener.map(Some).map_err(|source| StartError::Tcp { address: address.to_owned(), source })
}
