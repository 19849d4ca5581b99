//! The accept loop and the HTTP/1 connection handling of every TCP server the daemon runs (the
//! TCP port, the OTLP listener, Lambda's Telemetry API listener), in one place. A server supplies
//! a [`Handler`]; [`run`] accepts until shutdown and serves each connection on its own task.
//!
//! Slow clients (slowloris: a byte of the request head a second, on hundreds of connections)
//! must not take the port from the health checks, nor memory without bound:
//! - a request head, and the wait for the next one on a kept-alive connection, have a deadline
//!   ([`Handler::header_timeout`], hyper's header read timeout); bodies have theirs in the
//!   handlers;
//! - at most [`Handler::max_connections`] connections are open at once. At the limit a new
//!   connection is still taken: the oldest connection that is waiting for a request head (idle
//!   or trickling) is closed to make room, so that a health check always gets in. When every open
//!   connection is in a handler, the one that has been there longest is closed instead if that is
//!   over [`STUCK`] (a body trickling in a byte a second; a proxied call takes milliseconds). Only
//!   when every one is busy and none for that long is the new one closed at once. Both are
//!   counted ([`Handler::limited`]) and logged, rate-limited.

use crate::stats::log_limit::{suppressed_note, RateLimitedWarn};
pub(crate) use crate::stats::Limited;
use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Connections open at once when a handler does not say (`XRAY_DAEMON_MAX_CONNECTIONS`'s default).
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// Answers the requests of one server.
pub(crate) trait Handler: Send + Sync + 'static {
    type Body: Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static;
    /// The server's name in log lines.
    const NAME: &'static str;

    fn handle(&self, request: Request<Incoming>) -> impl Future<Output = Response<Self::Body>> + Send;

    /// How long a client may take to send a request head, or to start the next one on a
    /// kept-alive connection; `None`: no limit.
    fn header_timeout(&self) -> Option<Duration> {
        None
    }

    /// How many connections may be open at once.
    fn max_connections(&self) -> usize {
        DEFAULT_MAX_CONNECTIONS
    }

    /// Called each time the connection limit closed a connection, for the counters.
    fn limited(&self, _what: Limited) {}
}

/// A connection in a handler for longer than this may be closed to make room at the limit.
pub(crate) const STUCK: Duration = Duration::from_secs(1);

/// One open connection, as the limit sees it.
struct Open {
    /// In a handler since this moment: a request is being read or answered.
    busy: Mutex<Option<Instant>>,
    close: CancellationToken,
}

impl Open {
    fn busy_since(&self) -> Option<Instant> {
        *self.busy.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_busy(&self, busy: bool) {
        *self.busy.lock().unwrap_or_else(|e| e.into_inner()) = busy.then(Instant::now);
    }
}

/// The open connections, oldest first (ids only grow).
#[derive(Default)]
struct Connections {
    open: Mutex<(u64, BTreeMap<u64, Arc<Open>>)>,
}

impl Connections {
    /// Registers a new connection, making room at `max` by closing the oldest one that is not
    /// busy, else the one busy longest if that is over [`STUCK`]; `Err` when none can go.
    fn admit(&self, max: usize) -> Result<(u64, Arc<Open>, Option<Limited>), Limited> {
        let mut guard = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let (next, open) = &mut *guard;
        let mut shed = None;
        if open.len() >= max {
            let oldest_idle = open.iter().find(|(_, c)| c.busy_since().is_none()).map(|(&id, _)| id);
            let stuck = || {
                let busy = open.iter().filter_map(|(&id, c)| c.busy_since().map(|t| (t, id)));
                busy.min().filter(|(t, _)| t.elapsed() >= STUCK).map(|(_, id)| id)
            };
            match oldest_idle.or_else(stuck).and_then(|id| open.remove(&id)) {
                Some(conn) => {
                    conn.close.cancel();
                    shed = Some(Limited::Shed);
                }
                None => return Err(Limited::Refused),
            }
        }
        *next += 1;
        let conn = Arc::new(Open { busy: Mutex::new(None), close: CancellationToken::new() });
        open.insert(*next, conn.clone());
        Ok((*next, conn, shed))
    }

