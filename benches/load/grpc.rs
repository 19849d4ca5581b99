//! The load generator's OTLP/gRPC client: `TraceService/Export` calls at a fixed rate on one
//! HTTP/2 connection, as an SDK's batch span processor sends them, written with the `h2` crate
//! (gRPC's 5-byte message prefix by hand: the bench measures the daemon, not a gRPC library).
//!
//! A call carries [`PER_REQUEST`] spans: ten of [`gen::SpanDatagram`]'s requests of 20 ADOT-shaped
//! spans, joined (protobuf merges them into one request), with the ids `id(step, 0..)` like the
//! datagrams'. Up to [`IN_FLIGHT`] calls are outstanding at once. A call answered other than OK
//! is counted in `errors` and not sent again, so what it carried shows as lost.

use crate::gen::{self, id, Sent, SpanDatagram};
use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Spans an export call carries.
pub const PER_REQUEST: usize = 10 * gen::SPANS_PER_DATAGRAM;
/// Calls outstanding at once, at most.
const IN_FLIGHT: usize = 8;
const EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Sends `rate × duration` spans to the gRPC listener at `target`, spread evenly, and waits for
/// every answer.
pub fn run(target: SocketAddr, step: u64, rate: u64, duration: Duration) -> Sent {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let cpu0 = gen::thread_cpu();
    let mut sent = runtime.block_on(send(target, step, rate, duration));
    sent.cpu = gen::thread_cpu().saturating_sub(cpu0);
    sent
}

async fn send(target: SocketAddr, step: u64, rate: u64, duration: Duration) -> Sent {
    let tcp = tokio::net::TcpStream::connect(target).await.expect("connect to the gRPC listener");
    let _ = tcp.set_nodelay(true);
    let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let per = PER_REQUEST as u64;
    let total = (rate as f64 * duration.as_secs_f64() / per as f64).round() as u64;
    let call_rate = rate as f64 / per as f64;
    // One template's copies, as the datagrams are: the same spans but for their ids.
    let mut parts = vec![SpanDatagram::new(); PER_REQUEST / gen::SPANS_PER_DATAGRAM];
    let mut calls = tokio::task::JoinSet::new();
    let mut errors = 0;
    let start = Instant::now();
    for seq in 0..total {
        tokio::time::sleep_until((start + Duration::from_secs_f64(seq as f64 / call_rate)).into()).await;
        let mut message = Vec::new();
        for (k, part) in parts.iter_mut().enumerate() {
            part.set_proto_ids(id(step, seq * per + (k * gen::SPANS_PER_DATAGRAM) as u64));
            message.extend_from_slice(part.proto());
        }
        let mut body = Vec::with_capacity(5 + message.len());
        body.push(0);
        body.extend_from_slice(&(message.len() as u32).to_be_bytes());
        body.extend_from_slice(&message);
        while calls.len() >= IN_FLIGHT {
            errors += u64::from(!calls.join_next().await.and_then(Result::ok).unwrap_or(false));
        }
        calls.spawn(export(client.clone(), target, Bytes::from(body)));
    }
    while let Some(ok) = calls.join_next().await {
        errors += u64::from(!ok.unwrap_or(false));
    }
    Sent { datagrams: total, items: total * per, errors, elapsed: start.elapsed(), cpu: Duration::ZERO }
}

/// One call; whether it was answered OK.
async fn export(client: h2::client::SendRequest<Bytes>, target: SocketAddr, body: Bytes) -> bool {
    let request = http::Request::post(format!("http://{target}{EXPORT}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("a request head");
    let fail = |what: &str, e: h2::Error| {
        eprintln!("  an export call failed: {what}: {e}");
        false
    };
    let mut client = match client.ready().await {
        Ok(client) => client,
        Err(e) => return fail("no stream", e),
    };
    let (response, mut stream) = match client.send_request(request, false) {
        Ok(sent) => sent,
        Err(e) => return fail("request head", e),
    };
    if let Err(e) = stream.send_data(body, true) {
        return fail("request body", e);
    }
    let response = match response.await {
        Ok(response) => response,
        Err(e) => return fail("no answer", e),
    };
    let (parts, mut body) = response.into_parts();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.ok().flatten().unwrap_or_default();
    let status = trailers.get("grpc-status").or_else(|| parts.headers.get("grpc-status"));
    if status.is_none_or(|s| s != "0") {
        let message = trailers.get("grpc-message").or_else(|| parts.headers.get("grpc-message"));
        eprintln!("  an export call was answered {status:?} {message:?}");
        return false;
    }
    true
}
