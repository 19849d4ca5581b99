//! Self-tests of the fake X-Ray endpoint: it must be able to make the tests built on it fail.
//! Clients: the real aws-sdk-xray client (retries disabled) and raw HTTP/1.1 requests signed
//! with the aws-sigv4 crate. Loopback only, each test well under 2 s.
//!
//! This file is over 500 lines: one short test per fault, check and recording of the fake,
//! kept together so that what the fake can catch is listed in one place.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_xray::config::Region;
use aws_sdk_xray::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_xray::operation::put_trace_segments::{PutTraceSegmentsError, PutTraceSegmentsOutput};
use aws_sdk_xray::types::{SamplingStatisticsDocument, TelemetryRecord};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use aws_smithy_types::DateTime;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::fake_xray::{sigv4, Credentials, FakeXray, Fault, Op};

const AK: &str = "AKIDFAKEXRAY00000001";
const SK: &str = "fake/Secret+Key0000000000000000000000001";
const TOKEN: &str = "IQoJb3JpZ2luX2VjEFAKE//session+token==";

type PutResult = Result<PutTraceSegmentsOutput, SdkError<PutTraceSegmentsError, HttpResponse>>;

fn creds() -> Credentials {
    Credentials::new(AK, SK)
}

fn client(
    fake: &FakeXray,
    ak: &str,
    sk: &str,
    token: Option<&str>,
    attempt_timeout: Option<Duration>,
) -> aws_sdk_xray::Client {
    let mut config = aws_sdk_xray::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .endpoint_url(fake.endpoint())
        .credentials_provider(aws_credential_types::Credentials::new(ak, sk, token.map(str::to_owned), None, "test"))
        .retry_config(RetryConfig::disabled())
        .http_client(aws_smithy_http_client::Builder::new().build_http());
    if let Some(t) = attempt_timeout {
        config = config.timeout_config(TimeoutConfig::builder().operation_attempt_timeout(t).build());
    }
    aws_sdk_xray::Client::from_conf(config.build())
}

fn good_client(fake: &FakeXray) -> aws_sdk_xray::Client {
    client(fake, AK, SK, None, None)
}

fn doc(id: &str) -> String {
    format!(
        r#"{{"name":"svc","id":"{id}","trace_id":"1-6b070aa8-222222222222222222222222","start_time":1795623592,"end_time":1795623592.5}}"#
    )
}

async fn put(client: &aws_sdk_xray::Client, docs: &[String]) -> PutResult {
    client.put_trace_segments().set_trace_segment_documents(Some(docs.to_vec())).send().await
}

fn status_of<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

// ---- raw HTTP, signed with the aws-sigv4 crate --------------------------------------------

fn sign_with_aws_sigv4(
    fake: &FakeXray,
    path_and_query: &str,
    body: &[u8],
    service: &str,
    time: SystemTime,
) -> Vec<(String, String)> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    let identity = aws_credential_types::Credentials::new(AK, SK, None, None, "raw").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let mut headers =
        vec![("host".to_owned(), fake.addr().to_string()), ("content-type".to_owned(), "application/json".to_owned())];
    let uri = format!("{}{path_and_query}", fake.endpoint());
    let signable = SignableRequest::new(
        "POST",
        uri,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    headers.extend(instructions.headers().map(|(k, v)| (k.to_owned(), v.to_owned())));
    headers
}

