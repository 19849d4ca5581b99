//! The host clock 15 minutes off X-Ray's: X-Ray refuses signatures more than 5 minutes from its
//! clock with 403 `InvalidSignatureException` and its `Date`, and the daemon learns the offset
//! from that answer and signs the retry and what follows with X-Ray's time, on each of its three
//! signed paths: uploads (the SDK), spans (the OTLP sink) and the TCP port's proxy.

use crate::daemon::{against, http, segment, Daemon};
use crate::daemon::{ACCESS_KEY, SECRET_KEY};
use crate::fake_otlp::{t1s_datagram, FakeOtlp};
use crate::fake_xray::{Credentials, FakeXray, Op};
use crate::proxy::metric;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);
/// 15 minutes, ahead and behind.
const OFFSETS: [i64; 2] = [15 * 60, -15 * 60];

fn creds() -> Credentials {
    Credentials::new(ACCESS_KEY, SECRET_KEY)
}

/// The daemon said once that the host clock is off, by about `offset` seconds.
fn assert_warned_once(d: &Daemon, offset: i64) {
    let warnings: Vec<String> = d.logs().into_iter().filter(|l| l.contains("host clock is off")).collect();
    assert_eq!(warnings.len(), 1, "one warning expected; log:\n{}", d.log_text());
    let line = &warnings[0];
    assert!(line.contains("[Warn]"), "{line}");
    let secs: i64 = line
        .split("off by ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number of seconds in {line}"));
    assert!((secs - offset.abs()).abs() <= 2, "off by {secs} s, expected {offset}: {line}");
    let side = if offset > 0 { "behind X-Ray's clock" } else { "ahead of X-Ray's clock" };
    assert!(line.contains(side), "{line}");
}

/// X-Ray refused at least one request as expired or not yet current.
fn assert_refused_for_time(reasons: &[String]) {
    assert!(
        reasons.iter().any(|r| r.starts_with("Signature expired") || r.starts_with("Signature not yet current")),
        "no request was refused for its time: {reasons:?}"
    );
}

#[tokio::test]
async fn segments_are_delivered_with_the_host_clock_15_minutes_off() {
    for offset in OFFSETS {
        let fake = FakeXray::start(creds());
        fake.set_clock_offset(offset);
        let d = against(&fake).spawn().await;
        let docs: Vec<String> = (0..50).map(segment).collect();
        for doc in &docs {
            d.send_doc(doc);
        }
        let got = fake.wait_for_documents(docs.len(), WAIT).await;
        assert_eq!(got, docs, "offset {offset}; log:\n{}", d.log_text());
        let reasons: Vec<String> = fake.requests().into_iter().filter_map(|r| r.signature.err()).collect();
        assert_refused_for_time(&reasons);
        // After the one refusal, every request is signed with X-Ray's time.
        assert_eq!(reasons.len(), 1, "offset {offset}: {reasons:?}");
        d.wait_for_log(|l| l.contains("Successfully sent batch"), WAIT).await.expect("a batch sent");
        let text = d.metrics().await;
        assert_eq!(metric(&text, "xray_daemon_segments_sent_total"), 50.0);
        assert_warned_once(&d, offset);
    }
}

#[tokio::test]
async fn spans_are_delivered_with_the_host_clock_15_minutes_off() {
    for offset in OFFSETS {
        let xray = FakeXray::start(creds());
        let otlp = FakeOtlp::start_signed(creds(), offset).await;
        let d = against(&xray)
            .env("XRAY_DAEMON_OTLP_ENDPOINT", &otlp.url)
            .env("XRAY_DAEMON_SPAN_UPLOAD", "otlp")
            .spawn()
            .await;
        for first in (1..=100).step_by(10) {
            d.send(&t1s_datagram(first, 10));
        }
        let deadline = Instant::now() + WAIT;
        let mut ids: Vec<u64> = Vec::new();
        while ids.len() < 100 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            ids = otlp
                .received()
                .iter()
                .flat_map(|r| &r.span_ids)
                .map(|id| u64::from_be_bytes(id[..].try_into().unwrap()))
                .collect();
        }
        ids.sort_unstable();
        assert_eq!(ids, (1..=100).collect::<Vec<_>>(), "offset {offset}; log:\n{}", d.log_text());
        let reasons = otlp.rejected();
        assert_refused_for_time(&reasons);
        assert_eq!(reasons.len(), 1, "offset {offset}: {reasons:?}");
        assert_warned_once(&d, offset);
    }
}

#[tokio::test]
async fn the_proxy_retries_a_sampling_call_with_x_rays_time() {
    for offset in OFFSETS {
        let fake = FakeXray::start(creds());
        fake.set_clock_offset(offset);
        // Nothing else is sent, so the proxy's call is the first to meet the skew.
        let d = against(&fake).spawn().await;
        let (status, _, body) = http(d.tcp(), "POST", "/GetSamplingRules", &[], "{}").await;
        assert_eq!(status, 200, "offset {offset}: {body}; log:\n{}", d.log_text());
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(answer["SamplingRuleRecords"].is_array(), "{body}");
        let seen = fake.sampling_requests();
        assert_eq!(seen.len(), 2, "the refused call and its retry: {seen:?}");
        assert_refused_for_time(&[seen[0].signature.clone().unwrap_err()]);
        assert_eq!((seen[0].status, seen[1].status), (403, 200));
        // Later calls are signed right the first time.
        let (status, _, _) = http(d.tcp(), "POST", "/GetSamplingRules", &[], "{}").await;
        assert_eq!(status, 200);
        assert_eq!(fake.requests().iter().filter(|r| r.op() == Some(Op::GetSamplingRules)).count(), 3);
        assert_warned_once(&d, offset);
    }
}
