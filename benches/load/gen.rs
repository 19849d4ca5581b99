//! The load generator: valid segments of a fixed size with unique ids, or `T1S` datagrams of
//! OpenTelemetry spans as AWS's OpenTelemetry distribution sends them in Lambda, sent over UDP at
//! a fixed rate with `sendmmsg` (one system call per 64 datagrams, so one thread reaches well
//! past 100,000 datagrams per second on loopback).
//!
//! Each id is `step << 40 | seq`: a segment's in 16 hex digits (its trace id carries the same
//! digits), a span's as its 8-byte span id. The sink reads the ids back out of the requests, so a
//! segment or span counts as delivered only when its own id arrived.

use base64::Engine as _;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, status, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message as _;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const HEADER: &[u8] = br#"{"format":"json","version":1}"#;
/// Datagrams handed to the kernel per `sendmmsg`.
const BURST: usize = 64;
/// What a step sends: one segment a datagram, or [`SPANS_PER_DATAGRAM`] spans a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Segments whose body is this many bytes.
    Segments(usize),
    /// ADOT-shaped `T1S` datagrams ([`SpanDatagram`]).
    Spans,
    /// The same spans in OTLP/gRPC `Export` calls of [`crate::grpc::PER_REQUEST`] spans, to the
    /// daemon's gRPC listener ([`crate::grpc::run`]).
    GrpcSpans,
}

impl Load {
    /// Segments or spans per datagram.
    pub fn per_datagram(self) -> u64 {
        match self {
            Load::Segments(_) => 1,
            Load::Spans => SPANS_PER_DATAGRAM as u64,
            Load::GrpcSpans => crate::grpc::PER_REQUEST as u64,
        }
    }

    /// Spans, sent one way or the other.
    pub fn spans(self) -> bool {
        matches!(self, Load::Spans | Load::GrpcSpans)
    }

    fn datagram(self) -> Datagram {
        match self {
            Load::Segments(size) => Datagram::Segment(Template::new(size)),
            Load::Spans | Load::GrpcSpans => Datagram::Spans(SpanDatagram::new()),
        }
    }
}

/// One datagram of a burst, rewritten in place for each send.
enum Datagram {
    Segment(Template),
    Spans(SpanDatagram),
}

impl Datagram {
    fn bytes_mut(&mut self) -> &mut Vec<u8> {
        match self {
            Datagram::Segment(t) => &mut t.bytes,
            Datagram::Spans(s) => &mut s.bytes,
        }
    }

    /// Gives the datagram's segment, or its spans, the ids from `first` on.
    fn set_ids(&mut self, first: u64) {
        match self {
            Datagram::Segment(t) => t.set_id(first),
            Datagram::Spans(s) => s.set_ids(first),
        }
    }
}

/// A datagram whose id digits can be rewritten in place.
#[derive(Clone)]
pub struct Template {
    pub bytes: Vec<u8>,
    id_at: usize,
    trace_at: usize,
}

impl Template {
    /// A datagram whose body (the segment document after the header line) is exactly
    /// `body_size` bytes, or the smallest valid document when `body_size` is smaller.
    pub fn new(body_size: usize) -> Template {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let head = format!("{{\"trace_id\":\"1-{now:08x}-00000000");
        let mid = "\",\"id\":\"";
        let tail =
            format!("\",\"name\":\"bench\",\"start_time\":{now}.125,\"end_time\":{now}.5,\"annotations\":{{\"pad\":\"");
        let end = "\"}}";
        let fixed = head.len() + 16 + mid.len() + 16 + tail.len() + end.len();
        let pad = body_size.saturating_sub(fixed);
        let mut bytes = Vec::with_capacity(HEADER.len() + 1 + fixed + pad);
        bytes.extend_from_slice(HEADER);
        bytes.push(b'\n');
        bytes.extend_from_slice(head.as_bytes());
        let trace_at = bytes.len();
        bytes.extend_from_slice(&[b'0'; 16]);
        bytes.extend_from_slice(mid.as_bytes());
        let id_at = bytes.len();
        bytes.extend_from_slice(&[b'0'; 16]);
        bytes.extend_from_slice(tail.as_bytes());
        bytes.resize(bytes.len() + pad, b'x');
        bytes.extend_from_slice(end.as_bytes());
        Template { bytes, id_at, trace_at }
    }