/// Write one HTTP/1.1 POST on a fresh connection and read until the server closes it.
async fn post_and_read_all(
    addr: SocketAddr,
    path_and_query: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("POST {path_and_query} HTTP/1.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()));
    stream.write_all(req.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    response
}

/// One HTTP/1.1 request on a fresh connection → (status, JSON body).
async fn raw_post(fake: &FakeXray, path_and_query: &str, headers: &[(String, String)], body: &[u8]) -> (u16, Value) {
    let response = post_and_read_all(fake.addr(), path_and_query, headers, body).await;
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("complete HTTP response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

async fn signed_post(fake: &FakeXray, path_and_query: &str, body: &[u8]) -> (u16, Value) {
    let headers = sign_with_aws_sigv4(fake, path_and_query, body, "xray", SystemTime::now());
    raw_post(fake, path_and_query, &headers, body).await
}

// ---- tests ----------------------------------------------------------------------------------

#[tokio::test]
async fn sdk_put_with_good_signature_records_documents_byte_for_byte() {
    let fake = FakeXray::start(creds());
    let docs = vec![
        doc("1111111111111111"),
        "{\"name\":\"ünïcødé ☃ 🦀\",\"id\":\"2222222222222222\",\"annotations\":{\"q\":\"say \\\"hi\\\"\",\"bs\":\"a\\\\b\"}}".to_owned(),
        "{\n  \"name\": \"pretty \\\"quoted\\\"\",\n\t\"id\": \"3333333333333333\"\n}".to_owned(),
        "not JSON at all: \"quotes\", \\backslash\\, \u{2028}, NUL-free".to_owned(),
    ];
    let out = put(&good_client(&fake), &docs).await.expect("PutTraceSegments accepted");
    assert!(out.unprocessed_trace_segments().is_empty());
    assert_eq!(fake.accepted_documents(), docs);
    assert_eq!(fake.put_calls(), 1);
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!((r.method.as_str(), r.path.as_str(), r.status), ("POST", "/TraceSegments", 200));
    assert_eq!(r.signature, Ok(()));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.documents(), Some(docs));
    assert!(r.header("authorization").unwrap().contains("/us-east-1/xray/aws4_request"));
}

#[tokio::test]
async fn sdk_wrong_secret_or_unknown_key_is_403_and_not_recorded() {
    let fake = FakeXray::start(creds());
    for (ak, sk, reason) in [(AK, "wrong-secret", "signature mismatch"), ("AKIDUNKNOWN", SK, "unknown access key")] {
        let err = put(&client(&fake, ak, sk, None, None), &[doc("1111111111111111")]).await.unwrap_err();
        assert_eq!(status_of(&err), Some(403));
        assert_eq!(err.code(), Some("InvalidSignatureException"));
        let last = fake.requests().pop().unwrap();
        assert_eq!(last.status, 403);
        assert!(last.signature.as_ref().unwrap_err().contains(reason), "{:?}", last.signature);
    }
    assert!(fake.accepted_documents().is_empty());
    assert_eq!(fake.put_calls(), 2);
}

#[tokio::test]
async fn sdk_session_token_must_be_present_equal_and_signed() {
    let fake = FakeXray::start(creds().with_session_token(TOKEN));
    let cases = [(None, "missing x-amz-security-token"), (Some("bogus-token"), "x-amz-security-token does not match")];
    for (token, reason) in cases {
        let err = put(&client(&fake, AK, SK, token, None), &[doc("1111111111111111")]).await.unwrap_err();
        assert_eq!(status_of(&err), Some(403), "token {token:?}");
        let last = fake.requests().pop().unwrap();
        assert!(last.signature.as_ref().unwrap_err().contains(reason), "{:?}", last.signature);
    }
    assert!(fake.accepted_documents().is_empty());

    put(&client(&fake, AK, SK, Some(TOKEN), None), &[doc("1111111111111111")]).await.expect("right token accepted");
    let last = fake.requests().pop().unwrap();
    assert_eq!(last.header("x-amz-security-token"), Some(TOKEN));
    assert_eq!(fake.accepted_documents(), vec![doc("1111111111111111")]);

    // A token sent for credentials that have none is rejected too.
    let plain = FakeXray::start(creds());
    let err = put(&client(&plain, AK, SK, Some(TOKEN), None), &[doc("1")]).await.unwrap_err();
    assert_eq!(status_of(&err), Some(403));
}

#[tokio::test]
async fn credentials_can_be_rotated_and_several_sets_accepted() {
    let fake = FakeXray::start(creds());
    let old = good_client(&fake);
    put(&old, &[doc("0000000000000001")]).await.expect("old creds before rotation");

    fake.set_credentials(Credentials::new("AKIDROTATED", "rotated-secret").with_session_token("tok2"));
    assert_eq!(status_of(&put(&old, &[doc("0000000000000002")]).await.unwrap_err()), Some(403));
    let new = client(&fake, "AKIDROTATED", "rotated-secret", Some("tok2"), None);
    put(&new, &[doc("0000000000000003")]).await.expect("new creds after rotation");

    fake.add_credentials(creds());
    put(&old, &[doc("0000000000000004")]).await.expect("both sets accepted");
    put(&new, &[doc("0000000000000005")]).await.expect("both sets accepted");

    fake.set_accepted_credentials(vec![Credentials::new(AK, "other-secret"), creds()]);
    put(&old, &[doc("0000000000000006")]).await.expect("second set with the same access key");

    let ids: Vec<_> = fake.accepted_documents().iter().map(|d| super::fake_xray::segment_id(d).unwrap()).collect();
    assert_eq!(
        ids,
        ["0000000000000001", "0000000000000003", "0000000000000004", "0000000000000005", "0000000000000006"]
    );
}

#[tokio::test]
async fn scripted_faults_are_consumed_in_order_then_default_applies() {
    let fake = FakeXray::start(creds());
    let c = good_client(&fake);
    fake.push_faults([
        Fault::Status(503, "ServiceUnavailable"),
        Fault::Throttle,
        Fault::Unprocessed { count: 1, code: "InvalidTraceId" },
    ]);
    let docs = [doc("aaaaaaaaaaaaaaaa"), doc("bbbbbbbbbbbbbbbb")];

    let err = put(&c, &docs).await.unwrap_err();
    assert_eq!((status_of(&err), err.code(), err.message()), (Some(503), Some("ServiceUnavailable"), Some("injected")));

    let err = put(&c, &docs).await.unwrap_err();
    assert_eq!(
        (status_of(&err), err.code(), err.message()),
        (Some(429), Some("ThrottlingException"), Some("Rate exceeded"))
    );
    assert!(fake.accepted_documents().is_empty());

    let out = put(&c, &docs).await.expect("200 with unprocessed");
    let unprocessed = out.unprocessed_trace_segments();
    assert_eq!(unprocessed.len(), 1);
    assert_eq!(unprocessed[0].id(), Some("aaaaaaaaaaaaaaaa"));
    assert_eq!(unprocessed[0].error_code(), Some("InvalidTraceId"));
    assert_eq!(unprocessed[0].message(), Some("injected"));
    assert_eq!(fake.accepted_documents(), vec![docs[1].clone()]);
    assert_eq!(fake.pending_faults(), 0);

    let out = put(&c, &docs).await.expect("queue empty: default accept");
    assert!(out.unprocessed_trace_segments().is_empty());
    assert_eq!(fake.accepted_documents().len(), 3);
    assert_eq!(fake.put_calls(), 4);
    let statuses: Vec<_> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 429, 200, 200]);
    assert_eq!(fake.requests()[1].fault, Some(Fault::Throttle));
}

#[tokio::test]
async fn sticky_mode_and_unprocessed_ids() {
    let fake = FakeXray::start(creds());
    let c = good_client(&fake);
    fake.set_mode(Fault::Status(500, "InternalFailure"));
    for _ in 0..2 {
        let err = put(&c, &[doc("1111111111111111")]).await.unwrap_err();
        assert_eq!((status_of(&err), err.code()), (Some(500), Some("InternalFailure")));
    }
    // Queued faults go before the sticky mode.
    fake.push_fault(Fault::Status(400, "InvalidRequestException"));
    assert_eq!(status_of(&put(&c, &[doc("1")]).await.unwrap_err()), Some(400));
    assert_eq!(status_of(&put(&c, &[doc("1")]).await.unwrap_err()), Some(500));
    fake.clear_mode();
    assert!(fake.accepted_documents().is_empty());

    fake.push_fault(Fault::UnprocessedIds { ids: vec!["cccccccccccccccc".into()], code: "ThrottledException" });
    let docs = [doc("aaaaaaaaaaaaaaaa"), doc("cccccccccccccccc"), doc("dddddddddddddddd")];
    let out = put(&c, &docs).await.unwrap();
    let ids: Vec<_> = out.unprocessed_trace_segments().iter().map(|u| (u.id(), u.error_code())).collect();
    assert_eq!(ids, [(Some("cccccccccccccccc"), Some("ThrottledException"))]);
    assert_eq!(fake.accepted_documents(), vec![docs[0].clone(), docs[2].clone()]);

    // Faults for another operation do not touch PutTraceSegments.
    fake.set_mode_for(Op::PutTelemetryRecords, Some(Fault::Throttle));
    put(&c, &[doc("eeeeeeeeeeeeeeee")]).await.unwrap();
    let record = TelemetryRecord::builder().timestamp(DateTime::from_secs(1)).build().unwrap();
    let err = c.put_telemetry_records().telemetry_records(record).send().await.unwrap_err();
    assert_eq!(status_of(&err), Some(429));
    assert!(fake.telemetry().is_empty());
}

#[tokio::test]
async fn delay_longer_than_attempt_timeout_times_out_but_server_still_accepts() {
    let fake = FakeXray::start(creds());
    let c = client(&fake, AK, SK, None, Some(Duration::from_millis(250)));
    fake.push_faults([Fault::Delay(Duration::from_millis(600)), Fault::Delay(Duration::from_millis(50))]);

    let started = Instant::now();
    let err = put(&c, &[doc("1111111111111111")]).await.unwrap_err();
    assert!(matches!(err, SdkError::TimeoutError(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(550));
    assert!(fake.accepted_documents().is_empty(), "not yet: still delaying");
    // The server finishes processing after its delay even though the client gave up.
    assert_eq!(fake.wait_for_documents(1, Duration::from_secs(1)).await, vec![doc("1111111111111111")]);

    put(&c, &[doc("2222222222222222")]).await.expect("short delay within the timeout");
    assert_eq!(fake.accepted_documents().len(), 2);
}

#[tokio::test]
async fn hang_times_out_records_nothing_and_stop_cuts_it() {
    let fake = FakeXray::start(creds());
    let c = client(&fake, AK, SK, None, Some(Duration::from_millis(200)));
    fake.push_fault(Fault::Hang);
    let err = put(&c, &[doc("1111111111111111")]).await.unwrap_err();
    assert!(matches!(err, SdkError::TimeoutError(_)), "{err:?}");
    assert!(fake.accepted_documents().is_empty());
    let reqs = fake.requests();
    assert_eq!((reqs.len(), reqs[0].status, reqs[0].fault.clone()), (1, 0, Some(Fault::Hang)));

    // A raw client waiting on a hanging request sees the connection closed by stop().
    fake.set_mode(Fault::Hang);
    let body = br#"{"TraceSegmentDocuments":["{}"]}"#;
    let headers = sign_with_aws_sigv4(&fake, "/TraceSegments", body, "xray", SystemTime::now());
    let addr = fake.addr();
    let waiting = tokio::spawn(async move { post_and_read_all(addr, "/TraceSegments", &headers, body).await });
    fake.wait_for_requests("/TraceSegments", 2, Duration::from_secs(1)).await;
    let started = Instant::now();
    fake.stop().await;
    let answer =
        tokio::time::timeout(Duration::from_secs(1), waiting).await.expect("connection closed by stop").unwrap();
    assert!(answer.is_empty(), "no response bytes for a hung request");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(fake.accepted_documents().is_empty());
}

#[tokio::test]
async fn stop_refuses_connections_and_restart_recovers_on_the_same_port() {
    let fake = FakeXray::start(creds());
    let c = good_client(&fake);
    put(&c, &[doc("1111111111111111")]).await.unwrap();
    let endpoint = fake.endpoint();

    fake.stop().await;
    assert!(!fake.is_running());
    let refused = std::net::TcpStream::connect(fake.addr()).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let err = put(&c, &[doc("2222222222222222")]).await.unwrap_err();
    assert!(matches!(err, SdkError::DispatchFailure(_)), "{err:?}");

    fake.restart().expect("rebind the same port");
    assert_eq!(fake.endpoint(), endpoint);
    put(&c, &[doc("3333333333333333")]).await.expect("recovered");
    assert_eq!(fake.accepted_documents(), vec![doc("1111111111111111"), doc("3333333333333333")]);
    assert_eq!(fake.put_calls(), 2);
}

#[tokio::test]
async fn disconnect_fault_gives_no_http_response() {
    let fake = FakeXray::start(creds());
    fake.push_fault(Fault::Disconnect);
    let err = put(&good_client(&fake), &[doc("1111111111111111")]).await.unwrap_err();
    assert_eq!(status_of(&err), None, "{err:?}");
    assert!(matches!(err, SdkError::DispatchFailure(_) | SdkError::ResponseError(_)), "{err:?}");
    assert!(fake.accepted_documents().is_empty());
    assert_eq!(fake.requests()[0].status, 0);
}

#[tokio::test]
async fn raw_requests_signed_by_aws_sigv4_and_body_validation() {
    let fake = FakeXray::start(creds());
    let good = br#"{"TraceSegmentDocuments":["{\"id\":\"1\"}"]}"#;

    // Query strings are canonicalised (sorted) like aws-sigv4 does.
    assert_eq!(
        signed_post(&fake, "/TraceSegments?b=2&a=1", good).await,
        (200, serde_json::json!({"UnprocessedTraceSegments": []}))
    );
    assert_eq!(fake.accepted_documents(), vec![r#"{"id":"1"}"#.to_owned()]);

    for bad in [&b"not json"[..], br#"{"Other":[]}"#, br#"{"TraceSegmentDocuments":[1]}"#] {
        let (status, body) = signed_post(&fake, "/TraceSegments", bad).await;
        assert_eq!((status, body["__type"].as_str()), (400, Some("InvalidRequestException")));
    }
    assert_eq!(fake.invalid_requests(), 3);

    let (status, body) = signed_post(&fake, "/NoSuchOperation", b"{}").await;
    assert_eq!((status, body["__type"].as_str()), (404, Some("UnknownOperationException")));
    assert_eq!(fake.requests_to("/NoSuchOperation").len(), 1);

    // Unsigned, tampered body, wrong service, stale date.
    let headers = vec![("host".to_owned(), fake.addr().to_string())];
    let (status, body) = raw_post(&fake, "/TraceSegments", &headers, good).await;
    assert_eq!((status, body["__type"].as_str()), (403, Some("InvalidSignatureException")));
    let signed = sign_with_aws_sigv4(&fake, "/TraceSegments", good, "xray", SystemTime::now());
    assert_eq!(raw_post(&fake, "/TraceSegments", &signed, br#"{"TraceSegmentDocuments":["{}"]}"#).await.0, 403);
    let signed = sign_with_aws_sigv4(&fake, "/TraceSegments", good, "s3", SystemTime::now());
    assert_eq!(raw_post(&fake, "/TraceSegments", &signed, good).await.0, 403);
    let stale = SystemTime::now() - Duration::from_secs(3600);
    let signed = sign_with_aws_sigv4(&fake, "/TraceSegments", good, "xray", stale);
    assert_eq!(raw_post(&fake, "/TraceSegments", &signed, good).await.0, 403);
    fake.set_max_clock_skew(None);
    assert_eq!(raw_post(&fake, "/TraceSegments", &signed, good).await.0, 200);

    let reasons: Vec<String> = fake.requests().into_iter().filter_map(|r| r.signature.err()).collect();
    assert!(reasons[0].contains("missing Authorization"), "{reasons:?}");
    assert!(reasons[1].contains("signature mismatch"), "{reasons:?}");
    assert!(reasons[2].contains("expected \"xray\""), "{reasons:?}");
    assert!(reasons[3].contains("Signature expired"), "{reasons:?}");
    assert_eq!(fake.accepted_documents().len(), 2);
}

#[tokio::test]
async fn sampling_and_telemetry_via_sdk() {
    let fake = FakeXray::start(creds());
    let c = good_client(&fake);

    let rules = c.get_sampling_rules().send().await.unwrap();
    let rule = rules.sampling_rule_records()[0].sampling_rule().unwrap();
    assert_eq!((rule.rule_name(), rule.fixed_rate(), rule.reservoir_size()), (Some("Default"), 1.0, 1));

    let stats = SamplingStatisticsDocument::builder()
        .rule_name("Default")
        .client_id("0123456789abcdef01234567")
        .timestamp(DateTime::from_secs(1_795_623_592))
        .request_count(10)
        .sampled_count(3)
        .borrow_count(1)
        .build()
        .unwrap();
    let targets = c.get_sampling_targets().sampling_statistics_documents(stats).send().await.unwrap();
    assert_eq!(targets.sampling_target_documents()[0].rule_name(), Some("Default"));

    let sampling = fake.sampling_requests();
    assert_eq!(sampling.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(), ["/GetSamplingRules", "/SamplingTargets"]);
    let posted = sampling[1].json().unwrap();
    assert_eq!(posted["SamplingStatisticsDocuments"][0]["RequestCount"], 10);

    let record = TelemetryRecord::builder()
        .timestamp(DateTime::from_secs(1_795_623_701))
        .segments_received_count(17)
        .build()
        .unwrap();
    c.put_telemetry_records().telemetry_records(record).hostname("h").send().await.unwrap();
    let telemetry = fake.telemetry();
    assert_eq!(telemetry.len(), 1);
    assert_eq!(telemetry[0]["TelemetryRecords"][0]["SegmentsReceivedCount"], 17);
    assert_eq!(telemetry[0]["Hostname"], "h");
    assert_eq!(fake.put_calls(), 0);
    assert!(fake.requests().iter().all(|r| r.signature.is_ok() && r.status == 200));
}

#[tokio::test]
async fn waiters_return_early_when_enough_arrive_and_at_timeout_otherwise() {
    let fake = FakeXray::start(creds());
    let c = good_client(&fake);
    let started = Instant::now();
    assert!(fake.wait_for_documents(1, Duration::from_millis(100)).await.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(100));

    let sender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        put(&c, &[doc("1111111111111111"), doc("2222222222222222")]).await.unwrap();
    });
    let started = Instant::now();
    assert_eq!(fake.wait_for_documents(2, Duration::from_secs(5)).await.len(), 2);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(fake.wait_for_requests("/TraceSegments", 1, Duration::from_secs(1)).await.len(), 1);
    sender.await.unwrap();
}

/// A request of the AWS SigV4 test suite, path `/`, host example.amazonaws.com.
struct Vector {
    name: &'static str,
    method: &'static str,
    query: Option<&'static str>,
    headers: &'static [(&'static str, &'static str)],
    body: &'static [u8],
    signed_headers: &'static str,
    signature: &'static str,
}

const VECTORS: &[Vector] = &[
    Vector {
        name: "post-vanilla",
        method: "POST",
        query: None,
        headers: &[],
        body: b"",
        signed_headers: "host;x-amz-date",
        signature: "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
    },
    Vector {
        name: "get-header-value-trim",
        method: "GET",
        query: None,
        headers: &[("my-header1", " value1"), ("my-header2", "\"a   b   c\"")],
        body: b"",
        signed_headers: "host;my-header1;my-header2;x-amz-date",
        signature: "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
    },
    Vector {
        name: "get-vanilla-query-order-key-case",
        method: "GET",
        query: Some("Param2=value2&Param1=value1"),
        headers: &[],
        body: b"",
        signed_headers: "host;x-amz-date",
        signature: "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    },
    Vector {
        name: "post-x-www-form-urlencoded",
        method: "POST",
        query: None,
        headers: &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("content-length", "13"),
            ("x-amz-content-sha256", "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"),
        ],
        body: b"Param1=value1",
        signed_headers: "content-length;content-type;host;x-amz-content-sha256;x-amz-date",
        signature: "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b",
    },
    Vector {
        name: "get-vanilla-with-session-token",
        method: "GET",
        query: None,
        headers: &[("x-amz-security-token", VECTOR_TOKEN)],
        body: b"",
        signed_headers: "host;x-amz-date;x-amz-security-token",
        signature: "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8",
    },
];

const VECTOR_TOKEN: &str = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";

/// The hand-written verifier against vectors of the AWS SigV4 test suite (as shipped in
/// the aws-sigv4 crate's `aws-signing-test-suite/v4`), service "service", 20150830T123600Z.
#[test]
fn hand_written_verifier_matches_aws_test_suite_vectors() {
    let mut creds = Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
    for v in VECTORS {
        creds.session_token =
            v.headers.iter().any(|(k, _)| *k == "x-amz-security-token").then(|| VECTOR_TOKEN.to_owned());
        let check = |signature: &str| {
            let mut headers = vec![("host", "example.amazonaws.com"), ("x-amz-date", "20150830T123600Z")];
            headers.extend_from_slice(v.headers);
            let mut headers: Vec<(String, String)> =
                headers.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
            let auth = format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders={}, Signature={signature}",
                v.signed_headers
            );
            headers.push(("authorization".to_owned(), auth));
            sigv4::verify(v.method, "/", v.query, &headers, v.body, std::slice::from_ref(&creds), "service", None)
        };
        assert_eq!(check(v.signature), Ok(()), "{}", v.name);
        // One changed signature digit must fail.
        let last = if v.signature.ends_with('0') { '1' } else { '0' };
        let bad = format!("{}{last}", &v.signature[..63]);
        assert!(check(&bad).is_err(), "{}", v.name);
    }

    // Canonical URI: the received (encoded) path is encoded once more, as aws-sigv4 does.
    assert_eq!(
        sigv4::canonical_uri("/test/@connections/JBDvjfGEIAMCERw%3D"),
        "/test/%40connections/JBDvjfGEIAMCERw%253D"
    );
    assert_eq!(sigv4::parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
}
