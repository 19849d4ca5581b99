//! The accept loop and the HTTP/1 connection handling of every TCP server the daemon runs (the
//! TCP port, Lambda's Telemetry API listener), in one place. A server supplies a [`Handler`];
//! [`run`] accepts until shutdown and serves each connection on its own task.

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Answers the requests of one server.
pub(crate) trait Handler: Send + Sync + 'static {
    type Body: Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static;
    /// The server's name in log lines.
    const NAME: &'static str;

    fn handle(&self, request: Request<Incoming>) -> impl Future<Output = Response<Self::Body>> + Send;

    /// How long a client may take to send a request head; `None`: no limit.
    fn header_timeout(&self) -> Option<Duration> {
        None
    }
}

/// Accepts connections on `listener` until `shutdown`; each is served on its own task. After an
/// accept error (out of file descriptors and the like) it waits a little rather than spin.
pub(crate) async fn run<H: Handler>(listener: TcpListener, handler: Arc<H>, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, handler.clone()));
            }
            Err(e) => {
                warn!("{} failed to accept a connection: {e}", H::NAME);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection<H: Handler>(stream: TcpStream, handler: Arc<H>) {
    let timeout = handler.header_timeout();
    let service = hyper::service::service_fn(move |request| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler.handle(request).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    if let Some(timeout) = timeout {
        builder.timer(TokioTimer::new()).header_read_timeout(timeout);
    }
    if let Err(e) = builder.serve_connection(TokioIo::new(stream), service).await {
        debug!("{} connection closed: {e}", H::NAME);
    }
}
