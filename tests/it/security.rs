//! Security: secrets never reach a log, segment bodies are logged only at debug level and
//! truncated, and the TCP proxy cannot be turned into a way to use the daemon's credentials
//! for anything but X-Ray at the configured endpoint. Slow clients (slowloris) cannot take the
//! TCP port from the health checks, nor memory without bound.

use crate::daemon::{self, http, http_raw, segment};
use crate::fake_creds::{FakeCreds, AUTH_TOKEN};
use crate::fake_xray::{FakeXray, Fault, Op};
use crate::reliability::{rotating_keys, with_container_credentials};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// The whole daemon at `-l dev` through every path: uploads (accepted, 503, 403 after a key
/// rotation, throttled and invalid unprocessed entries, a 400), rejected datagrams, the proxy
/// (forwarded, 404, 413, 502 on a hang), credential refresh, telemetry, and a shutdown that
/// leaves segments undelivered. No key, secret, session token or container authorization token
/// appears in the output, and segment bodies appear only as truncated previews of rejected
/// datagrams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_log_at_dev_level_on_any_path() {
    let (one, two) = rotating_keys();
    let fake = FakeXray::start(one.clone());
    let creds = FakeCreds::start(one.clone(), Duration::from_secs(15)).await;
    let mut d = with_container_credentials(&fake, &creds)
        .arg("-l")
        .arg("dev")
        .env("XRAY_DAEMON_TELEMETRY", "true")
        .env("XRAY_DAEMON_PROXY_MAX_BODY_KB", "1")
        .env("XRAY_DAEMON_PROXY_TIMEOUT", "1s")
        .env("XRAY_DAEMON_SHUTDOWN_TIMEOUT", "1s")
        .spawn()
        .await;

    // Uploads: accepted, then every kind of failure.
    const SECRET_BODY: &str = "BODY-MARKER-never-logged";
    d.send_doc(&segment(0).replace("svc-0", SECRET_BODY));
    fake.wait_for_documents(1, WAIT).await;
    fake.push_faults([
        Fault::Status(503, "ServiceUnavailableException"),
        Fault::Throttle,
        Fault::Unprocessed { count: 1, code: "ThrottledException" },
        Fault::Unprocessed { count: 1, code: "InvalidTraceId" },
    ]);
    for i in 1..4 {
        d.send_doc(&segment(i));
    }
    fake.wait_for_documents(3, WAIT).await;
    fake.push_faults([Fault::Status(400, "InvalidRequestException")]);
    d.send_doc(&segment(10));
    d.wait_for_log(|l| l.contains("not retryable"), WAIT).await.expect("the 400 is logged");

    // Rejected datagrams: the preview is truncated at debug level.
    let long = format!("PREVIEW-START{}PREVIEW-END", "y".repeat(2000));
    d.send(long.as_bytes());
    d.send(format!("garbage\n{long}").as_bytes());
    d.wait_for_log(|l| l.contains("Rejected datagram (invalid_header)"), WAIT).await.expect("debug preview");

    // The proxy: forwarded, not allowed, too large, upstream hang.
    let (status, _, _) =
        http(d.tcp(), "POST", "/GetSamplingRules", &[("Authorization", "AWS4-HMAC-SHA256 client-supplied")], "{}")
            .await;
    assert_eq!(status, 200);
    assert_eq!(http(d.tcp(), "GET", "/latest/meta-data/iam/security-credentials/", &[], "").await.0, 404);
    assert_eq!(http(d.tcp(), "POST", "/SamplingTargets", &[], &"z".repeat(2048)).await.0, 413);
    fake.set_mode_for(Op::GetSamplingRules, Some(Fault::Hang));
    assert_eq!(http(d.tcp(), "POST", "/GetSamplingRules", &[], "{}").await.0, 502);

    // Rotation: the old keys are refused (403) until the daemon fetches the new ones.
    creds.rotate(two.clone());
    fake.set_credentials(two.clone());
    d.send_doc(&segment(20));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !fake.accepted_documents().contains(&segment(20)) {
        assert!(std::time::Instant::now() < deadline, "not delivered after the rotation:\n{}", d.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Shutdown with an upload hanging: the deadline passes with segments undelivered.
    fake.set_mode(Fault::Hang);
    d.send_doc(&segment(30));
    fake.wait_for_requests("/TraceSegments", fake.put_calls() + 1, WAIT).await;
    let (status, _) = d.terminate(WAIT).await;
    assert!(status.success());

    let log = d.log_text();
    // About 35 lines: every path above logs (the rotation itself needs no refusal: the signer
    // fetches the short-lived keys again before they expire).
    assert!(log.lines().count() > 30, "a dev log has plenty to say:\n{log}");
    assert!(log.contains("[Debug]") || log.contains("[Trace]"), "dev level is on");
    assert!(d.logs().iter().any(|l| l.contains("segments were not delivered")));
    for (name, secret) in [
        ("first access key", one.access_key.as_str()),
        ("first secret key", one.secret_key.as_str()),
        ("first session token", one.session_token.as_deref().unwrap()),
        ("second access key", two.access_key.as_str()),
        ("second secret key", two.secret_key.as_str()),
        ("second session token", two.session_token.as_deref().unwrap()),
        ("container authorization token", AUTH_TOKEN),
    ] {
        // Any 12-character piece of the secret, so a truncated or split copy is found too.
        let pieces = secret.as_bytes().windows(12.min(secret.len())).map(|w| std::str::from_utf8(w).unwrap());
        for piece in pieces {
            assert!(!log.contains(piece), "the {name} ({piece}) is in the log:\n{log}");
        }
    }
    // Bodies: never the accepted document; a rejected one only as a truncated preview.
    assert!(!log.contains(SECRET_BODY), "an accepted segment body is in the log");
    assert!(log.contains("PREVIEW-START"), "debug level shows a preview of rejected datagrams");
    assert!(!log.contains("PREVIEW-END"), "previews are truncated");
    assert!(log.lines().all(|l| l.len() < 2048), "no line carries a whole datagram");
}

/// At the default level, no part of a rejected datagram's payload is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_are_not_logged_at_the_default_level() {
    let fake = FakeXray::start(crate::fake_xray::Credentials::new(daemon::ACCESS_KEY, daemon::SECRET_KEY));
    let mut d = daemon::against(&fake).spawn().await;
    d.send(b"PAYLOAD-MARKER without a header");
    d.send(b"{\"format\":\"xml\"}\nPAYLOAD-MARKER-2");
    d.send_doc(&segment(1).replace("svc-1", "PAYLOAD-MARKER-3"));
    fake.wait_for_documents(1, WAIT).await;
    d.terminate(WAIT).await;
    assert!(d.logs().iter().any(|l| l.contains("[Warn] Missing header or segment: rejected a datagram of 31 bytes")));
    assert_eq!(d.summary().rejected, 2);
    assert!(!d.log_text().contains("PAYLOAD-MARKER"), "{}", d.log_text());
    assert!(!d.log_text().contains("[Debug]"));
}

