//! `/metrics` through the real binary: failed X-Ray calls land on their API and class, and
//! datagrams the kernel dropped are counted.

use crate::daemon::{self, http, padded_segment, segment};
use crate::fake_xray::{Credentials, FakeXray, Fault, Op};
use crate::proxy::metric;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

const APIS: [&str; 4] = ["put_trace_segments", "put_telemetry_records", "proxy", "otlp"];
const CLASSES: [&str; 6] = ["throttled", "auth", "client", "server", "timeout", "connection"];

fn fake() -> FakeXray {
    FakeXray::start(Credentials::new(daemon::ACCESS_KEY, daemon::SECRET_KEY))
}

fn backend_errors(m: &str, api: &str, class: &str) -> f64 {
    metric(m, &format!("xray_daemon_backend_errors_total{{api=\"{api}\",class=\"{class}\"}}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_calls_are_counted_by_api_and_class() {
    let fake = fake();
    fake.push_faults([Fault::Status(403, "AccessDeniedException"), Fault::Throttle]);
    fake.push_fault_for(Op::GetSamplingRules, Fault::Throttle);
    let d = daemon::against(&fake).spawn().await;

    // Every pair is there from the start, at 0, so that rates and alerts on them have data.
    let m = d.metrics().await;
    for api in APIS {
        for class in CLASSES {
            assert_eq!(backend_errors(&m, api, class), 0.0, "{api} {class}");
        }
    }

    d.send_doc(&segment(0));
    // A 403, then a 429, then accepted: both failures are retried.
    assert_eq!(fake.wait_for_documents(1, Duration::from_secs(20)).await.len(), 1);
    let (status, _, body) = http(d.tcp(), "POST", "/GetSamplingRules", &[], "{}").await;
    assert_eq!(status, 429, "X-Ray's answer is passed on: {body}");

    let m = d.metrics().await;
    assert_eq!(backend_errors(&m, "put_trace_segments", "auth"), 1.0, "{m}");
    assert_eq!(backend_errors(&m, "put_trace_segments", "throttled"), 1.0, "{m}");
    assert_eq!(backend_errors(&m, "proxy", "throttled"), 1.0, "{m}");
    let total: f64 = APIS.iter().flat_map(|a| CLASSES.map(|c| backend_errors(&m, a, c))).sum();
    assert_eq!(total, 3.0, "nothing else was counted:\n{m}");
    assert_eq!(metric(&m, "xray_daemon_backend_retries_total{api=\"put_trace_segments\"}"), 2.0);
    assert_eq!(metric(&m, "xray_daemon_backend_request_duration_seconds_count{api=\"put_trace_segments\"}"), 3.0);
    assert_eq!(metric(&m, "xray_daemon_segments_sent_total"), 1.0);
}

/// With a receive buffer of a few datagrams, a burst overflows it: the kernel drops what does
/// not fit, and every datagram sent is either read or counted as dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_the_kernel_dropped_are_counted() {
    let fake = fake();
    let d = daemon::against(&fake).env("XRAY_DAEMON_RECEIVE_BUFFER_KB", "1").spawn().await;
    let burst = 2_000;
    for i in 0..burst {
        d.send_doc(&padded_segment(i, 1_000));
    }
    // The kernel hands its count over with the next datagram read after the drops.
    let mut sent = burst;
    let deadline = Instant::now() + WAIT;
    let m = loop {
        d.send_doc(&padded_segment(sent, 1_000));
        sent += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let m = d.metrics().await;
        let read = metric(&m, "xray_daemon_udp_datagrams_received_total");
        let dropped = metric(&m, "xray_daemon_udp_kernel_drops_total");
        if read + dropped == sent as f64 || Instant::now() > deadline {
            break m;
        }
    };
    let (read, dropped) =
        (metric(&m, "xray_daemon_udp_datagrams_received_total"), metric(&m, "xray_daemon_udp_kernel_drops_total"));
    assert_eq!(read + dropped, sent as f64, "every datagram read or counted as dropped:\n{m}");
    assert!(dropped > 0.0 && read > 0.0, "read {read}, dropped {dropped}");
    // The daemon's own rejections are not kernel drops: every datagram read was a segment.
    assert_eq!(metric(&m, "xray_daemon_segments_received_total"), read);
}
