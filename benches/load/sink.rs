//! A fast local PutTraceSegments endpoint: plain HTTP/1.1 on loopback, no signature check,
//! answers `{"UnprocessedTraceSegments":[]}` and counts the distinct segment ids it received
//! for the current step (a bitset indexed by sequence number). An optional delay per call
//! turns it into a slow backend for the overload run.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
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
}

pub struct Sink {
    counts: Mutex<Counts>,
    calls: AtomicU64,
    bytes: AtomicU64,
    telemetry_calls: AtomicU64,
    delay_ms: AtomicU64,
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
            delay_ms: AtomicU64::new(0),
            addr: std_listener.local_addr().expect("sink address"),
        });
        let s = sink.clone();
        std::thread::Builder::new()
            .name("sink".into())
            .spawn(move || {
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
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
        let path = req.uri().path().to_owned();
        let body = req.into_body().collect().await?.to_bytes();
        let answer = match path.as_str() {
            "/TraceSegments" => {
                let delay = self.delay_ms.load(Relaxed);
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                self.calls.fetch_add(1, Relaxed);
                self.bytes.fetch_add(body.len() as u64, Relaxed);
                self.count(&body);
                r#"{"UnprocessedTraceSegments":[]}"#
            }
            "/TelemetryRecords" => {
                self.telemetry_calls.fetch_add(1, Relaxed);
                "{}"
            }
            _ => "{}",
        };
        Ok(Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(answer.as_bytes())))
            .expect("static response"))
    }

    /// Records every id found in a PutTraceSegments request body.
    pub fn count(&self, body: &[u8]) {
        let ids = ids_in(body);
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