/// Neither the Host header nor an absolute-form URI can send a signed request elsewhere, even
/// with `XRAY_DAEMON_PROXY_ALLOW_ALL` on; encoded and dotted paths are not X-Ray paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_cannot_be_redirected_even_when_it_forwards_everything() {
    let fake = FakeXray::start(crate::fake_xray::Credentials::new(daemon::ACCESS_KEY, daemon::SECRET_KEY));
    // A second server stands for "anywhere else": it must never see a request.
    let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = elsewhere.local_addr().unwrap();
    let strict = daemon::against(&fake).spawn().await;
    for path in
        ["/GetSamplingRules/../latest/meta-data", "/%47etSamplingRules", "/GetSamplingRules/", "//GetSamplingRules"]
    {
        let (status, _, body) = http(strict.tcp(), "POST", path, &[], "{}").await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    assert!(fake.requests().is_empty());

    let open = daemon::against(&fake).env("XRAY_DAEMON_PROXY_ALLOW_ALL", "true").spawn().await;
    let attempts = [
        format!("POST http://{other}/GetSamplingRules HTTP/1.1\r\nHost: {other}\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{{}}"),
        format!("POST /GetSamplingRules HTTP/1.1\r\nHost: {other}\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{{}}"),
        format!("POST //{other}/GetSamplingRules HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{{}}"),
        format!("GET http://user@{other}/x HTTP/1.1\r\nHost: {other}\r\nConnection: close\r\n\r\n"),
    ];
    for raw in &attempts {
        http_raw(open.tcp(), raw.as_bytes()).await;
    }
    // CONNECT cannot open a tunnel either.
    let connect = format!("CONNECT {other} HTTP/1.1\r\nHost: {other}\r\n\r\n");
    let (status, _, _) = http_raw(open.tcp(), connect.as_bytes()).await;
    assert_ne!(status, 200, "no tunnel");
    let nobody = tokio::time::timeout(Duration::from_millis(300), elsewhere.accept()).await;
    assert!(nobody.is_err(), "a request reached another host");
    let seen = fake.requests();
    assert!(seen.len() >= 2, "the plain attempts were forwarded, to X-Ray: {seen:?}");
    for r in &seen {
        assert_eq!(r.header("host"), Some(fake.addr().to_string().as_str()), "{r:?}");
    }
    assert_eq!(seen[0].signature, Ok(()));
}

