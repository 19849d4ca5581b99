//! An in-process fake of the AWS X-Ray API for the integration tests.
//!
//! * Listens on `127.0.0.1:0` only, HTTP/1.1 (hyper 1), REST-JSON like the real service:
//!   `POST /TraceSegments`, `/TelemetryRecords`, `/GetSamplingRules`, `/SamplingTargets`;
//!   anything else is a 404 `UnknownOperationException`.
//! * Verifies SigV4 itself (hmac + sha2, see [`sigv4`]), independently of the `aws-sigv4`
//!   crate the daemon signs with. A failed check is a 403 `InvalidSignatureException`.
//! * Scripted [`Fault`]s per operation: a FIFO queue consumed one per request, plus a sticky
//!   mode. Order of checks for every request: route (404) → signature (403) → body
//!   validation (400) → fault → normal answer. Requests rejected by the first three steps do
//!   not consume a queued fault.
//! * Everything is recorded and typed: [`RecordedRequest`]s, accepted documents (exact
//!   strings), telemetry bodies, counters, and async waiters.
//!
//! `stop()` closes the listener (later connects get "connection refused") and drops every
//! open connection; `restart()` binds the same port again (`SO_REUSEADDR`).
//!
//! This file is over 500 lines: it is one fake service (routes, scripted faults, body checks,
//! recording and waiters) that the tests read as a whole; its SigV4 verifier is [`sigv4`].
#![allow(dead_code)]

use std::collections::HashMap;
use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{oneshot, Notify};
use tokio::task::{JoinHandle, JoinSet};

/// How long a [`Fault::Hang`] holds a connection before closing it without an answer.
pub const HANG_MAX: Duration = Duration::from_secs(60);
/// `FixedRate` of the canned Default sampling rule and targets.
pub const SAMPLING_FIXED_RATE: f64 = 1.0;
/// Default tolerated difference between `X-Amz-Date` and the fake's clock (as X-Ray: 5 min).
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// A credential set the fake accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
}

impl Credentials {
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Credentials { access_key: access_key.into(), secret_key: secret_key.into(), session_token: None }
    }

    pub fn with_session_token(mut self, token: impl Into<String>) -> Self {
        self.session_token = Some(token.into());
        self
    }
}

/// The X-Ray operations the fake implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    PutTraceSegments,
    PutTelemetryRecords,
    GetSamplingRules,
    GetSamplingTargets,
}

impl Op {
    pub fn path(self) -> &'static str {
        match self {
            Op::PutTraceSegments => "/TraceSegments",
            Op::PutTelemetryRecords => "/TelemetryRecords",
            Op::GetSamplingRules => "/GetSamplingRules",
            Op::GetSamplingTargets => "/SamplingTargets",
        }
    }

    pub fn from_path(path: &str) -> Option<Op> {
        [Op::PutTraceSegments, Op::PutTelemetryRecords, Op::GetSamplingRules, Op::GetSamplingTargets]
            .into_iter()
            .find(|op| op.path() == path)
    }
}

/// A scripted misbehaviour. Queue with [`FakeXray::push_fault`] (one per request) or make
/// sticky with [`FakeXray::set_mode`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer `status` with `{"__type":T,"message":"injected"}` and `x-amzn-ErrorType: T`.
    Status(u16, &'static str),
    /// 429 `ThrottlingException` / `Rate exceeded`.
    Throttle,
    /// Wait, then answer normally. The documents are accepted after the delay even if the
    /// client gave up meanwhile (the server did process them); not if the fake was stopped.
    Delay(Duration),
    /// Never answer: hold the connection for [`HANG_MAX`] (or until `stop()`), then close it.
    /// Nothing is accepted.
    Hang,
    /// Accept, but report the first `count` documents as unprocessed with `code`.
    Unprocessed { count: usize, code: &'static str },
    /// Accept, but report the documents whose `"id"` is in `ids` as unprocessed with `code`.
    UnprocessedIds { ids: Vec<String>, code: &'static str },
    /// Close the connection without any answer (the client sees an incomplete message).
    Disconnect,
}

/// One request as received, with the fake's verdict.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// URI path, as received (still percent-encoded).
    pub path: String,
    pub query: Option<String>,
    /// Lower-case names, values in arrival order (lossy UTF-8).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub signature: Result<(), String>,
    /// HTTP status answered; 0 while pending, or if none was sent (Hang, Disconnect, stop).
    pub status: u16,
    /// The fault applied to this request, if any.
    pub fault: Option<Fault>,
    pub at: Instant,
}

impl RecordedRequest {
    /// First value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    pub fn op(&self) -> Option<Op> {
        Op::from_path(&self.path)
    }

    /// `TraceSegmentDocuments` of a PutTraceSegments body (whatever the outcome).
    pub fn documents(&self) -> Option<Vec<String>> {
        parse_documents(&self.body).ok()
    }
}

