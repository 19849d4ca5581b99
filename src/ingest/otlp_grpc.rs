//! OTLP/gRPC: `opentelemetry.proto.collector.trace.v1.TraceService/Export` over HTTP/2
//! cleartext, on a listener of its own (`XRAY_DAEMON_OTLP_GRPC_ADDRESS`; in Lambda
//! `127.0.0.1:4317`). Most OpenTelemetry SDKs export this way by default.
//!
//! `tonic` serves it, with `opentelemetry-proto`'s generated `TraceServiceServer`, on the shared
//! accept loop (`serve::run`, HTTP/2: its connection limit, stream and header limits, idle
//! timeout). It takes gzip (`grpc-encoding`) and identity, and answers as the OTLP specification
//! says:
//! - OK with an `ExportTraceServiceResponse`, whose `partial_success` counts the spans taken out
//!   (over X-Ray's size limit, invalid ids);
//! - `INVALID_ARGUMENT` for a message that does not decode (tonic says `INTERNAL`, restated
//!   here); OTLP clients do not retry it;
//! - `RESOURCE_EXHAUSTED` for a message over 5 MB, on the wire or once inflated (tonic inflates
//!   at most that far);
//! - `UNAVAILABLE` with a `google.rpc.RetryInfo` of one second when the buffer cannot take the
//!   spans without dropping others, or when more requests are being read at once than
//!   [`IN_FLIGHT`] bytes hold. Nothing buffered is evicted for them; the client retries.
//! - `DEADLINE_EXCEEDED` when a message arrives slower than [`MIN_RATE`], or a request has not
//!   been answered within the client timeout (`XRAY_DAEMON_PROXY_CLIENT_TIMEOUT`).
//!
//! Memory stays bounded however many streams are open. The length in gRPC's 5-byte message
//! prefix is read as the bytes pass, before tonic sees them: the message's bytes are reserved
//! then from [`IN_FLIGHT`], shared by all requests, and a request they do not fit is refused
//! before tonic allocates anything for it. A reserved message must then arrive at
//! [`MIN_RATE`] at least (a second, plus a second a MB), so that a client trickling it cannot
//! keep its share for long. The request body ends as soon as the message is whole, so that the
//! inflated and decoded message lives only while the intake takes it, not for as long as a
//! client keeps the stream open.
//!
//! An uncompressed message's bytes are kept as they arrived ([`Wire`]), as OTLP/HTTP keeps a
//! protobuf body, so that the intake need not encode the decoded request again.

use crate::pipeline::intake::{Intake, WhenFull};
use crate::serve::{Handler, Limited, Protocol};
use crate::signal::spans::{self, Any, Received};
use crate::signal::{Signal, Spans};
use crate::stats::{SpanSource, Stats};
use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};
use tower_service::Service;
use tracing::debug;

/// The largest message taken, on the wire and once inflated: X-Ray's limit for one request, as
/// for OTLP/HTTP.
pub(crate) const MAX_MESSAGE: usize = Spans::MAX_BYTES;
/// The request bytes all gRPC calls together may be reading, by the lengths their messages
/// announce: three requests of the largest size.
pub(crate) const IN_FLIGHT: usize = 3 * MAX_MESSAGE;
/// The slowest a message may arrive once its length is known, in bytes a second (after a first
/// second): an exporter on the same host or network sends many times faster.
pub(crate) const MIN_RATE: usize = 1 << 20;
/// What a client that is pushed back is told to wait.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// `google.rpc.RetryInfo`'s type, as `google.protobuf.Any` names it.
const RETRY_INFO: &str = "type.googleapis.com/google.rpc.RetryInfo";
/// The metadata key under which some clients (Python's OTLP exporter) look for the `RetryInfo`,
/// beside the `google.rpc.Status` details where the others (Go's, the Collector's) look.
const RETRY_INFO_KEY: &str = "google.rpc.retryinfo-bin";

