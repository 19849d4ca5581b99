//! The Telemetry API listener: Lambda POSTs batches of platform events here, and the runner
//! learns from `platform.runtimeDone` that an invocation is over. It answers 200 to every
//! request, even one it cannot parse: an error would only make Lambda retry the same batch.

use super::events::{parse_telemetry, PlatformEvent};
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Lambda sends up to twice `maxBytes` (256 KiB) plus metadata; anything far larger is not ours.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// Events waiting for the runner; one per invocation at most, so a small queue suffices.
pub(crate) const QUEUE: usize = 64;

/// Accepts connections until `shutdown`, sending each useful event to `events`.
pub(crate) async fn run(listener: TcpListener, events: mpsc::Sender<PlatformEvent>, shutdown: CancellationToken) {
    crate::serve::run(listener, Arc::new(Listener { events }), shutdown).await
}

struct Listener {
    events: mpsc::Sender<PlatformEvent>,
}

impl crate::serve::Handler for Listener {
    type Body = Full<Bytes>;
    const NAME: &'static str = "telemetry listener";

    fn handle(
        &self,
        request: hyper::Request<Incoming>,
    ) -> impl std::future::Future<Output = Response<Full<Bytes>>> + Send {
        handle(request, &self.events)
    }
}

async fn handle(req: hyper::Request<Incoming>, events: &mpsc::Sender<PlatformEvent>) -> Response<Full<Bytes>> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => match parse_telemetry(&body.to_bytes()) {
            Ok(parsed) => {
                for event in parsed {
                    debug!("Telemetry API: {event:?}");
                    if events.try_send(event).is_err() {
                        warn!("Telemetry API events are not being read; one was dropped");
                    }
                }
            }
            Err(e) => debug!("Telemetry API sent a batch that is not a JSON array: {e}"),
        },
        Err(e) => debug!("Telemetry API batch not read: {e}"),
    }
    let mut response = Response::new(Full::new(Bytes::from_static(b"OK")));
    *response.status_mut() = StatusCode::OK;
    response
}
