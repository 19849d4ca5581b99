//! The `spool` part: what the disk spool costs while X-Ray is healthy (the same rate with the
//! spool off and on, in alternating rounds), and how long a 100 MB spool takes to send at a
//! bounded replay rate.
//!
//! The spool is filled the way it fills in production: a daemon whose endpoint refuses every
//! connection takes 100,000 segments of 1 KB, then SIGTERM. A second daemon, on the same
//! directory with the sink as its endpoint, sends them; the time is from its start until the sink
//! has every segment.

use crate::gen::{self, Load};
use crate::step::{cpu_ticks, Bench, Row};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Segments per second for the A/B, and rounds of it.
const RATE: u64 = 4_000;
const ROUNDS: usize = 3;

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xray-bench-spool-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Bytes of the `.log` files under `dir`.
fn spool_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for signal in ["segments", "spans"] {
        if let Ok(entries) = std::fs::read_dir(dir.join(signal)) {
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == "log") {
                    total += e.metadata().map(|m| m.len()).unwrap_or(0);
                }
            }
        }
    }
    total
}

fn set_env(bench: &mut Bench, pairs: &[(&str, String)]) {
    bench.env = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
}

pub(crate) fn run(bench: &mut Bench, out: &mut String, secs: Duration) {
    cost(bench, out, secs);
    for rate_kb in [1024u64, 10_240] {
        replay(bench, out, rate_kb);
    }
    bench.env.clear();
}

/// The same rate with the spool off and on, alternating.
fn cost(bench: &mut Bench, out: &mut String, secs: Duration) {
    let dir = fresh_dir("cost");
    let _ = writeln!(
        out,
        "#### Disk spool, X-Ray healthy: {RATE} segments/s of 1 KB, spool off and on in alternating rounds, {} s each\n",
        secs.as_secs()
    );
    let header = Row::header().replacen("| ", "| spool | ", 1).replacen("\n| ", "\n| --- | ", 1);
    let _ = writeln!(out, "{header}");
    let mut cpu = [Vec::new(), Vec::new()];
    let mut touched = 0;
    for _ in 0..ROUNDS {
        for on in [false, true] {
            if on {
                set_env(bench, &[("XRAY_DAEMON_SPOOL_DIR", dir.display().to_string())]);
            } else {
                bench.env.clear();
            }
            let row = bench.step(Load::Segments(1024), RATE, secs, &[], Duration::ZERO);
            touched = touched.max(spool_bytes(&dir));
            let line = format!("| {} {}", if on { "on" } else { "off" }, row.markdown());
            eprintln!("{line}");
            let _ = writeln!(out, "{line}");
            cpu[usize::from(on)].push(row.cpu);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (off, on) = (mean(&cpu[0]), mean(&cpu[1]));
    let _ = writeln!(
        out,
        "\nMean CPU: {off:.1} % off, {on:.1} % on: the spool costs {:+.1} percentage points of a core. Bytes the \
         spool held on disk at the end of any step: {touched}.\n",
        on - off
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Fills a spool with 100 MB while the endpoint refuses connections, then times its replay.
fn replay(bench: &mut Bench, out: &mut String, rate_kb: u64) {
    let dir = fresh_dir("replay");
    let spool = ("XRAY_DAEMON_SPOOL_DIR", dir.display().to_string());
    bench.step += 1;
    let step = bench.step;
    // Refused at once: port 9 (discard) has no listener on loopback.
    set_env(bench, &[spool.clone(), ("XRAY_DAEMON_ENDPOINT", "http://127.0.0.1:9".into())]);
    let mut d = bench.spawn(Load::Segments(1024), &[], None);
    let sent = gen::run(d.udp, Load::Segments(1024), step, 20_000, Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGTERM) };
    let _ = d.child.wait();
    let on_disk = spool_bytes(&dir);

    bench.sink.reset(step);
    set_env(bench, &[spool, ("XRAY_DAEMON_SPOOL_REPLAY_RATE_KB", rate_kb.to_string())]);
    let t0 = Instant::now();
    let mut d = bench.spawn(Load::Segments(1024), &[], None);
    let pid = d.child.id();
    let cpu0 = cpu_ticks(pid);
    let limit = Duration::from_secs_f64(on_disk as f64 / (rate_kb as f64 * 1024.0) * 2.0 + 30.0);
    while bench.sink.snapshot().distinct < sent.items && t0.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = t0.elapsed();
    let ticks = cpu_ticks(pid) - cpu0;
    let delivered = bench.sink.snapshot().distinct;
    // SAFETY: as above.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = d.child.wait();
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mb = on_disk as f64 / 1e6;
    if rate_kb == 1024 {
        let _ = writeln!(
            out,
            "#### Replaying a spool: 100,000 segments of 1 KB sent while X-Ray refused connections, then a \
             restart with X-Ray healthy\n\n| replay rate | spool on disk | segments sent | delivered | time | \
             MB/s | daemon CPU (% of one core) |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
    }
    let line = format!(
        "| {rate_kb} KB/s | {mb:.1} MB | {} | {delivered} | {:.1} s | {:.2} | {:.1} |",
        sent.items,
        took.as_secs_f64(),
        mb / took.as_secs_f64(),
        100.0 * ticks as f64 / tck / took.as_secs_f64()
    );
    eprintln!("{line}");
    let _ = writeln!(out, "{line}");
    if rate_kb != 1024 {
        let _ = writeln!(out);
    }
    let _ = std::fs::remove_dir_all(dir);
}