/// Takes OTLP/gRPC trace exports into the pipeline.
pub(crate) struct OtlpGrpc {
    server: TraceServiceServer<Export>,
    in_flight: Arc<InFlight>,
    stats: Arc<Stats>,
    /// How long a client may take to send a request, and a connection may stay idle.
    read_timeout: Duration,
    max_connections: usize,
}

impl OtlpGrpc {
    pub(crate) fn new(intake: Intake, read_timeout: Duration, max_connections: usize) -> Self {
        let stats = intake.stats().clone();
        let server = TraceServiceServer::new(Export { intake })
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(MAX_MESSAGE);
        let in_flight = Arc::new(InFlight { used: AtomicUsize::new(0), limit: IN_FLIGHT, stats: stats.clone() });
        OtlpGrpc { server, in_flight, stats, read_timeout, max_connections }
    }
}

impl Handler for OtlpGrpc {
    type Body = tonic::body::Body;
    const NAME: &'static str = "otlp grpc server";
    const PROTOCOL: Protocol = Protocol::Http2;

    async fn handle(&self, mut request: Request<Incoming>) -> Response<tonic::body::Body> {
        let wire = Wire::default();
        request.extensions_mut().insert(wire.clone());
        let request = request.map(|body| MessageBody::new(body, self.in_flight.clone(), wire));
        let answer = match tokio::time::timeout(self.read_timeout, self.server.clone().call(request)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(never)) => match never {},
            Err(_) => Status::deadline_exceeded("the request did not arrive in time").into_http(),
        };
        restate(answer, &self.stats)
    }

    fn header_timeout(&self) -> Option<Duration> {
        Some(self.read_timeout)
    }

    fn max_connections(&self) -> usize {
        self.max_connections
    }

    fn limited(&self, what: Limited) {
        self.stats.connection_limited(what);
    }
}

/// The `TraceService` itself: one call, one push into the intake.
struct Export {
    intake: Intake,
}

#[tonic::async_trait]
impl TraceService for Export {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, Status> {
        let wire = request.extensions().get::<Wire>().and_then(Wire::take);
        let received = match wire {
            Some(wire) => Received { request: request.into_inner(), wire: Some(wire) },
            None => Received::decoded(request.into_inner()),
        };
        match self.intake.spans(received, SpanSource::Grpc, WhenFull::Refuse) {
            Ok(taken) => {
                let partial_success = super::partial_success(&taken);
                Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success }))
            }
            Err(full) => Err(retry_later(&format!("{full}; retry later"))),
        }
    }
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

/// `UNAVAILABLE`, with a `RetryInfo` of [`RETRY_AFTER`] in `grpc-status-details-bin` (a
/// `google.rpc.Status`) and under [`RETRY_INFO_KEY`]: OTLP clients retry after that delay.
fn retry_later(message: &str) -> Status {
    let delay = ProtoDuration { seconds: RETRY_AFTER.as_secs() as i64, nanos: 0 };
    let retry_info = RetryInfo { retry_delay: Some(delay) }.encode_to_vec();
    let details = spans::Status {
        code: Code::Unavailable as i32,
        message: message.to_owned(),
        details: vec![Any { type_url: RETRY_INFO.to_owned(), value: retry_info.clone() }],
    };
    let mut metadata = MetadataMap::new();
    metadata.insert_bin(RETRY_INFO_KEY, MetadataValue::from_bytes(&retry_info));
    Status::with_details_and_metadata(Code::Unavailable, message, Bytes::from(details.encode_to_vec()), metadata)
}

/// The answer as OTLP wants it: tonic answers `INTERNAL` for a request it cannot read (not
/// protobuf, a truncated frame, a gzip body that does not inflate, no message at all), which
/// OTLP calls `INVALID_ARGUMENT`. The handler itself never answers `INTERNAL`.
fn restate(answer: Response<tonic::body::Body>, stats: &Stats) -> Response<tonic::body::Body> {
    let Some(status) = Status::from_header_map(answer.headers()) else { return answer };
    if status.code() != Code::Internal {
        return answer;
    }
    Stats::add(&stats.spans_malformed, 1);
    debug!("OTLP/gRPC request refused: {}", status.message());
    Status::invalid_argument(format!("not an OTLP ExportTraceServiceRequest: {}", status.message())).into_http()
}