#[derive(Default)]
struct State {
    creds: Vec<Credentials>,
    max_clock_skew: Option<Duration>,
    faults: HashMap<Op, VecDeque<Fault>>,
    modes: HashMap<Op, Fault>,
    requests: Vec<RecordedRequest>,
    accepted: Vec<String>,
    put_calls: usize,
    telemetry: Vec<Value>,
    invalid_requests: usize,
}

struct Shared {
    state: Mutex<State>,
    changed: Notify,
    request_ids: AtomicU64,
    /// Seconds the fake's clock is ahead of the host's (negative: behind).
    clock_offset: AtomicI64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the recordings from the others.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fake's "now": the host's clock moved by the clock offset.
    fn now(&self) -> SystemTime {
        shifted(SystemTime::now(), self.clock_offset.load(Ordering::Relaxed))
    }

    fn set_status(&self, idx: usize, status: u16) {
        self.lock().requests[idx].status = status;
        self.changed.notify_waiters();
    }
}

struct Running {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
    stopped: Arc<AtomicBool>,
}

/// The fake endpoint. Must be created inside a Tokio runtime; dropped → server aborted.
pub struct FakeXray {
    shared: Arc<Shared>,
    addr: SocketAddr,
    running: Mutex<Option<Running>>,
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

impl FakeXray {
    /// Bind `127.0.0.1:0` and serve, accepting `creds`.
    pub fn start(creds: Credentials) -> FakeXray {
        Self::start_with(vec![creds])
    }