    fn remove(&self, id: u64) {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).1.remove(&id);
    }
}

/// Accepts connections on `listener` until `shutdown`; each is served on its own task. After an
/// accept error (out of file descriptors and the like) it waits a little rather than spin.
pub(crate) async fn run<H: Handler>(listener: TcpListener, handler: Arc<H>, shutdown: CancellationToken) {
    let connections = Arc::new(Connections::default());
    let limit_warn = RateLimitedWarn::new(10);
    let max = handler.max_connections().max(1);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let limited = match connections.admit(max) {
                    Ok((id, conn, shed)) => {
                        let (connections, handler) = (connections.clone(), handler.clone());
                        tokio::spawn(async move {
                            connection(stream, handler, &conn).await;
                            connections.remove(id);
                        });
                        shed
                    }
                    Err(refused) => Some(refused),
                };
                if let Some(what) = limited {
                    handler.limited(what);
                    if let Some(suppressed) = limit_warn.check() {
                        let done = match what {
                            Limited::Shed => "closed the oldest one waiting for a request, or stuck in one",
                            Limited::Refused => "every one is busy, so a new one was closed",
                        };
                        warn!(
                            "{} has {max} connections open, its limit: {done}{}",
                            H::NAME,
                            suppressed_note(suppressed)
                        );
                    }
                }
            }
            Err(e) => {
                warn!("{} failed to accept a connection: {e}", H::NAME);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection<H: Handler>(stream: TcpStream, handler: Arc<H>, conn: &Arc<Open>) {
    let timeout = handler.header_timeout();
    let state = conn.clone();
    let service = hyper::service::service_fn(move |request| {
        let (handler, state) = (handler.clone(), state.clone());
        async move {
            state.set_busy(true);
            let response = handler.handle(request).await;
            state.set_busy(false);
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    if let Some(timeout) = timeout {
        builder.timer(TokioTimer::new()).header_read_timeout(timeout);
    }
    let serving = builder.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        served = serving => if let Err(e) = served {
            debug!("{} connection closed: {e}", H::NAME);
        },
        _ = conn.close.cancelled() => debug!("{} connection closed to make room for a new one", H::NAME),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_limit_the_oldest_idle_connection_makes_room() {
        let c = Connections::default();
        let (a, first, _) = c.admit(2).unwrap();
        let (_, second, _) = c.admit(2).unwrap();
        first.set_busy(true);
        // The oldest is busy: the next oldest, idle, is closed.
        let (_, third, shed) = c.admit(2).unwrap();
        assert_eq!(shed, Some(Limited::Shed));
        assert!(second.close.is_cancelled() && !first.close.is_cancelled());
        third.set_busy(true);
        // Every one busy, none for long: the new one is refused, nothing is closed.
        assert_eq!(c.admit(2).err(), Some(Limited::Refused));
        assert!(!first.close.is_cancelled() && !third.close.is_cancelled());
        // A connection that ends frees its place.
        c.remove(a);
        assert_eq!(c.admit(2).unwrap().2, None);
    }

    #[test]
    fn at_the_limit_a_connection_stuck_in_a_handler_makes_room() {
        let c = Connections::default();
        let (_, first, _) = c.admit(2).unwrap();
        let (_, second, _) = c.admit(2).unwrap();
        // Both in a handler: the first for longer than STUCK (a body trickling in), the second just now.
        *first.busy.lock().unwrap() = Some(Instant::now() - STUCK - Duration::from_millis(10));
        second.set_busy(true);
        let (_, _, shed) = c.admit(2).unwrap();
        assert_eq!(shed, Some(Limited::Shed));
        assert!(first.close.is_cancelled() && !second.close.is_cancelled());
    }
}
