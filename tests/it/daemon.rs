//! Runs the real `xray-daemon` binary as a separate process for tests: bound to port 0 on
//! loopback, pointed at a fake X-Ray endpoint, with its log lines captured.

use crate::fake_xray::FakeXray;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "AKIDDAEMONTEST0001";
pub const SECRET_KEY: &str = "daemon-test-secret-key/0123456789abcdef";

/// The binary under test: `XRAY_TEST_BIN` if set (`make soak` points it at the release build),
/// else the debug build Cargo made for this test binary.
pub fn binary() -> String {
    std::env::var("XRAY_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_xray-daemon").to_owned())
}

/// Environment that isolates the daemon from the machine's AWS setup.
pub fn clean_env(cmd: &mut Command) {
    cmd.env_clear()
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    // The allocator's own settings pass through, for memory experiments (`MIMALLOC_VERBOSE=1`, …).
    cmd.envs(std::env::vars().filter(|(k, _)| k.starts_with("MIMALLOC_")));
}

pub struct Builder {
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Builder {
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }
    pub fn env(mut self, k: &str, v: impl Into<String>) -> Self {
        self.env.retain(|(key, _)| key != k);
        self.env.push((k.to_owned(), v.into()));
        self
    }

    /// Spans go to `url`, a fake OTLP endpoint: the one place the tests that read spans there say
    /// how the daemon uploads them.
    pub fn spans_to(self, url: &str) -> Self {
        self.env("XRAY_DAEMON_OTLP_ENDPOINT", url).env("XRAY_DAEMON_SPAN_UPLOAD", "otlp")
    }

    /// Starts the daemon and waits for its `Listening on UDP` line.
    pub async fn spawn(self) -> Daemon {
        let mut daemon = self.start();
        daemon.wait_until_listening().await;
        daemon
    }

    /// Starts the daemon without waiting for anything.
    pub fn start(self) -> Daemon {
        self.start_as(&binary())
    }

    /// Starts `program` (the binary under another name, say) without waiting for anything.
    pub fn start_as(self, program: &str) -> Daemon {
        let mut cmd = Command::new(program);
        clean_env(&mut cmd);
        cmd.args(&self.args).envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        let mut child = cmd.spawn().expect("spawn xray-daemon");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let open_streams = Arc::new(AtomicUsize::new(2));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            let open_streams = open_streams.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if std::env::var_os("XRAY_TEST_ECHO").is_some() {
                        eprintln!("daemon| {line}");
                    }
                    lines.lock().unwrap().push(line);
                }
                open_streams.fetch_sub(1, Ordering::SeqCst);
            });
        }
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        Daemon { child, udp: "127.0.0.1:0".parse().unwrap(), tcp: None, lines, open_streams, sender }
    }
}

impl Daemon {
    /// Waits for the `Listening on UDP` line and takes the addresses from the log.
    pub async fn wait_until_listening(&mut self) {
        let daemon = self;
        let line = daemon
            .wait_for_log(|l| l.contains("Listening on UDP "), Duration::from_secs(15))
            .await
            .unwrap_or_else(|| panic!("daemon did not start; log:\n{}", daemon.log_text()));
        let addr = line.split("Listening on UDP ").nth(1).unwrap();
        let addr = addr.split(|c: char| c == '"' || c.is_whitespace()).next().unwrap();
        daemon.udp = addr.parse().expect("address in Listening line");
        // Logged before the Listening line whenever the TCP port is served.
        if let Some(line) = daemon.logs().into_iter().find(|l| l.contains("Starting proxy http server on ")) {
            let addr = line.split("Starting proxy http server on ").nth(1).unwrap();
            let addr = addr.split(|c: char| c == '"' || c.is_whitespace()).next().unwrap();
            daemon.tcp = Some(addr.parse().expect("address in proxy line"));
        }
        if daemon.udp.is_ipv6() {
            daemon.sender = UdpSocket::bind("[::1]:0").unwrap();
        }
    }
}

pub struct Daemon {
    child: Child,
    pub udp: SocketAddr,
    /// The TCP port (proxy, health, metrics), when it is served.
    pub tcp: Option<SocketAddr>,
    lines: Arc<Mutex<Vec<String>>>,
    /// stdout and stderr readers still running: each stops at the end of its stream.
    open_streams: Arc<AtomicUsize>,
    sender: UdpSocket,
}

/// A daemon with only the given arguments and the test keys (no region, no endpoint).
pub fn bare(args: &[&str]) -> Builder {
    Builder { args: args.iter().map(|a| a.to_string()).collect(), env: vec![] }
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("XRAY_DAEMON_TELEMETRY", "false")
}

/// A daemon on loopback port 0, signing with the test keys, uploading to `fake`, telemetry off.
pub fn against(fake: &FakeXray) -> Builder {
    Builder { args: vec!["-b".into(), "127.0.0.1:0".into(), "-t".into(), "127.0.0.1:0".into()], env: vec![] }
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", "us-east-1")
        .env("XRAY_DAEMON_ENDPOINT", fake.endpoint())
        .env("XRAY_DAEMON_TELEMETRY", "false")
}

pub const HEADER: &str = r#"{"format":"json","version":1}"#;

