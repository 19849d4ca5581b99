//! One step of the bench: a fresh daemon as a process of its own, fed at one rate and watched,
//! and measured from `/proc` (CPU ticks, resident and anonymous memory) and, where the machine
//! allows, from a memory cgroup of its own.
use crate::{cgroup, gen, sink};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) struct Bench {
    pub(crate) bin: String,
    pub(crate) sink: Arc<sink::Sink>,
    /// Where each step's cgroup goes, or why there is none.
    pub(crate) cgroups: Result<cgroup::Parent, String>,
    pub(crate) step: u64,
    /// Variables set for the daemons started from now on, after `XRAY_BENCH_ENV` (a part sets
    /// and clears them).
    pub(crate) env: Vec<(String, String)>,
    /// `bin` is upstream's Go daemon (the `ab` part's `XRAY_BENCH_UPSTREAM_BIN`): it takes its
    /// endpoint from a config file, cannot bind port 0 and say which port it got, and announces
    /// its UDP address only at debug level.
    pub(crate) upstream: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Row {
    /// Segments/s, or spans/s for [`gen::Load::Spans`].
    pub(crate) rate: u64,
    /// Segments or spans sent, and the datagrams they went in.
    pub(crate) sent: u64,
    pub(crate) datagrams: u64,
    pub(crate) sent_per_sec: f64,
    pub(crate) cpu: f64,
    pub(crate) rss_mb: f64,
    pub(crate) peak_mb: f64,
    pub(crate) anon_mb: f64,
    pub(crate) anon_peak_mb: f64,
    pub(crate) cgroup_mb: Option<f64>,
    pub(crate) cgroup_peak_mb: Option<f64>,
    pub(crate) delivered: u64,
    /// PutTraceSegments calls, and OTLP calls for spans.
    pub(crate) calls: u64,
    pub(crate) kernel_drops: u64,
    pub(crate) spillover: Option<u64>,
    pub(crate) rss_samples: Vec<(f64, f64)>,
    /// Request-body bytes the sink received, and the seconds they were sent over.
    pub(crate) body_bytes: u64,
    /// OTLP request bodies once inflated.
    pub(crate) raw_bytes: u64,
    pub(crate) secs: f64,
    /// The generator's and the sink's CPU over the sending window, % of one core.
    pub(crate) gen_cpu: f64,
    pub(crate) sink_cpu: f64,
}

pub(crate) struct Daemon {
    pub(crate) child: Child,
    pub(crate) udp: SocketAddr,
    /// The OTLP/gRPC listener, for [`gen::Load::GrpcSpans`].
    pub(crate) grpc: Option<SocketAddr>,
    summary: Arc<Mutex<Option<String>>>,
    /// The shutdown summary's spans line, when it received spans.
    spans_summary: Arc<Mutex<Option<String>>>,
    problems: Arc<Mutex<Vec<String>>>,
}

impl Bench {
    pub(crate) fn spawn(&self, load: gen::Load, extra: &[&str], cgroup: Option<&cgroup::Cgroup>) -> Daemon {
        let mut cmd = Command::new(&self.bin);
        if let Some(cgroup) = cgroup {
            cgroup.enter_on_spawn(&mut cmd);
        }
        cmd.env_clear()
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ACCESS_KEY_ID", "AKIDBENCHFAKE0001")
            .env("AWS_SECRET_ACCESS_KEY", "bench-fake-secret-key")
            .env("AWS_REGION", "us-east-1")
            .env("XRAY_DAEMON_ENDPOINT", self.sink.endpoint());
        // Upstream's address is known beforehand: it is given a port that was free a moment ago.
        let upstream_udp = self.upstream.then(|| {
            let udp = std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("a UDP port");
            let tcp = std::net::TcpListener::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("a TCP port");
            let cfg = std::env::temp_dir().join(format!("xray-bench-upstream-{}.yaml", std::process::id()));
            std::fs::write(&cfg, format!("Version: 2\nEndpoint: \"{}\"\n", self.sink.endpoint())).expect("cfg.yaml");
            cmd.args(["-o", "-n", "us-east-1", "-c"]).arg(&cfg);
            cmd.args(["-b", &udp.to_string(), "-t", &tcp.to_string()]);
            udp
        });
        if upstream_udp.is_none() {
            cmd.args(["-b", "127.0.0.1:0", "-t", "127.0.0.1:0"]);
        }
        cmd.args(extra).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        // XRAY_BENCH_ENV: `NAME=value` pairs, comma-separated, for every daemon of the run.
        for pair in std::env::var("XRAY_BENCH_ENV").unwrap_or_default().split(',').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            cmd.env(name.trim(), value);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        if load.spans() {
            // Only where spans are sent: the builds before spans do not know the variable.
            cmd.env("XRAY_DAEMON_OTLP_ENDPOINT", format!("{}/v1/traces", self.sink.endpoint()));
        }
        if load == gen::Load::GrpcSpans {
            cmd.env("XRAY_DAEMON_OTLP_GRPC_ADDRESS", "127.0.0.1:0");
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        let summary = Arc::new(Mutex::new(None));
        let spans_summary = Arc::new(Mutex::new(None));
        let problems = Arc::new(Mutex::new(Vec::new()));
        let grpc = Arc::new(Mutex::new(None));
        let (s, ss, p, g) = (summary.clone(), spans_summary.clone(), problems.clone(), grpc.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // Logged before the Listening line.
                if let Some(rest) = line.split("Starting OTLP/gRPC server on ").nth(1) {
                    *g.lock().unwrap() = rest.trim().parse::<SocketAddr>().ok();
                } else if let Some(rest) = line.split("Listening on UDP ").nth(1) {
                    let _ = tx.send(Some(rest.trim().to_owned()));
                } else if line.contains("Starting proxy http server on") {
                    let _ = tx.send(None);
                } else if line.contains("Shutdown finished") {
                    *s.lock().unwrap() = Some(line);
                } else if line.contains("Spans received:") {
                    *ss.lock().unwrap() = Some(line);
                } else if line.contains("[Error]") || line.contains("[Warn]") {
                    let mut p = p.lock().unwrap();
                    if p.len() < 3 {
                        p.push(line);
                    }
                }
            }
        });
        // Ours says where it listens after the proxy's line. Upstream's logger writes at info
        // level only what it buffered, late: it is given a second to bind the ports it was given.
        let udp = match upstream_udp {
            Some(addr) => {
                std::thread::sleep(Duration::from_secs(1));
                addr
            }
            None => loop {
                match rx.recv_timeout(Duration::from_secs(10)) {
                    Ok(Some(addr)) => break addr.parse().expect("UDP address"),
                    Ok(None) => {}
                    Err(_) => panic!("the daemon {} did not start", self.bin),
                }
            },
        };
        let grpc = *grpc.lock().unwrap();
        Daemon { child, udp, grpc, summary, spans_summary, problems }
    }

    /// One step: a fresh daemon, `rate` segments or spans (`load`) a second for `duration`.
    pub(crate) fn step(
        &mut self,
        load: gen::Load,
        rate: u64,
        duration: Duration,
        extra: &[&str],
        sink_delay: Duration,
    ) -> Row {
        self.step += 1;
        self.sink.reset(self.step);
        self.sink.set_delay(sink_delay);
        // Dropped at the end of the step, after the daemon has been reaped.
        let mut cg = match &self.cgroups {
            Ok(parent) => parent.create(self.step).map_err(|e| eprintln!("  {e}")).ok(),
            Err(_) => None,
        };
        let mut d = self.spawn(load, extra, cg.as_ref());
        let pid = d.child.id();
        std::thread::sleep(Duration::from_millis(500));
        // Reset VmHWM and the cgroup's peak so the peaks are this step's.
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        if let Some(cg) = cg.as_mut() {
            cg.reset_peak();
        }
        let drops0 = rcvbuf_errors();
        let cpu0 = cpu_ticks(pid);
        let sink0 = self.sink.cpu_ticks();
        let mut watch = Watch::new(pid);
        let sent = if rate == 0 {
            while watch.t0.elapsed() < duration {
                std::thread::sleep(Duration::from_millis(100).min(duration.saturating_sub(watch.t0.elapsed())));
                watch.sample(true);
            }
            gen::Sent { elapsed: duration, ..Default::default() }
        } else {
            let (udp, grpc, step) = (d.udp, d.grpc, self.step);
            let sender = std::thread::spawn(move || match load {
                gen::Load::GrpcSpans => crate::grpc::run(grpc.expect("an OTLP/gRPC listener"), step, rate, duration),
                _ => gen::run(udp, load, step, rate, duration),
            });
            while !sender.is_finished() {
                std::thread::sleep(Duration::from_millis(100));
                watch.sample(true);
            }
            sender.join().expect("sender")
        };
        let window = watch.t0.elapsed();
        let cpu1 = cpu_ticks(pid);
        let sink1 = self.sink.cpu_ticks();
        let status = proc_status(pid);
        let (rss_mb, anon_mb) = (status_mb(&status, "VmRSS"), status_mb(&status, "RssAnon"));
        let cgroup_mb = cg.as_ref().and_then(|cg| cg.current_mb());
        // Wait for delivery: partial batches leave within a second; stop when everything
        // arrived or nothing more arrived for 3 s.
        let (mut last, mut since) = (self.sink.snapshot().distinct, Instant::now());
        while self.sink.snapshot().distinct < sent.items && since.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(100));
            watch.sample(false);
            let now = self.sink.snapshot().distinct;
            if now != last {
                (last, since) = (now, Instant::now());
            }
        }
        watch.sample(false);
        let peak_mb = status_mb(&proc_status(pid), "VmHWM");
        let cgroup_peak_mb = cg.as_mut().and_then(|cg| cg.peak_mb());
        let drops = rcvbuf_errors().saturating_sub(drops0);
        let snap = self.sink.snapshot();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        // Everything was delivered or given up on: a daemon still draining after 10 s (upstream
        // waits for its queue with no deadline) is killed.
        let stop = Instant::now() + Duration::from_secs(10);
        while matches!(d.child.try_wait(), Ok(None)) && Instant::now() < stop {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = d.child.kill();
        let _ = d.child.wait();
        self.sink.set_delay(Duration::ZERO);
        let spillover = match load {
            gen::Load::Segments(_) => {
                d.summary.lock().unwrap().as_deref().and_then(|l| number_after(l, "spilled over:"))
            }
            gen::Load::Spans | gen::Load::GrpcSpans => {
                d.spans_summary.lock().unwrap().as_deref().and_then(|l| number_after(l, "dropped:"))
            }
        };
        for p in d.problems.lock().unwrap().iter() {
            eprintln!("  daemon said: {p}");
        }
        let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let what = match load {
            gen::Load::Segments(size) => format!("{size} B segments"),
            gen::Load::Spans => format!("spans ({} a datagram)", load.per_datagram()),
            gen::Load::GrpcSpans => format!("spans over gRPC ({} a call)", load.per_datagram()),
        };
        let pct = |ticks: u64| 100.0 * ticks as f64 / tck / window.as_secs_f64();
        let (gen_cpu, sink_cpu) = (100.0 * sent.cpu.as_secs_f64() / window.as_secs_f64(), pct(sink1 - sink0));
        eprintln!(
            "  {what} at {rate}/s: sent {} in {} datagrams ({} send errors), sink: {} distinct, {} duplicates, \
             {} foreign ids, {} calls, {} OTLP calls ({} unreadable), {} bytes ({} inflated), {} telemetry calls; \
             CPU of the sender {gen_cpu:.1} %, of the sink {sink_cpu:.1} %",
            sent.items,
            sent.datagrams,
            sent.errors,
            snap.distinct,
            snap.duplicates,
            snap.foreign,
            snap.calls,
            snap.otlp_calls,
            snap.otlp_bad,
            snap.bytes,
            snap.otlp_raw_bytes,
            snap.telemetry_calls
        );
        Row {
            rate,
            sent: sent.items,
            datagrams: sent.datagrams,
            sent_per_sec: sent.items as f64 / sent.elapsed.as_secs_f64().max(1e-9),
            cpu: pct(cpu1 - cpu0),
            rss_mb,
            peak_mb,
            anon_mb,
            anon_peak_mb: watch.anon_peak_mb.max(anon_mb),
            cgroup_mb,
            cgroup_peak_mb,
            delivered: snap.distinct,
            calls: match load {
                gen::Load::Segments(_) => snap.calls,
                // PutTraceSegments calls in the segments mode, OTLP calls in the otlp mode.
                gen::Load::Spans | gen::Load::GrpcSpans => snap.calls + snap.otlp_calls,
            },
            kernel_drops: drops,
            spillover,
            rss_samples: watch.rss_samples,
            body_bytes: snap.bytes,
            raw_bytes: snap.otlp_raw_bytes,
            secs: sent.elapsed.as_secs_f64(),
            gen_cpu,
            sink_cpu,
        }
    }
}