    /// Bind `127.0.0.1:0` and serve, accepting any of `creds`.
    pub fn start_with(creds: Vec<Credentials>) -> FakeXray {
        let listener = bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).expect("fake X-Ray: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake X-Ray: local_addr");
        let state = State { creds, max_clock_skew: Some(DEFAULT_MAX_CLOCK_SKEW), ..State::default() };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            changed: Notify::new(),
            request_ids: AtomicU64::new(1),
            clock_offset: AtomicI64::new(0),
        });
        let fake = FakeXray { shared, addr, running: Mutex::new(None) };
        fake.spawn(listener);
        fake
    }

    fn spawn(&self, listener: TcpListener) {
        let (tx, rx) = oneshot::channel();
        let stopped = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(accept_loop(listener, self.shared.clone(), stopped.clone(), rx));
        *self.running.lock().unwrap() = Some(Running { shutdown: tx, task, stopped });
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Close the listener (new connections are refused) and drop every open connection.
    /// Returns once the port is closed. Idempotent.
    pub async fn stop(&self) {
        let running = self.running.lock().unwrap().take();
        if let Some(r) = running {
            r.stopped.store(true, Ordering::SeqCst);
            let _ = r.shutdown.send(());
            let _ = r.task.await;
        }
    }

    /// Bind the same port again after `stop()` (no-op if running). Fails only if another
    /// socket took the port meanwhile, which is unlikely but possible.
    pub fn restart(&self) -> io::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let listener = bind(self.addr)?;
        self.spawn(listener);
        Ok(())
    }

    pub fn is_running(&self) -> bool {
        self.running.lock().unwrap().is_some()
    }

    // ---- credentials -------------------------------------------------------------------

    /// Replace the accepted credentials by this one set (credential rotation).
    pub fn set_credentials(&self, creds: Credentials) {
        self.shared.lock().creds = vec![creds];
    }

    /// Replace the accepted credentials by several sets.
    pub fn set_accepted_credentials(&self, creds: Vec<Credentials>) {
        self.shared.lock().creds = creds;
    }

    /// Accept one more credential set.
    pub fn add_credentials(&self, creds: Credentials) {
        self.shared.lock().creds.push(creds);
    }

    /// Tolerated `X-Amz-Date` skew; `None` disables the check. Default 5 min, as X-Ray.
    pub fn set_max_clock_skew(&self, skew: Option<Duration>) {
        self.shared.lock().max_clock_skew = skew;
    }

    /// Moves the fake's clock `secs` seconds ahead of the host's (negative: behind), as if the
    /// host's clock were that far off. The signature check and every answer's `Date` header use
    /// the fake's clock.
    pub fn set_clock_offset(&self, secs: i64) {
        self.shared.clock_offset.store(secs, Ordering::Relaxed);
    }

    // ---- faults ------------------------------------------------------------------------

    /// Queue a fault for the next PutTraceSegments request.
    pub fn push_fault(&self, fault: Fault) {
        self.push_fault_for(Op::PutTraceSegments, fault);
    }

    /// Queue several faults for the next PutTraceSegments requests, in order.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        for f in faults {
            self.push_fault(f);
        }
    }

    pub fn push_fault_for(&self, op: Op, fault: Fault) {
        self.shared.lock().faults.entry(op).or_default().push_back(fault);
    }

    /// Queued faults not consumed yet (all operations).
    pub fn pending_faults(&self) -> usize {
        self.shared.lock().faults.values().map(VecDeque::len).sum()
    }

    /// Sticky fault for every PutTraceSegments request (queued faults still go first).
    pub fn set_mode(&self, fault: Fault) {
        self.set_mode_for(Op::PutTraceSegments, Some(fault));
    }

    pub fn clear_mode(&self) {
        self.set_mode_for(Op::PutTraceSegments, None);
    }

    pub fn set_mode_for(&self, op: Op, fault: Option<Fault>) {
        let mut st = self.shared.lock();
        match fault {
            Some(f) => st.modes.insert(op, f),
            None => st.modes.remove(&op),
        };
    }

    // ---- recordings --------------------------------------------------------------------

    /// Every request received, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    pub fn requests_to(&self, path: &str) -> Vec<RecordedRequest> {
        self.shared.lock().requests.iter().filter(|r| r.path == path).cloned().collect()
    }

    /// Accepted segment documents, in arrival order, exactly as decoded from the JSON array.
    pub fn accepted_documents(&self) -> Vec<String> {
        self.shared.lock().accepted.clone()
    }

    /// Number of `POST /TraceSegments` requests received, whatever their outcome.
    pub fn put_calls(&self) -> usize {
        self.shared.lock().put_calls
    }

    /// Bodies of the accepted PutTelemetryRecords requests.
    pub fn telemetry(&self) -> Vec<Value> {
        self.shared.lock().telemetry.clone()
    }

    /// GetSamplingRules and SamplingTargets requests, whatever their outcome.
    pub fn sampling_requests(&self) -> Vec<RecordedRequest> {
        let st = self.shared.lock();
        st.requests
            .iter()
            .filter(|r| matches!(r.op(), Some(Op::GetSamplingRules | Op::GetSamplingTargets)))
            .cloned()
            .collect()
    }

    /// Requests answered 400 `InvalidRequestException` (bad JSON / missing fields).
    pub fn invalid_requests(&self) -> usize {
        self.shared.lock().invalid_requests
    }

    /// Forget all recordings and counters (credentials, faults and modes are kept).
    pub fn clear_recordings(&self) {
        let mut st = self.shared.lock();
        st.requests.clear();
        st.accepted.clear();
        st.put_calls = 0;
        st.telemetry.clear();
        st.invalid_requests = 0;
    }

    /// Wait until at least `n` documents are accepted or `timeout` passes; returns the
    /// accepted documents at that point (the caller asserts).
    pub async fn wait_for_documents(&self, n: usize, timeout: Duration) -> Vec<String> {
        self.wait_until(timeout, |st| (st.accepted.len() >= n).then(|| st.accepted.clone()))
            .await
            .unwrap_or_else(|| self.accepted_documents())
    }

    /// Wait until at least `n` requests to `path` were received (answered or not).
    pub async fn wait_for_requests(&self, path: &str, n: usize, timeout: Duration) -> Vec<RecordedRequest> {
        let matching = |st: &State| st.requests.iter().filter(|r| r.path == path).cloned().collect::<Vec<_>>();
        self.wait_until(timeout, |st| Some(matching(st)).filter(|v| v.len() >= n))
            .await
            .unwrap_or_else(|| matching(&self.shared.lock()))
    }

    async fn wait_until<T>(&self, timeout: Duration, mut check: impl FnMut(&State) -> Option<T>) -> Option<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = check(&self.shared.lock()) {
                return Some(v);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}

impl Drop for FakeXray {
    fn drop(&mut self) {
        if let Some(r) = self.running.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
            r.stopped.store(true, Ordering::SeqCst);
            r.task.abort();
        }
    }
}

// ---- server -----------------------------------------------------------------------------

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    stopped: Arc<AtomicBool>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(serve_connection(stream, shared.clone(), stopped.clone()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    conns.shutdown().await;
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>, stopped: Arc<AtomicBool>) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| handle(req, shared.clone(), stopped.clone()));
    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
}

type Resp = Response<Full<Bytes>>;

