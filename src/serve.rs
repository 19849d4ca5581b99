//! The accept loop and the connection handling of every TCP server the daemon runs (the TCP
//! port, the OTLP/HTTP and OTLP/gRPC listeners, Lambda's Telemetry API listener), in one place. A
//! server supplies a [`Handler`] and the HTTP it speaks ([`Protocol`]: HTTP/1.1, or HTTP/2 with
//! prior knowledge for gRPC); [`run`] accepts until shutdown and serves each connection on its
//! own task.
//!
//! Slow or abusive clients (slowloris: a byte of the request head a second, on hundreds of
//! connections; idle connections; many streams) must not take the port from the health checks,
//! nor memory without bound:
//! - a request head, and the wait for the next one on a kept-alive connection, have a deadline
//!   ([`Handler::header_timeout`], hyper's header read timeout); bodies have theirs in the
//!   handlers. An HTTP/2 connection with no request open for that long (one that never sent its
//!   preface, too) is closed, with a GOAWAY;
//! - an HTTP/2 connection takes at most [`MAX_STREAMS`] requests at once, request heads of at
//!   most [`MAX_HEADER_LIST`] bytes, and [`MAX_PENDING_RESETS`] streams reset before they were
//!   served (the "rapid reset" attack) before it is closed; hyper and its `h2` enforce them;
//! - at most [`Handler::max_connections`] connections are open at once. At the limit a new
//!   connection is still taken: the oldest connection that is waiting for a request (idle or
//!   trickling a head) is closed to make room, so that a health check always gets in. When every
//!   open connection is in a handler, the one whose oldest request has been there longest is
//!   closed instead if that is over [`STUCK`] (a body trickling in a byte a second; a proxied
//!   call takes milliseconds). Only when every one is busy and none for that long is the new
//!   one closed at once. Both are counted ([`Handler::limited`]) and logged, rate-limited. An
//!   HTTP/2 connection is closed with a GOAWAY and [`GRACE`] to finish.

use crate::stats::log_limit::{suppressed_note, RateLimitedWarn};
pub(crate) use crate::stats::Limited;
use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
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

/// Requests one HTTP/2 connection may have open at once; the client queues the others. An OTLP
/// exporter sends one export at a time, or a few.
pub(crate) const MAX_STREAMS: u32 = 32;
/// The largest request head an HTTP/2 client may send, in bytes (HPACK-decoded): gRPC's are a
/// few hundred.
pub(crate) const MAX_HEADER_LIST: u32 = 16 * 1024;
/// Streams an HTTP/2 client may reset before the server has served them, before the connection
/// is closed (`h2`'s own default, stated here).
pub(crate) const MAX_PENDING_RESETS: usize = 20;
/// How long an HTTP/2 connection has to finish its open requests once it is told to close.
pub(crate) const GRACE: Duration = Duration::from_secs(1);

/// The HTTP a server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http1,
    /// HTTP/2 cleartext with prior knowledge (no upgrade, no TLS), as gRPC clients speak it.
    Http2,
}

/// Answers the requests of one server.
pub(crate) trait Handler: Send + Sync + 'static {
    type Body: Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static;
    /// The server's name in log lines.
    const NAME: &'static str;
    /// The HTTP it speaks.
    const PROTOCOL: Protocol = Protocol::Http1;

    fn handle(&self, request: Request<Incoming>) -> impl Future<Output = Response<Self::Body>> + Send;

    /// How long a client may take to send a request head, or to start the next one on a
    /// kept-alive connection (over HTTP/2: how long a connection may go without a request open);
    /// `None`: no limit.
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
    activity: Mutex<Activity>,
    close: CancellationToken,
}

/// The requests a connection has in a handler, and since when it has had none.
struct Activity {
    /// Request number to the moment it entered the handler; the first is the oldest.
    requests: BTreeMap<u64, Instant>,
    next: u64,
    idle_since: Instant,
}

impl Open {
    fn new() -> Arc<Open> {
        let activity = Activity { requests: BTreeMap::new(), next: 0, idle_since: Instant::now() };
        Arc::new(Open { activity: Mutex::new(activity), close: CancellationToken::new() })
    }

    fn activity(&self) -> std::sync::MutexGuard<'_, Activity> {
        self.activity.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// In a handler since this moment (its oldest request): a request is being read or answered.
    fn busy_since(&self) -> Option<Instant> {
        self.activity().requests.first_key_value().map(|(_, &at)| at)
    }

    /// When the connection will have been idle (no request in a handler) for `timeout`; `None`
    /// while a request is in a handler.
    fn idle_until(&self, timeout: Duration) -> Option<Instant> {
        let activity = self.activity();
        activity.requests.is_empty().then(|| activity.idle_since + timeout)
    }

    /// Marks a request in a handler until the guard is dropped (the request answered, or
    /// abandoned).
    fn request(self: &Arc<Open>) -> InHandler {
        let mut activity = self.activity();
        activity.next += 1;
        let id = activity.next;
        activity.requests.insert(id, Instant::now());
        InHandler { open: self.clone(), id }
    }
}

/// A request in a handler (see [`Open::request`]).
struct InHandler {
    open: Arc<Open>,
    id: u64,
}