/// The daemon's resident memory through a step, from `/proc/<pid>/status`.
struct Watch {
    pid: u32,
    t0: Instant,
    anon_peak_mb: f64,
    /// (second, VmRSS MB), once a second while sending.
    rss_samples: Vec<(f64, f64)>,
}

impl Watch {
    fn new(pid: u32) -> Watch {
        Watch { pid, t0: Instant::now(), anon_peak_mb: 0.0, rss_samples: Vec::new() }
    }

    /// Every 100 ms: `RssAnon` has no high-water mark of its own.
    fn sample(&mut self, sending: bool) {
        let status = proc_status(self.pid);
        self.anon_peak_mb = self.anon_peak_mb.max(status_mb(&status, "RssAnon"));
        let t = self.t0.elapsed().as_secs_f64();
        if sending && self.rss_samples.last().is_none_or(|(last, _)| last + 1.0 <= t) {
            self.rss_samples.push((t.round(), status_mb(&status, "VmRSS")));
        }
    }
}

fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    rest.trim_start().split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// utime + stime of the whole process, in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> u64 {
    stat_ticks(&format!("/proc/{pid}/stat"))
}

/// utime + stime from a `stat` file of `/proc` (a process's, or one thread's under `task/`).
pub(crate) fn stat_ticks(path: &str) -> u64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

fn proc_status(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default()
}

/// A `kB` field of a `/proc/<pid>/status` text, in MB (MiB, as the kernel's kB are KiB).
fn status_mb(status: &str, key: &str) -> f64 {
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    kb as f64 / 1024.0
}

/// UDP receive-buffer drops on the whole machine so far.
fn rcvbuf_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else { return 0 };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}