impl Daemon {
    pub fn tcp(&self) -> SocketAddr {
        self.tcp.unwrap_or_else(|| panic!("no proxy line; log:\n{}", self.log_text()))
    }

    /// The address of the listener a `Starting <what> server on ADDRESS` line names (`OTLP/gRPC`,
    /// `OTLP/HTTP`), logged before the Listening line.
    pub fn server(&self, what: &str) -> SocketAddr {
        let prefix = format!("Starting {what} server on ");
        let line = self.logs().into_iter().find(|l| l.contains(&prefix));
        let line = line.unwrap_or_else(|| panic!("no {what} server; log:\n{}", self.log_text()));
        let addr = line.split(&prefix).nth(1).unwrap();
        addr.split(|c: char| c == '"' || c.is_whitespace()).next().unwrap().parse().expect("an address")
    }

    /// The `/metrics` page of the TCP port (asserting it answered 200).
    pub async fn metrics(&self) -> String {
        let (status, _, body) = http(self.tcp(), "GET", "/metrics", &[], "").await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub fn send(&self, datagram: &[u8]) {
        self.sender.send_to(datagram, self.udp).expect("send datagram");
    }

    pub fn send_doc(&self, doc: &str) {
        self.send(format!("{HEADER}\n{doc}").as_bytes());
    }

    pub fn logs(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn log_text(&self) -> String {
        self.logs().join("\n")
    }

    pub async fn wait_for_log(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| pred(l)) {
                return Some(l.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU seconds (user + system) the process has used so far, from `/proc/<pid>/stat`.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("read /proc/<pid>/stat");
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        ticks as f64 / hz
    }

    /// A `/proc/<pid>/status` field in KiB, e.g. `VmHWM` (peak RSS) or `VmRSS`.
    pub fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("{field} missing in /proc/<pid>/status"))
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Waits for the process to exit; `None` if it did not within `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Let the readers collect the last lines: the pipes end when the process has gone
                // (bounded, in case a child of the daemon still holds them).
                let drained = Instant::now() + Duration::from_secs(5);
                while self.open_streams.load(Ordering::SeqCst) > 0 && Instant::now() < drained {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGTERM, then the exit status and how long the exit took.
    pub async fn terminate(&mut self, timeout: Duration) -> (ExitStatus, Duration) {
        let t0 = Instant::now();
        self.signal(libc::SIGTERM);
        let status = self
            .wait_exit(timeout)
            .await
            .unwrap_or_else(|| panic!("daemon did not exit within {timeout:?}; log:\n{}", self.log_text()));
        (status, t0.elapsed())
    }

    /// The numbers from the final `Shutdown finished` line.
    pub fn summary(&self) -> Summary {
        let line = self
            .logs()
            .into_iter()
            .find(|l| l.contains("Shutdown finished"))
            .unwrap_or_else(|| panic!("no summary line; log:\n{}", self.log_text()));
        let num = |key: &str| -> u64 {
            let rest = &line[line.find(key).unwrap_or_else(|| panic!("{key} missing in {line}")) + key.len()..];
            rest.trim_start().split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
        };
        Summary {
            received: num("received:"),
            sent: num("sent:"),
            rejected: num("rejected:"),
            spillover: num("spilled over:"),
            undelivered: num("not delivered:"),
            otlp: num("OTLP datagrams:"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub received: u64,
    pub sent: u64,
    pub rejected: u64,
    pub spillover: u64,
    pub undelivered: u64,
    pub otlp: u64,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A segment document with a unique id, in the Python SDK's style (spaces after separators).
pub fn segment(i: usize) -> String {
    format!(
        r#"{{"id": "{:016x}", "name": "svc-{i}", "start_time": 1795623733.951929, "trace_id": "1-6b070b35-{:024x}", "end_time": 1795623733.9629257}}"#,
        0x1000_0000_0000_0000u64 + i as u64,
        i
    )
}

/// A compact (Node-style) segment padded to about `size` bytes.
pub fn padded_segment(i: usize, size: usize) -> String {
    let base = format!(
        r#"{{"trace_id":"1-6b070b79-{:024x}","id":"{:016x}","start_time":1795623800.611,"end_time":1795623800.613,"name":"pad","annotations":{{"pad":""}}}}"#,
        i,
        0x2000_0000_0000_0000u64 + i as u64
    );
    let pad = size.saturating_sub(base.len());
    base.replace(r#""pad":"""#, &format!(r#""pad":"{}""#, "x".repeat(pad)))
}

/// Runs the binary to completion (for invocations that exit at once).
pub fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(binary());
    clean_env(&mut cmd);
    cmd.args(args).envs(env.iter().copied());
    let out = cmd.output().expect("run xray-daemon");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One raw HTTP/1.1 exchange: writes `request` as is, reads until the server closes.
/// Returns the status code, the lower-cased headers and the body.
pub async fn http_raw(addr: SocketAddr, request: &[u8]) -> (u16, Vec<(String, String)>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect to the TCP port");
    stream.write_all(request).await.expect("write request");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// A request with `Connection: close` and the given extra header lines.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra_headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in extra_headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    http_raw(addr, req.as_bytes()).await
}
