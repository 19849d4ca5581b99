//! An in-process fake of the Lambda Runtime API's extension side, for the Lambda-mode tests.
//!
//! It reproduces the documented exchanges (the Extensions API 2020-01-01 and the Telemetry API
//! 2022-07-01) as the Runtime Interface Emulator implements them, 403 error codes included:
//! * `POST /2020-01-01/extension/register`: needs `Lambda-Extension-Name` (empty → 403
//!   `Extension.InvalidExtensionName`); a body of `{"events": [...]}` with INVOKE/SHUTDOWN only
//!   (else 403 `InvalidRequestFormat` / `Extension.InvalidEventType`); a name other than the
//!   launched file's is an internal extension, which may not register SHUTDOWN; registering
//!   twice → 403 `Extension.InvalidExtensionState`; after init → `Extension.RegistrationClosed`.
//!   200 with `Lambda-Extension-Identifier` and `{functionName, functionVersion, handler,
//!   accountId?}` (the account only with `Lambda-Extension-Accept-Feature: accountId`).
//! * Every later call needs the identifier: missing → 403 `Extension.MissingExtensionIdentifier`,
//!   not a UUID → `Extension.InvalidExtensionIdentifier`, unknown →
//!   `Extension.UnknownExtensionIdentifier`.
//! * `PUT /2022-07-01/telemetry`: validates schema, types, buffering ranges and a destination on
//!   `sandbox`/`sandbox.localdomain` → 200 `OK` or 400 `ValidationError`; or, like the emulator,
//!   202 `Telemetry.NotSupported`. Batches go to `127.0.0.1:<port><path>` as JSON arrays.
//! * `GET /2020-01-01/extension/event/next`: a long poll answered when the test queues an
//!   INVOKE or SHUTDOWN; optionally a scripted status instead.
//! * `POST /2020-01-01/extension/init/error` and `/exit/error`: need
//!   `Lambda-Extension-Function-Error-Type` (else 403 `Extension.MissingHeader`); 202, after
//!   which every call is refused.
//!
//! Freezes are simulated: with [`FakeLambda::freeze_on_next`], the daemon process is stopped
//! (SIGSTOP) when it calls `/next`, and continued (SIGCONT) when the next event is delivered,
//! as Lambda freezes the sandbox between invocations.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// The file name Lambda launched the extension as (the test binary's).
pub const EXTENSION_NAME: &str = "xray-daemon";
pub const FUNCTION_NAME: &str = "my-function";
pub const ACCOUNT_ID: &str = "123456789012";

/// One request as received.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub status: u16,
    pub at: Instant,
}

impl Call {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// How `PUT /telemetry` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TelemetryMode {
    Subscribe,
    /// The emulator's 202 `Telemetry.NotSupported`.
    NotSupported,
}

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    /// (identifier, events) once registered.
    registered: Option<(String, Vec<String>)>,
    /// The identifier `register` hands out; a fresh UUID when `None`.
    identifier: Option<String>,
    telemetry_mode: Option<TelemetryMode>,
    /// Where batches go: 127.0.0.1:port and the URI's path.
    destination: Option<(u16, String)>,
    events: VecDeque<Value>,
    /// Answer `/next` with this status and error type instead of an event.
    next_failure: Option<(u16, String)>,
    init_done: bool,
    errored: bool,
    freeze_pid: Option<u32>,
    frozen: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The fake Runtime API on `127.0.0.1:0`. Dropped → server aborted.
pub struct FakeLambda {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeLambda {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(pid) = self.shared.lock().freeze_pid.filter(|&p| p > 0) {
            unsafe { libc::kill(pid as i32, libc::SIGCONT) };
        }
    }
}