    /// The body size this template produces.
    pub fn body_len(&self) -> usize {
        self.bytes.len() - HEADER.len() - 1
    }

    pub fn set_id(&mut self, id: u64) {
        write_hex(&mut self.bytes[self.id_at..self.id_at + 16], id);
        write_hex(&mut self.bytes[self.trace_at..self.trace_at + 16], id);
    }
}

/// Spans a `T1S` datagram carries here. ADOT in Lambda sends 10 a datagram; twice that keeps
/// the generator's datagram rate, and its share of the cores, down at a given span rate.
pub const SPANS_PER_DATAGRAM: usize = 20;
/// The body's prefix in an OTLP-over-UDP datagram of sampled spans.
pub const T1S: &[u8] = b"T1S";

/// The marker a template's span `i` carries as its span id, its parent span id, or (`i` = 255)
/// as the trace id, before the generator overwrites them; found in the encoding once.
fn marker(kind: u8, i: usize) -> Vec<u8> {
    let mut m = vec![0xa7, 0x5e, 0x1d, 0xc0 | kind, 0x5a, 0xa5, 0x00, i as u8];
    if kind == 2 {
        m.extend_from_slice(&[0xa7, 0x5e, 0x1d, 0xcf, 0x5a, 0xa5, 0x00, 0xff]);
    }
    m
}