/// The request bytes reserved by all calls and not yet released, against a limit.
struct InFlight {
    used: AtomicUsize,
    limit: usize,
    stats: Arc<Stats>,
}

impl InFlight {
    /// Reserves `n` more bytes, unless that would go over the limit.
    fn charge(&self, n: usize) -> bool {
        let before = self.used.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > self.limit {
            self.used.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        true
    }
}

/// gRPC's message prefix: a compressed flag and the message's length (big-endian u32).
const PREFIX: usize = 5;

/// Where a unary call's request body is: in the message's prefix, or in the message, or past
/// it. It reads the message's length from the prefix as the bytes pass (tonic decodes them).
#[derive(Debug, Default)]
struct UnaryFraming {
    prefix: [u8; PREFIX],
    prefix_seen: usize,
    /// The message's length, once the prefix is known.
    length: Option<usize>,
    /// Bytes of the message still to come, once the prefix is known.
    left: Option<usize>,
}

impl UnaryFraming {
    /// Notes what `data`, the next bytes of the body, holds of the prefix and the message;
    /// `Err` when the prefix announces a message over [`MAX_MESSAGE`]. Returns where in `data`
    /// the message's bytes are; what follows them is not the message's (a client may send more;
    /// it is not read).
    fn take(&mut self, data: &[u8]) -> Result<Range<usize>, Status> {
        let mut at = 0;
        while self.prefix_seen < PREFIX && at < data.len() {
            self.prefix[self.prefix_seen] = data[at];
            (self.prefix_seen, at) = (self.prefix_seen + 1, at + 1);
        }
        if self.left.is_none() && self.prefix_seen == PREFIX {
            let [_, a, b, c, d] = self.prefix;
            let length = u32::from_be_bytes([a, b, c, d]) as usize;
            if length > MAX_MESSAGE {
                return Err(Status::resource_exhausted(format!(
                    "the message is {length} bytes, over {MAX_MESSAGE}, the most X-Ray takes in one request"
                )));
            }
            (self.length, self.left) = (Some(length), Some(length));
        }
        match self.left.as_mut() {
            Some(left) => {
                let body = (data.len() - at).min(*left);
                *left -= body;
                Ok(at..at + body)
            }
            None => Ok(at..at),
        }
    }

    /// The message is compressed (`grpc-encoding`), once the prefix is known.
    fn compressed(&self) -> bool {
        self.prefix_seen == PREFIX && self.prefix[0] != 0
    }

    /// The whole message has passed.
    fn whole(&self) -> bool {
        self.left == Some(0)
    }
}

/// A message's protobuf bytes as they arrived, when it was not compressed: the request body
/// sees them pass on their way to tonic and leaves them here (in the request's extensions), so
/// that the intake keeps them as they are rather than encoding the decoded request again.
#[derive(Clone, Default)]
struct Wire(Arc<Mutex<Option<Bytes>>>);

impl Wire {
    fn take(&self) -> Option<Bytes> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn put(&self, parts: Vec<Bytes>) {
        let bytes = match <[Bytes; 1]>::try_from(parts) {
            Ok([one]) => one,
            Err(parts) => Bytes::from(parts.concat()),
        };
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(bytes);
    }
}

/// A unary call's request body as tonic reads it. Once the message's prefix has passed, it
/// reserves the message's bytes from the shared [`InFlight`] (released when the body is
/// dropped: tonic drops it once it has decoded the message) or refuses the request, and gives
/// the rest of the message a deadline ([`MIN_RATE`]). It refuses a message over
/// [`MAX_MESSAGE`] from its prefix, and ends as soon as the message is whole, leaving its bytes
/// in [`Wire`].
struct MessageBody {
    inner: Incoming,
    in_flight: Arc<InFlight>,
    reserved: usize,
    message: UnaryFraming,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The message's bytes so far, and where they go once it is whole.
    parts: Vec<Bytes>,
    wire: Wire,
}

impl MessageBody {
    fn new(inner: Incoming, in_flight: Arc<InFlight>, wire: Wire) -> Self {
        let message = UnaryFraming::default();
        MessageBody { inner, in_flight, reserved: 0, message, deadline: None, parts: Vec::new(), wire }
    }