pub fn uuid() -> String {
    let h = |n: usize| (0..n).map(|_| char::from_digit(fastrand::u32(0..16), 16).unwrap()).collect::<String>();
    format!("{}-{}-4{}-a{}-{}", h(8), h(4), h(3), h(3), h(12))
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts.iter().zip([8, 4, 4, 4, 12]).all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

pub fn epoch_ms_in(d: Duration) -> u64 {
    (SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + d).as_millis() as u64
}

impl FakeLambda {
    pub async fn start() -> FakeLambda {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("fake Lambda: bind");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            state: Mutex::new(State { telemetry_mode: Some(TelemetryMode::Subscribe), ..State::default() }),
            changed: Notify::new(),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(&s, req).await) }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        FakeLambda { shared, addr, task }
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API`.
    pub fn runtime_api(&self) -> String {
        self.addr.to_string()
    }

    pub fn set_telemetry_mode(&self, mode: TelemetryMode) {
        self.shared.lock().telemetry_mode = Some(mode);
    }

    /// `register` hands out this identifier instead of a UUID.
    pub fn set_identifier(&self, id: &str) {
        self.shared.lock().identifier = Some(id.to_owned());
    }

    /// `/next` answers `status` with `error_type` instead of an event.
    pub fn fail_next(&self, status: u16, error_type: &str) {
        self.shared.lock().next_failure = Some((status, error_type.to_owned()));
        self.shared.changed.notify_waiters();
    }

    /// Stop `pid` whenever it calls `/next`, continue it when an event is delivered.
    pub fn freeze_on_next(&self, pid: u32) {
        assert!(pid > 0, "pid 0 would stop the whole process group");
        self.shared.lock().freeze_pid = Some(pid);
    }

    /// No more freezing (the process is not continued: send it SIGCONT).
    pub fn stop_freezing(&self) {
        self.shared.lock().freeze_pid = None;
    }

    pub fn is_frozen(&self) -> bool {
        self.shared.lock().frozen
    }

    fn push_event(&self, event: Value) {
        self.shared.lock().events.push_back(event);
        self.shared.changed.notify_waiters();
    }

    /// Queues an INVOKE whose function deadline is `deadline_in` from now.
    pub fn invoke(&self, request_id: &str, deadline_in: Duration) {
        self.push_event(json!({
            "eventType": "INVOKE",
            "deadlineMs": epoch_ms_in(deadline_in),
            "requestId": request_id,
            "invokedFunctionArn": format!("arn:aws:lambda:us-east-1:{ACCOUNT_ID}:function:{FUNCTION_NAME}"),
            "tracing": {"type": "X-Amzn-Trace-Id", "value": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"}
        }));
    }

    /// Queues a SHUTDOWN with `reason` (sent as given) and a deadline `deadline_in` from now.
    pub fn shutdown(&self, reason: &str, deadline_in: Duration) {
        self.push_event(
            json!({"eventType": "SHUTDOWN", "shutdownReason": reason, "deadlineMs": epoch_ms_in(deadline_in)}),
        );
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    pub fn calls_to(&self, suffix: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.path.ends_with(suffix)).collect()
    }

    /// Waits until `n` calls to a path ending in `suffix` have arrived.
    pub async fn wait_for_calls(&self, suffix: &str, n: usize, timeout: Duration) -> Vec<Call> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let calls = self.calls_to(suffix);
            if calls.len() >= n || tokio::time::Instant::now() >= deadline {
                return calls;
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    /// Delivers a Telemetry API batch to the subscribed listener; returns the HTTP status.
    pub async fn deliver(&self, body: &[u8]) -> u16 {
        let (port, path) = self.shared.lock().destination.clone().expect("the extension has not subscribed");
        post(port, &path, body).await
    }

    /// `platform.runtimeDone` for `request_id`, as Lambda batches it (with platform.start).
    pub async fn runtime_done(&self, request_id: &str) -> u16 {
        let batch = json!([
            {"time": "2026-11-25T10:00:00.000Z", "type": "platform.start",
             "record": {"requestId": request_id, "version": "$LATEST"}},
            {"time": "2026-11-25T10:00:00.020Z", "type": "platform.runtimeDone",
             "record": {"requestId": request_id, "status": "success",
                        "metrics": {"durationMs": 20.0, "producedBytes": 2}, "spans": []}}
        ]);
        self.deliver(batch.to_string().as_bytes()).await
    }
}

/// A bare HTTP/1.1 POST on loopback; returns the status code (0 if none).
pub async fn post(port: u16, path: &str, body: &[u8]) -> u16 {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
        return 0;
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: sandbox.localdomain:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if s.write_all(head.as_bytes()).await.is_err() || s.write_all(body).await.is_err() {
        return 0;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// What the fake answers a call with: status, extra headers, body.
type Answer = (u16, Vec<(&'static str, String)>, String);

fn respond(status: u16, body: Value) -> Answer {
    (status, vec![("content-type", "application/json".into())], body.to_string())
}

fn forbidden(error_type: &str, message: &str) -> Answer {
    respond(403, json!({"errorMessage": message, "errorType": error_type}))
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = req.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
    let index = {
        let mut st = shared.lock();
        st.calls.push(Call {
            method: method.clone(),
            path: path.clone(),
            headers: headers.clone(),
            body: body.clone(),
            status: 0,
            at: Instant::now(),
        });
        st.calls.len() - 1
    };
    shared.changed.notify_waiters();
    let call = shared.lock().calls[index].clone();
    let (status, extra, text) = route(shared, &call).await;
    shared.lock().calls[index].status = status;
    shared.changed.notify_waiters();
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    for (k, v) in extra {
        response.headers_mut().insert(k, v.parse().unwrap());
    }
    response
}

/// Checks the identifier header of a call after register.
fn check_identifier(st: &State, call: &Call) -> Result<(), Answer> {
    let Some(id) = call.header("Lambda-Extension-Identifier") else {
        return Err(forbidden("Extension.MissingExtensionIdentifier", "Missing Lambda-Extension-Identifier header"));
    };
    if !is_uuid(id) {
        return Err(forbidden("Extension.InvalidExtensionIdentifier", "Invalid Lambda-Extension-Identifier"));
    }
    match &st.registered {
        Some((known, _)) if known == id => {}
        _ => return Err(forbidden("Extension.UnknownExtensionIdentifier", "Unknown extension")),
    }
    if st.errored {
        return Err(forbidden("Extension.InvalidExtensionState", "The extension reported an error"));
    }
    Ok(())
}

async fn route(shared: &Shared, call: &Call) -> Answer {
    match (call.method.as_str(), call.path.as_str()) {
        ("POST", "/2020-01-01/extension/register") => register(&mut shared.lock(), call),
        ("PUT", "/2022-07-01/telemetry") => subscribe(&mut shared.lock(), call),
        ("GET", "/2020-01-01/extension/event/next") => next(shared, call).await,
        ("POST", "/2020-01-01/extension/init/error") | ("POST", "/2020-01-01/extension/exit/error") => {
            let mut st = shared.lock();
            if let Err(e) = check_identifier(&st, call) {
                return e;
            }
            let init = call.path.ends_with("init/error");
            if init && st.init_done {
                return forbidden("Extension.InvalidExtensionState", "init/error after init");
            }
            if call.header("Lambda-Extension-Function-Error-Type").is_none() {
                return forbidden("Extension.MissingHeader", "Missing Lambda-Extension-Function-Error-Type header");
            }
            st.errored = true;
            respond(202, json!({"status": "OK"}))
        }
        _ => (404, vec![], "404 page not found".into()),
    }
}

fn register(st: &mut State, call: &Call) -> Answer {
    let name = call.header("Lambda-Extension-Name").unwrap_or("");
    if name.is_empty() {
        return forbidden("Extension.InvalidExtensionName", "Empty extension name");
    }
    let Ok(body) = serde_json::from_slice::<Value>(&call.body) else {
        return forbidden("InvalidRequestFormat", "The body is not JSON");
    };
    if body.get("configurationKeys").is_some() {
        return forbidden("InvalidRequestFormat", "configurationKeys is deprecated");
    }
    let Some(events) = body.get("events").and_then(Value::as_array) else {
        return forbidden("InvalidRequestFormat", "No events");
    };
    let events: Vec<String> = events.iter().map(|e| e.as_str().unwrap_or("").to_owned()).collect();
    let internal = name != EXTENSION_NAME;
    for e in &events {
        if !(e == "INVOKE" || e == "SHUTDOWN") || (internal && e == "SHUTDOWN") {
            return forbidden("Extension.InvalidEventType", &format!("Invalid event {e}"));
        }
    }
    if st.init_done {
        return forbidden("Extension.RegistrationClosed", "Registration after init");
    }
    if st.registered.is_some() {
        return forbidden("Extension.InvalidExtensionState", "Already registered");
    }
    let id = st.identifier.clone().unwrap_or_else(uuid);
    st.registered = Some((id.clone(), events));
    let mut body = json!({"functionName": FUNCTION_NAME, "functionVersion": "$LATEST", "handler": "index.handler"});
    if call.header("Lambda-Extension-Accept-Feature").is_some_and(|f| f.split(',').any(|f| f.trim() == "accountId")) {
        body["accountId"] = json!(ACCOUNT_ID);
    }
    (200, vec![("content-type", "application/json".into()), ("lambda-extension-identifier", id)], body.to_string())
}

fn subscribe(st: &mut State, call: &Call) -> Answer {
    if let Err(e) = check_identifier(st, call) {
        return e;
    }
    if st.telemetry_mode == Some(TelemetryMode::NotSupported) {
        return respond(
            202,
            json!({"errorType": "Telemetry.NotSupported", "errorMessage": "Telemetry API is not supported"}),
        );
    }
    let invalid = |m: &str| respond(400, json!({"errorType": "ValidationError", "errorMessage": m}));
    let b = call.json();
    if !matches!(b["schemaVersion"].as_str(), Some("2022-07-01" | "2022-12-13" | "2025-01-29")) {
        return invalid("schemaVersion");
    }
    let types = b["types"].as_array().cloned().unwrap_or_default();
    if types.is_empty() || !types.iter().all(|t| matches!(t.as_str(), Some("platform" | "function" | "extension"))) {
        return invalid("types");
    }
    let buf = &b["buffering"];
    let in_range =
        |k: &str, lo: u64, hi: u64| buf.get(k).is_none() || buf[k].as_u64().is_some_and(|v| (lo..=hi).contains(&v));
    if !(in_range("maxItems", 1000, 10000) && in_range("maxBytes", 262144, 1048576) && in_range("timeoutMs", 25, 30000))
    {
        return invalid("buffering");
    }
    if b["destination"]["protocol"] != "HTTP" {
        return invalid("destination.protocol");
    }
    let uri = b["destination"]["URI"].as_str().unwrap_or("");
    let Some(rest) = uri.strip_prefix("http://") else {
        return invalid("destination.URI scheme");
    };
    let (authority, path) = rest.split_once('/').map(|(a, p)| (a, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let Some((host, port)) = authority.rsplit_once(':') else {
        return invalid("destination.URI port");
    };
    if !(host == "sandbox" || host == "sandbox.localdomain") {
        return invalid("destination.URI host");
    }
    let Ok(port) = port.parse::<u16>() else {
        return invalid("destination.URI port");
    };
    st.destination = Some((port, path));
    (200, vec![], "OK".into())
}

async fn next(shared: &Shared, call: &Call) -> Answer {
    {
        let mut st = shared.lock();
        if let Err(e) = check_identifier(&st, call) {
            return e;
        }
        st.init_done = true;
        if let Some(pid) = st.freeze_pid {
            if st.events.is_empty() && st.next_failure.is_none() {
                unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
                st.frozen = true;
            }
        }
    }
    loop {
        let notified = shared.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut st = shared.lock();
            if let Some((status, error_type)) = st.next_failure.clone() {
                let frozen = std::mem::take(&mut st.frozen);
                if let (Some(pid), true) = (st.freeze_pid, frozen) {
                    unsafe { libc::kill(pid as i32, libc::SIGCONT) };
                }
                return respond(status, json!({"errorMessage": "scripted failure", "errorType": error_type}));
            }
            if let Some(event) = st.events.pop_front() {
                if let (Some(pid), true) = (st.freeze_pid, std::mem::take(&mut st.frozen)) {
                    unsafe { libc::kill(pid as i32, libc::SIGCONT) };
                }
                return (
                    200,
                    vec![("content-type", "application/json".into()), ("lambda-extension-event-identifier", uuid())],
                    event.to_string(),
                );
            }
        }
        notified.await;
    }
}
