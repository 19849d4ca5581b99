//! Configuration through the real binary: upstream's config file, region lookup (ECS metadata
//! file, a fake instance-metadata service), the log file, assume-role against a fake STS, and
//! an outbound proxy.

use crate::daemon::{self, run_to_exit, segment};
use crate::fake_xray::{Credentials, FakeXray};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(10);

fn tmp(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xd-it-{}-{}", std::process::id(), name.replace('.', "-")));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

type Handler = Arc<dyn Fn(http::Method, String, http::HeaderMap, Bytes) -> Option<(u16, String)> + Send + Sync>;

/// A tiny HTTP server on loopback; `None` from the handler means "never answer".
async fn serve(handler: Handler) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let handler = handler.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let path = parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
                        match handler(parts.method, path, parts.headers, body) {
                            Some((status, text)) => {
                                let mut r = http::Response::new(Full::new(Bytes::from(text)));
                                *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                                Ok::<_, Infallible>(r)
                            }
                            None => {
                                tokio::time::sleep(Duration::from_secs(30)).await;
                                Ok(http::Response::new(Full::new(Bytes::new())))
                            }
                        }
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

#[derive(Clone, Copy, PartialEq)]
enum Imds {
    V2,
    TokenForbidden,
    TokenHangs,
}

async fn fake_imds(mode: Imds) -> SocketAddr {
    serve(Arc::new(move |method, path, headers, _| {
        let doc = r#"{"region":"eu-central-1","instanceId":"i-0123456789abcdef0","accountId":"123456789012"}"#;
        match (method.as_str(), path.as_str()) {
            ("PUT", "/latest/api/token") => match mode {
                Imds::V2 => Some((200, "tok-123".into())),
                Imds::TokenForbidden => Some((403, "".into())),
                Imds::TokenHangs => None,
            },
            ("GET", "/latest/dynamic/instance-identity/document") => {
                let token = headers.get("x-aws-ec2-metadata-token").and_then(|v| v.to_str().ok());
                match token {
                    Some("tok-123") | None => Some((200, doc.into())),
                    Some(_) => Some((401, "".into())),
                }
            }
            _ => Some((404, "".into())),
        }
    }))
    .await
}

async fn region_with_imds(mode: Imds) -> (Option<String>, Duration, String) {
    let imds = fake_imds(mode).await;
    let fake = FakeXray::start(Credentials::new(daemon::ACCESS_KEY, daemon::SECRET_KEY));
    let t0 = Instant::now();
    let d = daemon::bare(&["-b", "127.0.0.1:0", "-t", "127.0.0.1:0"])
        .env("XRAY_DAEMON_ENDPOINT", fake.endpoint())
        .env("AWS_EC2_METADATA_DISABLED", "false")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", format!("http://{imds}"))
        .spawn()
        .await;
    let took = t0.elapsed();
    let region = d.logs().iter().find_map(|l| l.split("Using region: ").nth(1).map(str::to_owned));
    (region, took, d.log_text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_comes_from_imdsv2_and_falls_back_to_v1_within_the_budget() {
    let (region, _, log) = region_with_imds(Imds::V2).await;
    assert_eq!(region.as_deref(), Some("eu-central-1"), "{log}");
    let (region, _, log) = region_with_imds(Imds::TokenForbidden).await;
    assert_eq!(region.as_deref(), Some("eu-central-1"), "IMDSv1 fallback: {log}");
    // A token request that never answers (the hop-limit case) costs half the budget, then v1.
    let (region, took, log) = region_with_imds(Imds::TokenHangs).await;
    assert_eq!(region.as_deref(), Some("eu-central-1"), "{log}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn without_any_region_the_daemon_exits_1_and_says_what_it_tried() {
    // IMDSv2 required and its token unreachable in time: no silent 401, a clear message.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let blocked = rt.block_on(async {
        // An instance that requires IMDSv2, seen from behind a hop limit of 1.
        serve(Arc::new(|method, _, _, _| if method == http::Method::PUT { None } else { Some((401, String::new())) }))
            .await
    });
    let t0 = Instant::now();
    let (code, out, err) = run_to_exit(
        &["-b", "127.0.0.1:0", "-t", "127.0.0.1:0"],
        &[
            ("AWS_EC2_METADATA_DISABLED", "false"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &format!("http://{blocked}")),
            ("AWS_ACCESS_KEY_ID", "a"),
            ("AWS_SECRET_ACCESS_KEY", "b"),
        ],
    );
    let all = format!("{out}{err}");
    assert_eq!(code, 1, "{all}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert!(all.contains("[Error] Cannot fetch region variable"), "{all}");
    assert!(all.contains("-n/--region") && all.contains("AWS_REGION"), "names every way to set it: {all}");
    assert!(all.contains("hop limit") && all.contains("IMDSv1 identity document: HTTP 401"), "{all}");
    drop(rt);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_comes_from_the_ecs_metadata_file() {
    let fake = FakeXray::start(Credentials::new(daemon::ACCESS_KEY, daemon::SECRET_KEY));
    let file = tmp("ecs.json", r#"{"Cluster":"c","TaskARN":"arn:aws:ecs:ap-southeast-2:012345678910:task/2b88376d"}"#);
    let d = daemon::bare(&["-b", "127.0.0.1:0", "-t", "127.0.0.1:0"])
        .env("XRAY_DAEMON_ENDPOINT", fake.endpoint())
        .env("ECS_ENABLE_CONTAINER_METADATA", "true")
        .env("ECS_CONTAINER_METADATA_FILE", file.display().to_string())
        .spawn()
        .await;
    assert!(d.logs().iter().any(|l| l.ends_with("[Info] Using region: ap-southeast-2")), "{}", d.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_config_file_configures_the_daemon() {
    let fake = FakeXray::start(Credentials::new(daemon::ACCESS_KEY, daemon::SECRET_KEY));
    let log = std::env::temp_dir().join(format!("xd-it-{}-cfg.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let cfg = tmp(
        "cfg.yaml",
        &format!(
            "TotalBufferSizeMB: 8\nConcurrency: 2\nRegion: \"eu-north-1\"\nEndpoint: \"{}\"\nSocket:\n  UDPAddress: \"127.0.0.1:0\"\n  TCPAddress: \"127.0.0.1:0\"\nLogging:\n  LogRotation: true\n  LogLevel: \"debug\"\n  LogPath: \"{}\"\nLocalMode: true\nVersion: 2\n",
            fake.endpoint(),
            log.display()
        ),
    );
    let mut cmd = std::process::Command::new(daemon::binary());
    daemon::clean_env(&mut cmd);
    cmd.args(["-c", &cfg.display().to_string()]).envs([
        ("AWS_ACCESS_KEY_ID", daemon::ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", daemon::SECRET_KEY),
        ("XRAY_DAEMON_TELEMETRY", "false"),
    ]);
    let mut child = cmd.stdout(std::process::Stdio::null()).spawn().unwrap();
    // The log goes to the file: find the address there.
    let deadline = Instant::now() + WAIT;
    let udp: SocketAddr = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(a) = text.lines().find_map(|l| l.split("Listening on UDP ").nth(1)) {
            break a.trim().parse().unwrap();
        }
        assert!(Instant::now() < deadline, "no Listening line in {}:\n{text}", log.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(format!("{}\n{}", daemon::HEADER, segment(3)).as_bytes(), udp).unwrap();
    assert_eq!(fake.wait_for_documents(1, WAIT).await, vec![segment(3)]);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap();
    for line in [
        "[Info] Using buffer memory limit of 8 MB (TotalBufferSizeMB in",
        "[Info] Using region: eu-north-1",
        "[Debug] Fetch region eu-north-1 from Region in",
        "[Info] Using config file: ",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    // Upstream's strict checks for a file given with -c, and exit 1.
    let bad = tmp("bad.yaml", "Version: 2\nMemoryLimit: 3\n");
    let (code, _, err) = run_to_exit(&["-c", &bad.display().to_string()], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("[Error] MemoryLimit flag is not supported. Use X-Ray Daemon Config Migration Script"),
        "{err}"
    );
    let (code, _, err) = run_to_exit(&["-c", "/nonexistent/cfg.yaml"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("[Error] Error occur when using config flag: open /nonexistent/cfg.yaml"), "{err}");
    let typed = tmp("typed.yaml", "Version: 2\nConcurrency: lots\n");
    let (code, _, err) = run_to_exit(&["-c", &typed.display().to_string()], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("Concurrency") && err.contains("line 2"), "{err}");
}

/// A fake STS answering AssumeRole with fixed keys; records the form bodies it got.
async fn fake_sts(seen: Arc<Mutex<Vec<String>>>) -> SocketAddr {
    serve(Arc::new(move |_, _, _, body| {
        seen.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
        Some((200, r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult><Credentials><AccessKeyId>ASIAASSUMEDKEY000001</AccessKeyId><SecretAccessKey>assumed-secret</SecretAccessKey><SessionToken>assumed-session-token</SessionToken><Expiration>2035-01-01T00:00:00Z</Expiration></Credentials><AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/xray/xray-daemon</Arn><AssumedRoleId>AROAEXAMPLE:xray-daemon</AssumedRoleId></AssumedRoleUser></AssumeRoleResult><ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata></AssumeRoleResponse>"#.to_owned()))
    }))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_and_the_proxy_are_signed_with_the_assumed_role() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sts = fake_sts(seen.clone()).await;
    // Only the assumed credentials are accepted.
    let fake = FakeXray::start(
        Credentials::new("ASIAASSUMEDKEY000001", "assumed-secret").with_session_token("assumed-session-token"),
    );
    let d = daemon::against(&fake)
        .arg("-r")
        .arg("arn:aws:iam::123456789012:role/xray")
        .env("AWS_ENDPOINT_URL_STS", format!("http://{sts}"))
        .spawn()
        .await;
    d.send_doc(&segment(9));
    assert_eq!(fake.wait_for_documents(1, WAIT).await, vec![segment(9)], "{}", d.log_text());
    let (status, _, _) = daemon::http(d.tcp(), "POST", "/GetSamplingRules", &[], "{}").await;
    assert_eq!(status, 200);
    assert_eq!(fake.sampling_requests()[0].header("x-amz-security-token"), Some("assumed-session-token"));
    let form = seen.lock().unwrap().join("\n");
    assert!(form.contains("Action=AssumeRole") && form.contains("RoleSessionName=xray-daemon"), "{form}");
    assert!(form.contains("RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fxray"), "{form}");
}

/// A forward proxy on loopback: CONNECT tunnels and absolute-form requests, both recorded.
async fn outbound_proxy(seen: Arc<Mutex<Vec<String>>>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 16384 {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let first = text.lines().next().unwrap_or("").to_owned();
                seen.lock().unwrap().push(first.clone());
                let mut parts = first.split_whitespace();
                let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let authority = if method == "CONNECT" {
                    target.to_owned()
                } else {
                    target.trim_start_matches("http://").split('/').next().unwrap_or("").to_owned()
                };
                if !authority.starts_with("127.0.0.1:") {
                    return; // loopback only
                }
                let Ok(mut upstream) = tokio::net::TcpStream::connect(&authority).await else { return };
                if method == "CONNECT" {
                    let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await;
                } else {
                    let _ = upstream.write_all(&head).await;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_go_through_the_outbound_proxy_unless_no_proxy_matches() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let proxy = outbound_proxy(seen.clone()).await;
    let fake = FakeXray::start(Credentials::new(daemon::ACCESS_KEY, daemon::SECRET_KEY));
    let d = daemon::against(&fake).arg("-p").arg(format!("http://{proxy}")).spawn().await;
    d.send_doc(&segment(1));
    assert_eq!(fake.wait_for_documents(1, WAIT).await.len(), 1, "{}", d.log_text());
    let through = seen.lock().unwrap().clone();
    assert!(
        through
            .iter()
            .any(|l| l.contains(&fake.addr().to_string()) && l.contains("TraceSegments") || l.starts_with("CONNECT ")),
        "{through:?}"
    );
    drop(d);

    seen.lock().unwrap().clear();
    let d = daemon::against(&fake).arg("-p").arg(format!("http://{proxy}")).env("NO_PROXY", "127.0.0.1").spawn().await;
    d.send_doc(&segment(2));
    assert_eq!(fake.wait_for_documents(2, WAIT).await.len(), 2, "{}", d.log_text());
    assert!(seen.lock().unwrap().is_empty(), "NO_PROXY bypasses the proxy: {:?}", seen.lock().unwrap());
}

/// TLS on loopback with a self-signed certificate, passing the plain bytes on to `target`.
async fn tls_terminator(target: SocketAddr) -> SocketAddr {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else { return };
                let Ok(mut plain) = tokio::net::TcpStream::connect(target).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_verify_ssl_accepts_a_self_signed_endpoint_and_verification_is_on_by_default() {
    let fake = FakeXray::start(Credentials::new(daemon::ACCESS_KEY, daemon::SECRET_KEY));
    let tls = tls_terminator(fake.addr()).await;
    let endpoint = format!("https://127.0.0.1:{}", tls.port());

    // Default: the self-signed certificate is refused, for uploads and for the proxy.
    let d = daemon::against(&fake).env("XRAY_DAEMON_ENDPOINT", &endpoint).spawn().await;
    d.send_doc(&segment(1));
    d.wait_for_log(|l| l.contains("Sending segment batch failed with:"), WAIT).await.expect("upload refused");
    let (status, _, _) = daemon::http(d.tcp(), "POST", "/GetSamplingRules", &[], "{}").await;
    assert_eq!(status, 502);
    assert!(fake.requests().is_empty(), "nothing got through an unverified TLS connection");
    drop(d);

    // NoVerifySSL from the config file: both go through, with a warning at start.
    let cfg = tmp("noverify.yaml", "Version: 2\nNoVerifySSL: true\n");
    let d = daemon::against(&fake)
        .env("XRAY_DAEMON_ENDPOINT", &endpoint)
        .arg("-c")
        .arg(cfg.display().to_string())
        .spawn()
        .await;
    assert!(d.logs().iter().any(|l| l.contains("[Warn] NoVerifySSL is on")), "{}", d.log_text());
    d.send_doc(&segment(2));
    assert_eq!(fake.wait_for_documents(1, WAIT).await, vec![segment(2)], "{}", d.log_text());
    let (status, _, _) = daemon::http(d.tcp(), "POST", "/GetSamplingRules", &[], "{}").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_calls_also_go_through_the_outbound_proxy() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let proxy = outbound_proxy(seen.clone()).await;
    let fake = FakeXray::start(Credentials::new(daemon::ACCESS_KEY, daemon::SECRET_KEY));
    let d = daemon::against(&fake)
        .env("HTTPS_PROXY", format!("http://{proxy}"))
        .env("HTTP_PROXY", format!("http://{proxy}"))
        .spawn()
        .await;
    let (status, _, _) = daemon::http(d.tcp(), "POST", "/GetSamplingRules", &[], "{}").await;
    assert_eq!(status, 200);
    let through = seen.lock().unwrap().clone();
    assert!(through.iter().any(|l| l.starts_with("CONNECT ") && l.contains(&fake.addr().to_string())), "{through:?}");
    assert_eq!(fake.sampling_requests()[0].signature, Ok(()));
}