impl Drop for InHandler {
    fn drop(&mut self) {
        let mut activity = self.open.activity();
        activity.requests.remove(&self.id);
        if activity.requests.is_empty() {
            activity.idle_since = Instant::now();
        }
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
        let conn = Open::new();
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
            let _in_handler = state.request();
            Ok::<_, Infallible>(handler.handle(request).await)
        }
    });
    let io = TokioIo::new(stream);
    if H::PROTOCOL == Protocol::Http2 {
        return http2::<H, _>(io, service, timeout, conn).await;
    }
    let mut builder = hyper::server::conn::http1::Builder::new();
    if let Some(timeout) = timeout {
        builder.timer(TokioTimer::new()).header_read_timeout(timeout);
    }
    let serving = builder.serve_connection(io, service);
    tokio::select! {
        served = serving => if let Err(e) = served {
            debug!("{} connection closed: {e}", H::NAME);
        },
        _ = conn.close.cancelled() => debug!("{} connection closed to make room for a new one", H::NAME),
    }
}

/// Serves one HTTP/2 connection with the limits above. It is closed with a GOAWAY when it has
/// had no request in a handler for `idle` (or never sent a request), or to make room at the
/// connection limit; [`GRACE`] later it is dropped, whatever it is doing.
async fn http2<H, S>(io: TokioIo<TcpStream>, service: S, idle: Option<Duration>, conn: &Arc<Open>)
where
    H: Handler,
    S: hyper::service::HttpService<Incoming, ResBody = H::Body> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS);
    let serving = builder.serve_connection(io, service);
    tokio::pin!(serving);
    // How often a busy connection is looked at again, to see whether it has gone idle.
    let every = idle.unwrap_or(Duration::from_secs(3600));
    let mut closing: Option<tokio::time::Instant> = None;
    loop {
        let now = Instant::now();
        let idle_at = idle.and_then(|idle| conn.idle_until(idle));
        let wake = tokio::time::Instant::from_std(idle_at.unwrap_or(now + every).max(now));
        tokio::select! {
            served = serving.as_mut() => {
                if let Err(e) = served {
                    debug!("{} connection closed: {e}", H::NAME);
                }
                return;
            }
            _ = conn.close.cancelled(), if closing.is_none() => {
                debug!("{} connection closed to make room for a new one", H::NAME);
                serving.as_mut().graceful_shutdown();
                closing = Some(tokio::time::Instant::now() + GRACE);
            }
            _ = tokio::time::sleep_until(wake), if closing.is_none() => {
                // Asked again: requests may have come and gone since `idle_at` was worked out.
                if idle.and_then(|idle| conn.idle_until(idle)).is_some_and(|at| at <= Instant::now()) {
                    debug!("{} connection closed: no request for {:?}", H::NAME, idle.unwrap_or_default());
                    serving.as_mut().graceful_shutdown();
                    closing = Some(tokio::time::Instant::now() + GRACE);
                }
            }
            _ = tokio::time::sleep_until(closing.unwrap_or_else(tokio::time::Instant::now)), if closing.is_some() => {
                debug!("{} connection dropped: it did not close within {GRACE:?}", H::NAME);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Puts a request of `conn` in a handler since `at`.
    fn busy_since(conn: &Arc<Open>, at: Instant) -> InHandler {
        let guard = conn.request();
        *conn.activity().requests.get_mut(&guard.id).unwrap() = at;
        guard
    }

    #[test]
    fn at_the_limit_the_oldest_idle_connection_makes_room() {
        let c = Connections::default();
        let (a, first, _) = c.admit(2).unwrap();
        let (_, second, _) = c.admit(2).unwrap();
        let _busy = first.request();
        // The oldest is busy: the next oldest, idle, is closed.
        let (_, third, shed) = c.admit(2).unwrap();
        assert_eq!(shed, Some(Limited::Shed));
        assert!(second.close.is_cancelled() && !first.close.is_cancelled());
        let _busy_too = third.request();
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
        let _stuck = busy_since(&first, Instant::now() - STUCK - Duration::from_millis(10));
        let _busy = second.request();
        let (_, _, shed) = c.admit(2).unwrap();
        assert_eq!(shed, Some(Limited::Shed));
        assert!(first.close.is_cancelled() && !second.close.is_cancelled());
    }

    /// HTTP/2: a connection is busy while any of its requests is in a handler, and counts as busy
    /// since its oldest one; it is idle, for the idle timeout, from when its last one ended.
    #[test]
    fn a_connection_with_several_requests_is_busy_since_its_oldest() {
        let conn = Open::new();
        let minute = Duration::from_secs(60);
        assert!(conn.busy_since().is_none() && conn.idle_until(minute).is_some());
        let long_ago = Instant::now() - Duration::from_secs(5);
        let old = busy_since(&conn, long_ago);
        let new = conn.request();
        assert_eq!(conn.busy_since(), Some(long_ago));
        assert_eq!(conn.idle_until(minute), None);
        drop(old);
        assert!(conn.busy_since().unwrap() > long_ago, "the newer request is the oldest now");
        let before = Instant::now();
        drop(new);
        assert_eq!(conn.busy_since(), None);
        assert!(conn.idle_until(minute).unwrap() >= before + minute, "idle from the end of the last request");
    }
}