/// A validated request body.
enum Parsed {
    Segments(Vec<String>),
    Telemetry(Value),
    SamplingRules,
    SamplingTargets(Vec<String>),
}

enum Verdict {
    Answer(Resp),
    Apply(Parsed, Option<Fault>),
}

fn parse_documents(body: &[u8]) -> Result<Vec<String>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let docs = v
        .get("TraceSegmentDocuments")
        .and_then(Value::as_array)
        .ok_or("TraceSegmentDocuments: missing or not an array")?;
    docs.iter()
        .map(|d| {
            d.as_str()
                .map(str::to_owned)
                .ok_or_else(|| "TraceSegmentDocuments: every element must be a string".to_owned())
        })
        .collect()
}

fn parse_body(op: Op, body: &[u8]) -> Result<Parsed, String> {
    let object = |body: &[u8]| -> Result<Value, String> {
        let body = if body.is_empty() { &b"{}"[..] } else { body };
        let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
        if v.is_object() {
            Ok(v)
        } else {
            Err("body is not a JSON object".into())
        }
    };
    match op {
        Op::PutTraceSegments => parse_documents(body).map(Parsed::Segments),
        Op::PutTelemetryRecords => {
            let v = object(body)?;
            if !v.get("TelemetryRecords").is_some_and(Value::is_array) {
                return Err("TelemetryRecords: missing or not an array".into());
            }
            Ok(Parsed::Telemetry(v))
        }
        Op::GetSamplingRules => object(body).map(|_| Parsed::SamplingRules),
        Op::GetSamplingTargets => {
            let v = object(body)?;
            let docs = v
                .get("SamplingStatisticsDocuments")
                .and_then(Value::as_array)
                .ok_or("SamplingStatisticsDocuments: missing or not an array")?;
            docs.iter()
                .map(|d| {
                    d.get("RuleName")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| "RuleName missing".to_owned())
                })
                .collect::<Result<_, _>>()
                .map(Parsed::SamplingTargets)
        }
    }
}

fn json_response(shared: &Shared, status: u16, body: &Value, error_type: Option<&str>) -> Resp {
    let id = shared.request_ids.fetch_add(1, Ordering::Relaxed);
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-amzn-requestid", format!("00000000-0000-4000-8000-{id:012}"))
        .header("date", httpdate::fmt_http_date(shared.now()));
    if let Some(t) = error_type {
        b = b.header("x-amzn-errortype", t);
    }
    b.body(Full::new(Bytes::from(body.to_string()))).expect("valid response")
}

fn error_response(shared: &Shared, status: u16, error_type: &str, message: &str) -> Resp {
    json_response(shared, status, &json!({"__type": error_type, "message": message}), Some(error_type))
}

async fn handle(req: Request<Incoming>, shared: Arc<Shared>, stopped: Arc<AtomicBool>) -> Result<Resp, io::Error> {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(io::Error::other)?.to_bytes();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let op = if parts.method == Method::POST { Op::from_path(&path) } else { None };

    let (idx, verdict) = {
        let mut st = shared.lock();
        let skew = st.max_clock_skew.map(|s| (shared.now(), s));
        let signature =
            sigv4::verify(parts.method.as_str(), &path, query.as_deref(), &headers, &body, &st.creds, "xray", skew);
        if op == Some(Op::PutTraceSegments) {
            st.put_calls += 1;
        }
        let (verdict, fault, status) = match (op, &signature) {
            (None, _) => {
                let msg = format!("Unknown operation: {} {}", parts.method, path);
                (Verdict::Answer(error_response(&shared, 404, "UnknownOperationException", &msg)), None, 404)
            }
            (Some(_), Err(reason)) => {
                (Verdict::Answer(error_response(&shared, 403, "InvalidSignatureException", reason)), None, 403)
            }
            (Some(op), Ok(())) => match parse_body(op, &body) {
                Err(msg) => {
                    st.invalid_requests += 1;
                    (Verdict::Answer(error_response(&shared, 400, "InvalidRequestException", &msg)), None, 400)
                }
                Ok(parsed) => {
                    let fault =
                        st.faults.get_mut(&op).and_then(VecDeque::pop_front).or_else(|| st.modes.get(&op).cloned());
                    (Verdict::Apply(parsed, fault.clone()), fault, 0)
                }
            },
        };
        st.requests.push(RecordedRequest {
            method: parts.method.to_string(),
            path: path.clone(),
            query,
            headers,
            body: body.to_vec(),
            signature,
            status,
            fault,
            at,
        });
        (st.requests.len() - 1, verdict)
    };
    shared.changed.notify_waiters();

    let (parsed, fault) = match verdict {
        Verdict::Answer(resp) => return Ok(resp),
        Verdict::Apply(parsed, fault) => (parsed, fault),
    };
    match fault {
        Some(Fault::Status(status, error_type)) => {
            shared.set_status(idx, status);
            Ok(error_response(&shared, status, error_type, "injected"))
        }
        Some(Fault::Throttle) => {
            shared.set_status(idx, 429);
            Ok(error_response(&shared, 429, "ThrottlingException", "Rate exceeded"))
        }
        Some(Fault::Hang) => {
            tokio::time::sleep(HANG_MAX).await;
            Err(io::Error::other("fake X-Ray: hang expired"))
        }
        Some(Fault::Disconnect) => Err(io::Error::other("fake X-Ray: injected disconnect")),
        Some(Fault::Delay(delay)) => {
            // Completed in its own task, so the outcome does not depend on whether the
            // client is still connected when the delay ends.
            let task = tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                (!stopped.load(Ordering::SeqCst)).then(|| complete(&shared, idx, parsed, None))
            });
            match task.await {
                Ok(Some(resp)) => Ok(resp),
                _ => Err(io::Error::other("fake X-Ray: stopped during delay")),
            }
        }
        unprocessed => Ok(complete(&shared, idx, parsed, unprocessed.as_ref())),
    }
}

