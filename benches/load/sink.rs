//! A fast local PutTraceSegments endpoint: plain HTTP/1.1 on loopback, no signature check,
//! answers `{"UnprocessedTraceSegments":[]}` and counts the distinct segment ids it received
//! for the current step (a bitset indexed by sequence number). It is X-Ray's OTLP endpoint too:
//! `POST /v1/traces` takes a protobuf `ExportTraceServiceRequest` (gzip or not), decodes it with
//! prost, counts its distinct span ids in the same bitset, and answers an empty
//! `ExportTraceServiceResponse`. An optional delay per call turns it into a slow backend for the
//! overload run.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message as _;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Ids per step the bitset can hold (80,000/s for 10 s is 800,000).
pub const MAX_SEQ: u64 = 1 << 23;

/// The escaped `"id":"` as it appears inside a JSON string of the request body.
const ID_KEY: &[u8] = br#"\"id\":\""#;

#[derive(Default)]
struct Counts {
    step: u64,
    bits: Vec<u64>,
    distinct: u64,
    duplicates: u64,
    foreign: u64,
}

/// What the sink saw in the current step.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub distinct: u64,
    pub duplicates: u64,
    /// Ids from another step, or not found where expected.
    pub foreign: u64,
    pub calls: u64,
    pub bytes: u64,
    pub telemetry_calls: u64,
    /// `POST /v1/traces` calls, their bodies' bytes once inflated, and the ones it could not read.
    pub otlp_calls: u64,
    pub otlp_raw_bytes: u64,
    pub otlp_bad: u64,
}

pub struct Sink {
    counts: Mutex<Counts>,
    calls: AtomicU64,
    bytes: AtomicU64,
    telemetry_calls: AtomicU64,
    otlp_calls: AtomicU64,
    otlp_raw_bytes: AtomicU64,
    otlp_bad: AtomicU64,
    delay_ms: AtomicU64,
    /// The sink thread's id, for its CPU time.
    tid: AtomicI32,
    pub addr: SocketAddr,
}