/// A `T1S` datagram of [`SPANS_PER_DATAGRAM`] spans as ADOT's Lambda layer emits them: the
/// Lambda function's own SERVER span and the CLIENT spans of the AWS SDK and HTTP calls it made,
/// under a Lambda resource, each span 300–500 bytes encoded with a few attributes. The protobuf
/// request is encoded once; per send only its ids change (span ids `first..first + 20`, parents
/// pointing at the first span, a trace id carrying `first`) and it is base64-encoded again into
/// the datagram, whose length never changes.
#[derive(Clone)]
pub struct SpanDatagram {
    proto: Vec<u8>,
    span_at: Vec<usize>,
    parent_at: Vec<usize>,
    trace_at: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl SpanDatagram {
    pub fn new() -> SpanDatagram {
        let proto = span_request().encode_to_vec();
        let find = |m: &[u8]| -> Vec<usize> {
            proto.windows(m.len()).enumerate().filter(|(_, w)| *w == m).map(|(at, _)| at).collect()
        };
        let one = |m: &[u8]| -> usize {
            let at = find(m);
            assert_eq!(at.len(), 1, "marker {m:02x?} once in the encoding");
            at[0]
        };
        let span_at = (0..SPANS_PER_DATAGRAM).map(|i| one(&marker(0, i))).collect();
        let parent_at = (1..SPANS_PER_DATAGRAM).map(|i| one(&marker(1, i))).collect();
        let trace_at = find(&marker(2, 0xff));
        assert_eq!(trace_at.len(), SPANS_PER_DATAGRAM, "one trace id a span");
        let encoded = base64::engine::general_purpose::STANDARD.encode(&proto);
        let mut bytes = Vec::with_capacity(HEADER.len() + 1 + T1S.len() + encoded.len());
        bytes.extend_from_slice(HEADER);
        bytes.push(b'\n');
        bytes.extend_from_slice(T1S);
        bytes.extend_from_slice(encoded.as_bytes());
        SpanDatagram { proto, span_at, parent_at, trace_at, bytes }
    }

    /// The encoded `ExportTraceServiceRequest` the datagram carries.
    pub fn proto(&self) -> &[u8] {
        &self.proto
    }

    pub fn set_ids(&mut self, first: u64) {
        self.set_proto_ids(first);
        let start = HEADER.len() + 1 + T1S.len();
        let written = base64::engine::general_purpose::STANDARD
            .encode_slice(&self.proto, &mut self.bytes[start..])
            .expect("the base64 of a request of fixed length fits");
        debug_assert_eq!(start + written, self.bytes.len());
    }

    /// Gives the request's spans the ids from `first` on (the datagram is not rewritten).
    pub fn set_proto_ids(&mut self, first: u64) {
        for (i, &at) in self.span_at.iter().enumerate() {
            self.proto[at..at + 8].copy_from_slice(&(first + i as u64).to_be_bytes());
        }
        for &at in &self.parent_at {
            self.proto[at..at + 8].copy_from_slice(&first.to_be_bytes());
        }
        // An X-Ray-shaped trace id: 4 bytes of epoch seconds, 4 zero, then the first span's id.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(0);
        for &at in &self.trace_at {
            self.proto[at..at + 4].copy_from_slice(&now.to_be_bytes());
            self.proto[at + 4..at + 8].fill(0);
            self.proto[at + 8..at + 16].copy_from_slice(&first.to_be_bytes());
        }
    }
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn s(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

fn int(key: &str, value: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(value))
}

/// The request a [`SpanDatagram`] carries, with marker ids.
fn span_request() -> ExportTraceServiceRequest {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let function = "orders-api";
    let arn = format!("arn:aws:lambda:us-east-1:123456789012:function:{function}");
    let resource = Resource {
        attributes: vec![
            s("service.name", function),
            s("cloud.provider", "aws"),
            s("cloud.platform", "aws_lambda"),
            s("cloud.region", "us-east-1"),
            s("faas.name", function),
            s("faas.version", "$LATEST"),
            s("faas.instance", "2026/12/01/[$LATEST]8f0c5ab0d1b94c5e9d1e2f3a4b5c6d7e"),
            int("faas.max_memory", 512 << 20),
            s("telemetry.sdk.language", "python"),
            s("telemetry.sdk.name", "opentelemetry"),
            s("telemetry.sdk.version", "1.33.1"),
            s("telemetry.auto.version", "0.54b1-aws"),
        ],
        ..Default::default()
    };
    let ids = |i: usize| (marker(0, i), if i == 0 { Vec::new() } else { marker(1, i) }, marker(2, 0xff));
    let (mut server, mut aws, mut http) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..SPANS_PER_DATAGRAM {
        let (span_id, parent_span_id, trace_id) = ids(i);
        let start = now + i as u64 * 1_500_000;
        let ok = Some(Status { code: status::StatusCode::Unset as i32, ..Default::default() });
        let span = if i == 0 {
            Span {
                trace_id,
                span_id,
                name: function.into(),
                kind: span::SpanKind::Server as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: start + 48_000_000,
                attributes: vec![
                    s("faas.trigger", "http"),
                    s("faas.invocation_id", "3f1c2a9e-6b7d-4e8f-9a0b-1c2d3e4f5a6b"),
                    s("cloud.resource_id", &arn),
                    s("cloud.account.id", "123456789012"),
                    s("http.request.method", "GET"),
                    s("http.route", "/orders/{id}"),
                    int("http.response.status_code", 200),
                ],
                status: ok,
                flags: 0x101,
                ..Default::default()
            }
        } else if i % 3 == 0 {
            Span {
                trace_id,
                span_id,
                parent_span_id,
                name: "GET".into(),
                kind: span::SpanKind::Client as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: start + 12_000_000,
                attributes: vec![
                    s("http.request.method", "GET"),
                    s(
                        "url.full",
                        &format!("https://inventory.internal.example.com/v2/items/{i:06}?fields=stock,price"),
                    ),
                    s("server.address", "inventory.internal.example.com"),
                    int("server.port", 443),
                    s("network.protocol.version", "1.1"),
                    int("http.response.status_code", 200),
                ],
                status: ok,
                flags: 0x301,
                ..Default::default()
            }
        } else {
            let (service, method, table) =
                if i % 3 == 1 { ("DynamoDB", "GetItem", "orders") } else { ("DynamoDB", "Query", "order-lines") };
            Span {
                trace_id,
                span_id,
                parent_span_id,
                name: format!("{service}.{method}"),
                kind: span::SpanKind::Client as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: start + 6_000_000,
                attributes: vec![
                    s("rpc.system", "aws-api"),
                    s("rpc.service", service),
                    s("rpc.method", method),
                    s("aws.region", "us-east-1"),
                    s("aws.request_id", "N5TPS0QH4FJ1LRG9A8DK3VCM7BUU0R2E6IQ9ASUAAJG"),
                    s("aws.dynamodb.table_names", table),
                    s("server.address", "dynamodb.us-east-1.amazonaws.com"),
                    int("http.response.status_code", 200),
                ],
                status: ok,
                flags: 0x301,
                ..Default::default()
            }
        };
        match i {
            0 => server.push(span),
            _ if i % 3 == 0 => http.push(span),
            _ => aws.push(span),
        }
    }
    let scope = |name: &str, version: &str, spans| ScopeSpans {
        scope: Some(InstrumentationScope { name: name.into(), version: version.into(), ..Default::default() }),
        spans,
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![
                scope("opentelemetry.instrumentation.aws_lambda", "0.54b1", server),
                scope("opentelemetry.instrumentation.botocore", "0.54b1", aws),
                scope("opentelemetry.instrumentation.urllib3", "0.54b1", http),
            ],
            ..Default::default()
        }],
    }
}