    /// Reserves the `length` bytes a message announced, and sets when they must have arrived.
    fn reserve(&mut self, length: usize) -> Result<(), Status> {
        let bytes = length + PREFIX;
        if !self.in_flight.charge(bytes) {
            Stats::add(&self.in_flight.stats.otlp_refused[SpanSource::Grpc as usize], 1);
            let busy = "more OTLP/gRPC requests are being read than the daemon holds at once; retry later";
            return Err(retry_later(busy));
        }
        self.reserved = bytes;
        let allowed = Duration::from_secs(1) + Duration::from_secs_f64(length as f64 / MIN_RATE as f64);
        self.deadline = Some(Box::pin(tokio::time::sleep(allowed)));
        Ok(())
    }
}

impl Drop for MessageBody {
    fn drop(&mut self) {
        self.in_flight.used.fetch_sub(self.reserved, Ordering::Relaxed);
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Body for MessageBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.message.whole() {
            return Poll::Ready(None);
        }
        if let Some(deadline) = self.deadline.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                let slow = format!("the message did not arrive at {} KB a second", MIN_RATE / 1024);
                return Poll::Ready(Some(Err(Status::deadline_exceeded(slow).into())));
            }
        }
        let frame = match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
            None => return Poll::Ready(None),
        };
        let mut data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => return Poll::Ready(Some(Ok(frame))),
        };
        let known = self.message.length.is_some();
        let taken = self.message.take(&data);
        let announced = self.message.length.filter(|_| !known);
        let reserved = announced.map_or(Ok(()), |length| self.reserve(length));
        let message = match reserved.and(taken) {
            Ok(message) => message,
            Err(refused) => return Poll::Ready(Some(Err(refused.into()))),
        };
        data.truncate(message.end);
        if !self.message.compressed() && !message.is_empty() {
            let part = data.slice(message);
            self.parts.push(part);
        }
        if self.message.whole() && !self.message.compressed() {
            let parts = std::mem::take(&mut self.parts);
            self.wire.put(parts);
        }
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.message.whole() || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.message.left {
            Some(left) => SizeHint::with_exact(left as u64),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_flight(limit: usize) -> InFlight {
        InFlight { used: AtomicUsize::new(0), limit, stats: Arc::new(Stats::default()) }
    }

    #[test]
    fn the_in_flight_budget_takes_what_fits_and_refuses_the_rest() {
        let budget = in_flight(100);
        assert!(budget.charge(60) && budget.charge(40));
        assert!(!budget.charge(1), "full");
        assert_eq!(budget.used.load(Ordering::Relaxed), 100, "a refused charge takes nothing");
        budget.used.fetch_sub(50, Ordering::Relaxed);
        assert!(!budget.charge(51) && budget.charge(50));
    }

    #[test]
    fn unavailable_carries_a_retry_info_of_one_second_where_clients_look() {
        let status = retry_later("the buffer is full");
        assert_eq!((status.code(), status.message()), (Code::Unavailable, "the buffer is full"));
        let details = spans::Status::decode(status.details()).unwrap();
        assert_eq!((details.code, details.message.as_str()), (14, "the buffer is full"));
        assert_eq!(details.details.len(), 1);
        assert_eq!(details.details[0].type_url, RETRY_INFO);
        let info = RetryInfo::decode(&details.details[0].value[..]).unwrap();
        assert_eq!(info.retry_delay, Some(ProtoDuration { seconds: 1, nanos: 0 }));
        let beside = status.metadata().get_bin(RETRY_INFO_KEY).unwrap().to_bytes().unwrap();
        assert_eq!(RetryInfo::decode(beside).unwrap(), info);
        // On the wire: grpc-status 14 and both headers.
        let http = status.into_http::<tonic::body::Body>();
        assert_eq!(http.headers()["grpc-status"], "14");
        assert!(http.headers().contains_key("grpc-status-details-bin"));
        assert!(http.headers().contains_key(RETRY_INFO_KEY));
    }

    #[test]
    fn tonics_internal_is_restated_as_invalid_argument_and_counted() {
        let stats = Stats::default();
        let unreadable = Status::internal("failed to decode Protobuf message").into_http();
        let answer = restate(unreadable, &stats);
        let status = Status::from_header_map(answer.headers()).unwrap();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("failed to decode Protobuf message"), "{}", status.message());
        assert_eq!(Stats::read(&stats.spans_malformed), 1);
        // Other answers pass as they are.
        for status in [Status::resource_exhausted("big"), retry_later("full"), Status::unimplemented("no")] {
            let code = status.code();
            let answer = restate(status.into_http(), &stats);
            assert_eq!(Status::from_header_map(answer.headers()).unwrap().code(), code);
        }
        let ok = Response::new(tonic::body::Body::default());
        assert!(restate(ok, &stats).headers().is_empty());
        assert_eq!(Stats::read(&stats.spans_malformed), 1);
    }

    #[test]
    fn the_wire_bytes_are_the_message_joined_and_taken_once() {
        let wire = Wire::default();
        assert_eq!(wire.take(), None);
        wire.put(vec![Bytes::from_static(b"one frame")]);
        assert_eq!(wire.take().as_deref(), Some(&b"one frame"[..]));
        assert_eq!(wire.take(), None);
        wire.put(vec![Bytes::from_static(b"in "), Bytes::from_static(b"three "), Bytes::from_static(b"frames")]);
        assert_eq!(wire.take().as_deref(), Some(&b"in three frames"[..]));
    }

    #[test]
    fn the_message_length_is_read_from_its_prefix_across_frames() {
        // 12 bytes of message, the prefix split 2 + 3, then the message in two parts and 4 more
        // bytes the message does not hold.
        let mut m = UnaryFraming::default();
        assert_eq!(m.take(&[0, 0]).unwrap(), 2..2);
        assert!(!m.whole());
        assert_eq!(m.length, None);
        assert_eq!(m.take(&[0, 0, 12, b'a', b'b']).unwrap(), 3..5);
        assert_eq!((m.length, m.left, m.compressed()), (Some(12), Some(10), false));
        assert_eq!(m.take(b"cdefgh").unwrap(), 0..6);
        assert_eq!(m.take(b"ijkl-xyz").unwrap(), 0..4, "only the message's bytes are passed on");
        assert!(m.whole());
        // An empty message is whole with its prefix.
        let mut empty = UnaryFraming::default();
        assert_eq!(empty.take(&[0, 0, 0, 0, 0]).unwrap(), 5..5);
        assert!(empty.whole());
        // A prefix announcing more than 5 MB is refused at once: RESOURCE_EXHAUSTED.
        let mut big = UnaryFraming::default();
        let over = (MAX_MESSAGE as u32 + 1).to_be_bytes();
        let e = big.take(&[1, over[0], over[1], over[2], over[3], 0x1f]).unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted);
        assert!(e.message().contains("5000001 bytes"), "{}", e.message());
        let mut limit = UnaryFraming::default();
        let at = (MAX_MESSAGE as u32).to_be_bytes();
        assert_eq!(limit.take(&[1, at[0], at[1], at[2], at[3]]).unwrap(), 5..5, "exactly 5 MB is taken");
        assert!(limit.compressed());
    }
}