impl Sink {
    /// Starts the sink on its own thread and current-thread runtime.
    pub fn start() -> Arc<Sink> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the sink");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let sink = Arc::new(Sink {
            counts: Mutex::new(Counts { bits: vec![0; (MAX_SEQ / 64) as usize], ..Default::default() }),
            calls: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            telemetry_calls: AtomicU64::new(0),
            otlp_calls: AtomicU64::new(0),
            otlp_raw_bytes: AtomicU64::new(0),
            otlp_bad: AtomicU64::new(0),
            delay_ms: AtomicU64::new(0),
            tid: AtomicI32::new(0),
            addr: std_listener.local_addr().expect("sink address"),
        });
        let s = sink.clone();
        std::thread::Builder::new()
            .name("sink".into())
            .spawn(move || {
                // SAFETY: gettid has no preconditions.
                s.tid.store(unsafe { libc::gettid() }, Relaxed);
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("sink runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(std_listener).expect("sink listener");
                    loop {
                        let Ok((stream, _)) = listener.accept().await else { continue };
                        let _ = stream.set_nodelay(true);
                        let s = s.clone();
                        tokio::spawn(async move {
                            let service = service_fn(move |req| {
                                let s = s.clone();
                                async move { s.handle(req).await }
                            });
                            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                        });
                    }
                });
            })
            .expect("sink thread");
        sink
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts counting a new step; ids of other steps are counted as foreign.
    pub fn reset(&self, step: u64) {
        let mut c = self.counts.lock().unwrap();
        c.step = step;
        c.bits.iter_mut().for_each(|w| *w = 0);
        c.distinct = 0;
        c.duplicates = 0;
        c.foreign = 0;
        self.calls.store(0, Relaxed);
        self.bytes.store(0, Relaxed);
        self.telemetry_calls.store(0, Relaxed);
        self.otlp_calls.store(0, Relaxed);
        self.otlp_raw_bytes.store(0, Relaxed);
        self.otlp_bad.store(0, Relaxed);
    }

    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(delay.as_millis() as u64, Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let c = self.counts.lock().unwrap();
        Snapshot {
            distinct: c.distinct,
            duplicates: c.duplicates,
            foreign: c.foreign,
            calls: self.calls.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            telemetry_calls: self.telemetry_calls.load(Relaxed),
            otlp_calls: self.otlp_calls.load(Relaxed),
            otlp_raw_bytes: self.otlp_raw_bytes.load(Relaxed),
            otlp_bad: self.otlp_bad.load(Relaxed),
        }
    }

    /// The sink thread's CPU time so far (user + system), in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let tid = self.tid.load(Relaxed);
        crate::step::stat_ticks(&format!("/proc/self/task/{tid}/stat"))
    }

    async fn handle(&self, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
        let path = req.uri().path().to_owned();
        let gzip = req.headers().get(hyper::header::CONTENT_ENCODING).is_some_and(|v| v.as_bytes() == b"gzip");
        let body = req.into_body().collect().await?.to_bytes();
        let delay = self.delay_ms.load(Relaxed);
        if delay > 0 && matches!(path.as_str(), "/TraceSegments" | "/v1/traces") {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let (status, content_type, answer) = match path.as_str() {
            "/TraceSegments" => {
                self.calls.fetch_add(1, Relaxed);
                self.bytes.fetch_add(body.len() as u64, Relaxed);
                self.count(&body);
                (200, "application/json", Bytes::from_static(br#"{"UnprocessedTraceSegments":[]}"#))
            }
            "/v1/traces" => {
                self.otlp_calls.fetch_add(1, Relaxed);
                self.bytes.fetch_add(body.len() as u64, Relaxed);
                match span_ids_in(&body, gzip) {
                    Ok((ids, raw)) => {
                        self.otlp_raw_bytes.fetch_add(raw as u64, Relaxed);
                        self.record(ids.into_iter().map(Some));
                        let answer = ExportTraceServiceResponse::default().encode_to_vec();
                        (200, "application/x-protobuf", Bytes::from(answer))
                    }
                    Err(e) => {
                        if self.otlp_bad.fetch_add(1, Relaxed) == 0 {
                            eprintln!("  sink: an OTLP request it cannot read: {e}");
                        }
                        (400, "text/plain", Bytes::from(e))
                    }
                }
            }
            "/TelemetryRecords" => {
                self.telemetry_calls.fetch_add(1, Relaxed);
                (200, "application/json", Bytes::from_static(b"{}"))
            }
            _ => (200, "application/json", Bytes::from_static(b"{}")),
        };
        Ok(Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Full::new(answer))
            .expect("static response"))
    }

    /// Records every id found in a PutTraceSegments request body.
    pub fn count(&self, body: &[u8]) {
        self.record(ids_in(body).into_iter());
    }

    /// Counts ids of this step once each; others (and ids it could not read) as foreign.
    fn record(&self, ids: impl Iterator<Item = Option<u64>>) {
        let mut c = self.counts.lock().unwrap();
        for id in ids {
            match id {
                Some(id) if id >> 40 == c.step && (id & ((1 << 40) - 1)) < MAX_SEQ => {
                    let seq = id & ((1 << 40) - 1);
                    let (w, b) = ((seq / 64) as usize, seq % 64);
                    if c.bits[w] & (1 << b) == 0 {
                        c.bits[w] |= 1 << b;
                        c.distinct += 1;
                    } else {
                        c.duplicates += 1;
                    }
                }
                _ => c.foreign += 1,
            }
        }
    }
}

/// The ids of the documents in a request body (`None` for an id that is not 16 hex digits).
pub fn ids_in(body: &[u8]) -> Vec<Option<u64>> {
    let finder = memchr::memmem::Finder::new(ID_KEY);
    finder
        .find_iter(body)
        .map(|at| {
            let digits = &body[at + ID_KEY.len()..];
            digits.get(..16).and_then(|d| std::str::from_utf8(d).ok()).and_then(|d| u64::from_str_radix(d, 16).ok())
        })
        .collect()
}

/// The span ids (8 bytes, big-endian) of an OTLP `ExportTraceServiceRequest` in protobuf,
/// gzipped or not, and its length once inflated; an error for what is not such a request, or a
/// span id that is not 8 bytes.
pub fn span_ids_in(body: &[u8], gzip: bool) -> Result<(Vec<u64>, usize), String> {
    let inflated;
    let raw = if gzip {
        let mut out = Vec::with_capacity(body.len() * 4);
        flate2::read::GzDecoder::new(body).read_to_end(&mut out).map_err(|e| format!("gzip: {e}"))?;
        inflated = out;
        &inflated[..]
    } else {
        body
    };
    let request = ExportTraceServiceRequest::decode(raw).map_err(|e| format!("protobuf: {e}"))?;
    let mut ids = Vec::new();
    for span in request.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans) {
        let id: [u8; 8] =
            span.span_id[..].try_into().map_err(|_| format!("a span id of {} bytes", span.span_id.len()))?;
        ids.push(u64::from_be_bytes(id));
    }
    Ok((ids, raw.len()))
}