/// Header values cannot smuggle extra headers to X-Ray: CR, LF and NUL in a value are refused
/// before anything is forwarded, and only the rebuilt header set reaches X-Ray.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_injection_is_refused_and_nothing_extra_reaches_xray() {
    let fake = FakeXray::start(crate::fake_xray::Credentials::new(daemon::ACCESS_KEY, daemon::SECRET_KEY));
    let d = daemon::against(&fake).spawn().await;
    let bad_values: [&[u8]; 4] = [
        b"application/json\rX-Injected: 1",
        b"application/json\0X-Injected: 1",
        b"application/json\r\n X-Injected: folded",
        b"a\r\r\nX-Injected: 1",
    ];
    for value in bad_values {
        let mut raw =
            b"POST /GetSamplingRules HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\nContent-Type: "
                .to_vec();
        raw.extend_from_slice(value);
        raw.extend_from_slice(b"\r\n\r\n{}");
        let (status, _, _) = http_raw(d.tcp(), &raw).await;
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(value));
    }
    assert!(fake.requests().is_empty(), "nothing was forwarded: {:?}", fake.requests());
    // Legal but odd values are forwarded as one opaque value; nothing else is copied.
    let (status, _, _) = http(
        d.tcp(),
        "POST",
        "/GetSamplingRules",
        &[
            ("Content-Type", "application/json; x=%0d%0aX-Injected:%201"),
            ("X-Injected", "1"),
            ("X-Amz-Security-Token", "forged"),
        ],
        "{}",
    )
    .await;
    assert_eq!(status, 200);
    let seen = fake.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("content-type"), Some("application/json; x=%0d%0aX-Injected:%201"));
    for r in seen {
        assert_eq!(r.header("x-injected"), None);
        let names: Vec<&str> = r.headers.iter().map(|(k, _)| k.as_str()).collect();
        for name in &names {
            assert!(
                [
                    "host",
                    "content-type",
                    "content-length",
                    "authorization",
                    "x-amz-date",
                    "x-amz-content-sha256",
                    "user-agent"
                ]
                .contains(name),
                "{name} reached X-Ray: {names:?}"
            );
        }
    }
}