/// Normal processing of a validated request; `fault` may only be an `Unprocessed*` one.
fn complete(shared: &Shared, idx: usize, parsed: Parsed, fault: Option<&Fault>) -> Resp {
    let body = {
        let mut st = shared.lock();
        st.requests[idx].status = 200;
        match parsed {
            Parsed::Segments(docs) => {
                let mut unprocessed = Vec::new();
                for (i, doc) in docs.into_iter().enumerate() {
                    let id = segment_id(&doc);
                    let code = match fault {
                        Some(Fault::Unprocessed { count, code }) if i < *count => Some(*code),
                        Some(Fault::UnprocessedIds { ids, code }) if id.as_ref().is_some_and(|id| ids.contains(id)) => {
                            Some(*code)
                        }
                        _ => None,
                    };
                    match code {
                        Some(code) => {
                            let mut entry = json!({"ErrorCode": code, "Message": "injected"});
                            if let Some(id) = id {
                                entry["Id"] = Value::String(id);
                            }
                            unprocessed.push(entry);
                        }
                        None => st.accepted.push(doc),
                    }
                }
                json!({"UnprocessedTraceSegments": unprocessed})
            }
            Parsed::Telemetry(v) => {
                st.telemetry.push(v);
                json!({})
            }
            Parsed::SamplingRules => sampling_rules(),
            Parsed::SamplingTargets(rules) => sampling_targets(&rules),
        }
    };
    shared.changed.notify_waiters();
    json_response(shared, 200, &body, None)
}

/// The `"id"` of a segment document, parsed with serde_json.
pub fn segment_id(doc: &str) -> Option<String> {
    serde_json::from_str::<Value>(doc).ok()?.get("id")?.as_str().map(str::to_owned)
}

/// `t` moved by `secs` seconds.
pub fn shifted(t: SystemTime, secs: i64) -> SystemTime {
    let by = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        t + by
    } else {
        t - by
    }
}

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

fn sampling_rules() -> Value {
    let rule = json!({
        "RuleName": "Default", "RuleARN": "arn:aws:xray:us-east-1:123456789012:sampling-rule/Default",
        "ResourceARN": "*", "Priority": 10000, "FixedRate": SAMPLING_FIXED_RATE, "ReservoirSize": 1,
        "ServiceName": "*", "ServiceType": "*", "Host": "*", "HTTPMethod": "*", "URLPath": "*",
        "Version": 1, "Attributes": {}
    });
    json!({"SamplingRuleRecords": [{"SamplingRule": rule, "CreatedAt": 0.0, "ModifiedAt": 1.0}]})
}

fn sampling_targets(rules: &[String]) -> Value {
    let ttl = now_secs().floor() + 10.0;
    let docs: Vec<Value> = rules
        .iter()
        .map(|r| json!({"RuleName": r, "FixedRate": SAMPLING_FIXED_RATE, "ReservoirQuota": 1, "ReservoirQuotaTTL": ttl, "Interval": 10}))
        .collect();
    json!({"SamplingTargetDocuments": docs, "LastRuleModification": 1.0, "UnprocessedStatistics": []})
}

// ---- SigV4 --------------------------------------------------------------------------------

pub mod sigv4;
