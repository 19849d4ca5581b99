//! Logs a user can query: the JSON format's fields, fatal configuration errors as JSON, the
//! warning for a mistyped variable. Against the real binary; Lambda's log settings are in
//! `lambda.rs`.

use crate::daemon::{against, run_to_exit, segment, Daemon, ACCESS_KEY, SECRET_KEY};
use crate::fake_xray::{Credentials, FakeXray, Fault};
use serde_json::Value;
use std::time::Duration;

const REGION: (&str, &str) = ("AWS_REGION", "us-east-1");
const TYPO: &str = "XRAY_DAEMON_UDP_ADRESS is set, but the daemon has no such variable; did you mean \
    XRAY_DAEMON_UDP_ADDRESS?";

/// Every line parsed as one JSON object; a line that is not one fails the test.
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}\n{text}")))
        .inspect(|v| assert!(v.is_object() && v["message"].is_string() && v["level"].is_string(), "{v}"))
        .collect()
}

/// The first line whose message starts with `start`, waiting for it up to 10 s.
async fn line(d: &Daemon, start: &str) -> Value {
    let found = d.wait_for_log(|l| l.contains(&format!(r#""message":"{start}"#)), Duration::from_secs(10)).await;
    let found = found.unwrap_or_else(|| panic!("no line starting {start:?}; log:\n{}", d.log_text()));
    serde_json::from_str(&found).unwrap()
}

#[tokio::test]
async fn json_lines_carry_the_fields_users_query() {
    let xray = FakeXray::start(Credentials::new(ACCESS_KEY, SECRET_KEY));
    let mut d = against(&xray)
        .env("XRAY_DAEMON_LOG_FORMAT", "json")
        .env("XRAY_DAEMON_UDP_ADRESS", "127.0.0.1:3000")
        .spawn()
        .await;

    let typo = line(&d, "XRAY_DAEMON_UDP_ADRESS").await;
    assert_eq!(typo["message"], TYPO);
    assert_eq!((typo["level"].as_str(), typo["closest"].as_str()), (Some("WARN"), Some("XRAY_DAEMON_UDP_ADDRESS")));

    // A batch sent.
    d.send_doc(&segment(1));
    let sent = line(&d, "Successfully sent batch of 1 segments").await;
    assert_eq!((sent["count"].as_u64(), sent["api"].as_str()), (Some(1), Some("put_trace_segments")), "{sent}");
    let secs = sent["duration_s"].as_f64().unwrap_or_else(|| panic!("no duration_s: {sent}"));
    assert!(secs > 0.0 && secs < 10.0, "{sent}");

    // A backend failure, retried.
    xray.push_fault(Fault::Throttle);
    d.send_doc(&segment(2));
    let failed = line(&d, "Sending segment batch failed with").await;
    assert_eq!(failed["level"], "WARN");
    assert_eq!(
        (failed["api"].as_str(), failed["status"].as_u64()),
        (Some("put_trace_segments"), Some(429)),
        "{failed}"
    );
    assert_eq!(failed["error_code"], "ThrottlingException", "{failed}");

    // A segment X-Ray refuses for good: its trace id and the reason (once the retry is done).
    let sent_twice = std::time::Instant::now() + Duration::from_secs(10);
    while d.logs().iter().filter(|l| l.contains("Successfully sent batch")).count() < 2 {
        assert!(std::time::Instant::now() < sent_twice, "{}", d.log_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let doc = segment(3);
    let id = format!("{:016x}", 0x1000_0000_0000_0003u64);
    xray.push_fault(Fault::UnprocessedIds { ids: vec![id.clone()], code: "InvalidTraceId" });
    d.send_doc(&doc);
    let refused = line(&d, "Unprocessed trace").await;
    assert_eq!(refused["trace_id"], format!("1-6b070b35-{:024x}", 3), "{refused}");
    assert_eq!(
        (refused["segment_id"].as_str(), refused["reason"].as_str()),
        (Some(id.as_str()), Some("InvalidTraceId"))
    );

    // A datagram rejected at ingest.
    d.send(b"no newline here");
    let rejected = line(&d, "Missing header or segment: rejected a datagram").await;
    assert_eq!((rejected["reason"].as_str(), rejected["size"].as_u64()), (Some("missing_newline"), Some(15)));

    let (status, _) = d.terminate(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0));
    let lines = json_lines(&d.log_text());
    let last = lines.iter().find(|l| l["message"].as_str().unwrap().starts_with("Shutdown finished")).unwrap();
    assert_eq!(last["segments_sent"].as_u64(), Some(2), "{last}");
}

/// The text format stays upstream's: the message alone, whatever fields the event carries.
#[tokio::test]
async fn text_lines_are_the_message_alone() {
    let xray = FakeXray::start(Credentials::new(ACCESS_KEY, SECRET_KEY));
    let d = against(&xray).env("XRAY_DAEMON_UDP_ADRESS", "127.0.0.1:3000").spawn().await;
    d.send_doc(&segment(1));
    d.send(b"no newline here");
    let sent = d.wait_for_log(|l| l.contains("Successfully sent batch"), Duration::from_secs(10)).await.unwrap();
    let (_, rest) = sent.split_once(' ').unwrap();
    let (words, secs) = rest.rsplit_once(" (").unwrap();
    assert_eq!(words, "[Info] Successfully sent batch of 1 segments");
    assert!(secs.len() == "0.012 seconds)".len() && secs.ends_with(" seconds)"), "{sent}");
    let log = d.log_text();
    assert!(log.contains(&format!("[Warn] {TYPO}\n")), "{log}");
    assert!(log.contains("[Warn] Missing header or segment: rejected a datagram of 15 bytes\n"), "{log}");
    assert!(!log.contains("count=") && !log.contains("reason="), "{log}");
}

/// A configuration that cannot be used: exit 1 and, in JSON, one object per problem on stderr,
/// each naming its setting; the warning for a mistyped variable comes first.
#[test]
fn fatal_configuration_errors_are_json_lines_when_json_is_chosen() {
    let env = [
        REGION,
        ("XRAY_DAEMON_LOG_FORMAT", "json"),
        ("XRAY_DAEMON_CONCURRENCY", "0"),
        ("XRAY_DAEMON_UDP_ADRESS", "127.0.0.1:3000"),
    ];
    let (code, out, err) = run_to_exit(&["-b", "127.0.0.1", "-l", "loud"], &env);
    assert_eq!(code, 1, "{err}");
    assert_eq!(out, "");
    let lines = json_lines(&err);
    assert_eq!(lines.len(), 4, "{err}");
    assert_eq!((lines[0]["level"].as_str(), lines[0]["message"].as_str()), (Some("WARN"), Some(TYPO)));
    for (line, setting) in lines[1..].iter().zip(["-b/--bind", "XRAY_DAEMON_CONCURRENCY", "-l/--log-level"]) {
        assert_eq!((line["level"].as_str(), line["setting"].as_str()), (Some("ERROR"), Some(setting)), "{line}");
        assert!(line["message"].as_str().unwrap().starts_with("invalid value "), "{line}");
        assert_eq!(line["problems"], 3);
    }
    // One problem: one line. A file that cannot be opened: JSON too.
    let (code, _, err) = run_to_exit(&["-m", "2"], &[REGION, ("XRAY_DAEMON_LOG_FORMAT", "JSON")]);
    let lines = json_lines(&err);
    assert_eq!((code, lines.len()), (1, 1), "{err}");
    assert!(lines[0]["message"].as_str().unwrap().starts_with("Not enough Buffers Memory Allocated"));
    let (code, _, err) = run_to_exit(&["-f", "/nonexistent/dir/x.log"], &[REGION, ("XRAY_DAEMON_LOG_FORMAT", "json")]);
    let lines = json_lines(&err);
    assert_eq!((code, lines.len()), (1, 1), "{err}");
    assert!(lines[0]["message"].as_str().unwrap().starts_with("cannot open the log file /nonexistent/dir/x.log"));
    // The text format is as it was: one line, then the problems under it.
    let (code, _, err) = run_to_exit(&["-b", "127.0.0.1"], &[REGION, ("XRAY_DAEMON_CONCURRENCY", "0")]);
    assert_eq!(code, 1);
    assert!(err.lines().next().unwrap().ends_with("[Error] 2 problems with the configuration:"), "{err}");
    assert_eq!(err.lines().count(), 3, "{err}");
}