/// Slow clients on the TCP port: 300 connections that each send one byte of a request head a
/// second, against a limit of 200 connections. `/health` answers within 2 s every time while
/// they trickle (the oldest trickling connections are closed to make room), the daemon's RSS
/// grows by less than 8 MiB, and each slow connection is closed by the daemon by the header
/// timeout (10 s, the default of `XRAY_DAEMON_PROXY_CLIENT_TIMEOUT`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_cannot_take_the_tcp_port_from_health_checks() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Instant;
    const SLOW: usize = 300;
    const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    let fake = FakeXray::start(daemon_creds());
    let d = daemon::against(&fake).env("XRAY_DAEMON_MAX_CONNECTIONS", "200").spawn().await;
    let tcp = d.tcp();
    assert_eq!(http(tcp, "GET", "/health", &[], "").await.0, 200);
    let rss_before = d.status_kb("VmRSS");

    let start = Instant::now();
    let (connected, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let (connected, closed) = (connected.clone(), closed.clone());
        slow.push(tokio::spawn(async move {
            // Closed at the limit before its connect returned: a reset.
            if let Ok(stream) = tokio::net::TcpStream::connect(tcp).await {
                connected.fetch_add(1, Ordering::SeqCst);
                // A head that would take a minute to send.
                let head = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: {}\r\n\r\n", "a".repeat(60));
                trickle_until_closed(stream, head.into_bytes()).await;
            }
            closed.fetch_add(1, Ordering::SeqCst);
            start.elapsed()
        }));
    }
    // The health checks come after the flood of connections (a connection that has not sent its
    // head yet may be shed by a flood of newer ones, as any would).
    while connected.load(Ordering::SeqCst) + closed.load(Ordering::SeqCst) < SLOW {
        assert!(start.elapsed() < Duration::from_secs(5), "the slow clients did not connect");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut rss_peak = rss_before;
    let mut probes = 0;
    while start.elapsed() < HEADER_TIMEOUT - Duration::from_secs(1) {
        let t0 = Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(2), http(tcp, "GET", "/health", &[], "")).await;
        let status = answer.unwrap_or_else(|_| panic!("/health took over 2 s at {:?}", start.elapsed())).0;
        assert_eq!(status, 200, "at {:?}", start.elapsed());
        assert!(t0.elapsed() < Duration::from_secs(2));
        probes += 1;
        rss_peak = rss_peak.max(d.status_kb("VmRSS"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(probes >= 10, "{probes} probes");
    // At least the 100 over the limit were closed early, to make room.
    let early = closed.load(Ordering::SeqCst);
    assert!(early >= SLOW - 200, "{early} slow connections closed before the header timeout");
    d.wait_for_log(|l| l.contains("proxy http server has 200 connections open, its limit"), WAIT)
        .await
        .unwrap_or_else(|| panic!("no line about the limit; log:\n{}", d.log_text()));

    // Every slow connection is closed by the daemon, at the latest by the header timeout.
    for task in slow {
        let at = tokio::time::timeout(HEADER_TIMEOUT + Duration::from_secs(10), task)
            .await
            .expect("the daemon closes a slow connection")
            .expect("slow client task");
        assert!(at < HEADER_TIMEOUT + Duration::from_secs(5), "closed only at {at:?}");
    }
    // Each connection holds little more than hyper's 8 KiB read buffer, its task and the
    // socket: about 21 KiB measured (4.3 MiB for 200). 40 KiB each leaves room for the
    // allocator's slack; at the default limit of 512 that is 20 MiB at most.
    let grown = rss_peak.saturating_sub(rss_before);
    eprintln!("figures: RSS {rss_before} KiB before, peak {rss_peak} KiB with the slow clients ({grown} KiB more)");
    assert!(grown < 200 * 40, "RSS grew by {grown} KiB");
    assert_eq!(http(tcp, "GET", "/health", &[], "").await.0, 200);
}

/// Slow bodies: 100 connections send a whole request head and then its body a byte a second,
/// against a limit of 100. Each is in the proxy's handler, reading the body; once they have been
/// there over a second, the one there longest is closed to make room for a new connection, so
/// `/health` answers within 2 s every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_cannot_take_the_tcp_port_from_health_checks() {
    use std::time::Instant;
    use tokio::io::AsyncWriteExt;
    const SLOW: usize = 100;
    let fake = FakeXray::start(daemon_creds());
    let d = daemon::against(&fake).env("XRAY_DAEMON_MAX_CONNECTIONS", SLOW.to_string()).spawn().await;
    let tcp = d.tcp();
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let mut stream = tokio::net::TcpStream::connect(tcp).await.expect("connect");
        stream
            .write_all(b"POST /GetSamplingRules HTTP/1.1\r\nHost: x\r\nContent-Length: 60\r\n\r\n")
            .await
            .expect("head");
        slow.push(tokio::spawn(trickle_until_closed(stream, vec![b'{'; 60])));
    }
    // Every place is taken by a request whose body trickles in.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let start = Instant::now();
    let mut probes = 0;
    while start.elapsed() < Duration::from_secs(6) {
        let answer = tokio::time::timeout(Duration::from_secs(2), http(tcp, "GET", "/health", &[], "")).await;
        let status = answer.unwrap_or_else(|_| panic!("/health took over 2 s at {:?}", start.elapsed())).0;
        assert_eq!(status, 200, "at {:?}", start.elapsed());
        probes += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(probes >= 10, "{probes} probes");
    d.wait_for_log(|l| l.contains("proxy http server has 100 connections open, its limit"), WAIT)
        .await
        .unwrap_or_else(|| panic!("no line about the limit; log:\n{}", d.log_text()));
    for task in slow {
        task.abort();
    }
}

/// Sends `bytes` one a second on `stream`, then nothing, until the daemon closes the connection
/// (EOF or a reset).
async fn trickle_until_closed(stream: tokio::net::TcpStream, bytes: Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut read, mut write) = stream.into_split();
    let trickle = async move {
        for byte in bytes {
            if write.write_all(&[byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        std::future::pending::<()>().await;
    };
    let mut sink = Vec::new();
    tokio::select! {
        _ = read.read_to_end(&mut sink) => {}
        _ = trickle => {}
    }
}

fn daemon_creds() -> crate::fake_xray::Credentials {
    crate::fake_xray::Credentials::new(daemon::ACCESS_KEY, daemon::SECRET_KEY)
}