pub fn id(step: u64, seq: u64) -> u64 {
    (step << 40) | seq
}

fn write_hex(out: &mut [u8], v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in out.iter_mut().enumerate() {
        *b = DIGITS[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
}

/// What one run sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sent {
    pub datagrams: u64,
    /// Segments or spans in them.
    pub items: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// The sending thread's own CPU time (it shares the cores with the daemon and the sink).
    pub cpu: Duration,
}

/// Sends `rate × duration` segments or spans (`load`) to `target`, spread evenly (checked every
/// ~0.5 ms), ids `id(step, 0..)`. Returns when all were handed to the kernel.
pub fn run(target: SocketAddr, load: Load, step: u64, rate: u64, duration: Duration) -> Sent {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the sender");
    socket.connect(target).expect("connect the sender");
    let per = load.per_datagram();
    let total = (rate as f64 * duration.as_secs_f64() / per as f64).round() as u64;
    let dg_rate = rate as f64 / per as f64;
    let mut bufs: Vec<Datagram> = (0..BURST).map(|_| load.datagram()).collect();
    let mut iovecs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|d| {
            let bytes = d.bytes_mut();
            libc::iovec { iov_base: bytes.as_mut_ptr().cast(), iov_len: bytes.len() }
        })
        .collect();
    // SAFETY: mmsghdr is plain old data; all-zero is a valid empty header.
    let mut msgs: Vec<libc::mmsghdr> = (0..BURST).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (m, iov) in msgs.iter_mut().zip(iovecs.iter_mut()) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let fd = socket.as_raw_fd();
    let (mut seq, mut errors) = (0u64, 0u64);
    let cpu0 = thread_cpu();
    let start = Instant::now();
    while seq < total {
        let due = ((dg_rate * start.elapsed().as_secs_f64()) as u64).min(total);
        while seq < due {
            let n = ((due - seq) as usize).min(BURST);
            for (i, d) in bufs.iter_mut().take(n).enumerate() {
                d.set_ids(id(step, (seq + i as u64) * per));
            }
            let mut done = 0;
            while done < n {
                // SAFETY: msgs[done..n] point at iovecs and buffers that live for this call.
                let r = unsafe { libc::sendmmsg(fd, msgs[done..].as_mut_ptr(), (n - done) as u32, 0) };
                if r <= 0 {
                    errors += 1;
                    if errors > 1_000_000 {
                        panic!("sendmmsg keeps failing: {}", std::io::Error::last_os_error());
                    }
                    std::thread::yield_now();
                    continue;
                }
                done += r as usize;
            }
            seq += n as u64;
        }
        if seq < total {
            // The next datagram is due in 1/rate s; sleep in small steps to keep the rate even.
            let next = Duration::from_secs_f64((seq + 1) as f64 / dg_rate);
            let wait = next.saturating_sub(start.elapsed()).min(Duration::from_micros(500));
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
    }
    let elapsed = start.elapsed();
    Sent { datagrams: seq, items: seq * per, errors, elapsed, cpu: thread_cpu().saturating_sub(cpu0) }
}

/// The calling thread's CPU time so far.
pub fn thread_cpu() -> Duration {
    // SAFETY: clock_gettime writes the timespec it is given.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
