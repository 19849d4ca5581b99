//! The `ab` part: this build's CPU beside other builds' and upstream's, measured in the same run
//! on the same minutes, so that the machine's drift through the day cancels out.
//!
//! Each contender gets a fresh daemon per step, 1 KB segments at each rate, in rounds that
//! alternate the order (this build first, then last). The table gives each rate's CPU per
//! contender (the mean of the rounds, each round's figure beside it), this build's CPU as a
//! ratio of each other's, and each contender's marginal cost per segment: the slope of its CPU
//! between the two highest rates, the cost of one more segment a second, without the fixed cost
//! of timers and wake-ups that a low rate is mostly made of.
//!
//! The contenders come from `XRAY_BENCH_AB` (`label=path`, comma-separated: release binaries of
//! earlier commits, which `make bench` builds into `target/bench/baselines/`) and
//! `XRAY_BENCH_UPSTREAM_BIN` (upstream's Go daemon, run with its own flags and a config file for
//! the endpoint). `XRAY_BENCH_AB_RATES` sets the rates (default 1,000, 4,000 and 20,000),
//! `XRAY_BENCH_AB_ROUNDS` the rounds (default 2).

use crate::gen::Load;
use crate::step::{Bench, Row};
use crate::table::fmt_int;
use std::fmt::Write as _;
use std::time::Duration;

/// One daemon to measure.
struct Contender {
    label: String,
    bin: String,
    upstream: bool,
}

/// This build first, then `XRAY_BENCH_AB`'s, then upstream's when given.
fn contenders(head: &str) -> Vec<Contender> {
    let mut all = vec![Contender { label: "this build".into(), bin: head.into(), upstream: false }];
    for pair in std::env::var("XRAY_BENCH_AB").unwrap_or_default().split(',').filter(|p| !p.trim().is_empty()) {
        let (label, bin) = pair.split_once('=').unwrap_or((pair, pair));
        all.push(Contender { label: label.trim().into(), bin: bin.trim().into(), upstream: false });
    }
    if let Ok(bin) = std::env::var("XRAY_BENCH_UPSTREAM_BIN") {
        if !bin.is_empty() {
            all.push(Contender { label: "upstream".into(), bin, upstream: true });
        }
    }
    all.retain(|c| {
        let found = std::path::Path::new(&c.bin).exists();
        if !found {
            eprintln!("  ab: {} ({}) does not exist: left out", c.label, c.bin);
        }
        found
    });
    all
}

fn env_list(name: &str, default: &[u64]) -> Vec<u64> {
    match std::env::var(name) {
        Ok(list) => list.split(',').filter_map(|r| r.trim().parse().ok()).collect(),
        Err(_) => default.to_vec(),
    }
}

pub(crate) fn run(bench: &mut Bench, out: &mut String, secs: Duration) {
    let head = bench.bin.clone();
    let contenders = contenders(&head);
    let rates = env_list("XRAY_BENCH_AB_RATES", &[1_000, 4_000, 20_000]);
    let rounds = env_list("XRAY_BENCH_AB_ROUNDS", &[2]).first().copied().unwrap_or(2).max(1) as usize;
    // rows[contender][rate][round]
    let mut rows: Vec<Vec<Vec<Row>>> = contenders.iter().map(|_| rates.iter().map(|_| Vec::new()).collect()).collect();
    for round in 0..rounds {
        let order: Vec<usize> =
            if round % 2 == 0 { (0..contenders.len()).collect() } else { (0..contenders.len()).rev().collect() };
        for (r, &rate) in rates.iter().enumerate() {
            for &c in &order {
                bench.bin = contenders[c].bin.clone();
                bench.upstream = contenders[c].upstream;
                let row = bench.step(Load::Segments(1024), rate, secs, &[], Duration::ZERO);
                eprintln!("  ab round {} {}: {}", round + 1, contenders[c].label, row.markdown());
                rows[c][r].push(row);
            }
        }
    }
    bench.bin = head;
    bench.upstream = false;

    let cpu = |c: usize, r: usize| rows[c][r].iter().map(|row| row.cpu).sum::<f64>() / rows[c][r].len() as f64;
    let _ = writeln!(
        out,
        "#### A/B: 1 KB segments, default settings, {} s a step, {rounds} rounds alternating the order\n",
        secs.as_secs()
    );
    let labels: Vec<String> = contenders.iter().map(|c| format!("`{}`", c.label)).collect();
    let _ = writeln!(
        out,
        "CPU in % of one core (the mean of the rounds; each round's figure in brackets). {}\n",
        contenders.iter().map(|c| format!("`{}`: `{}`", c.label, c.bin)).collect::<Vec<_>>().join("; ")
    );
    let ratios: Vec<String> = labels[1..].iter().map(|l| format!("this build / {l}")).collect();
    let _ = writeln!(out, "| segments/s | {} | {} | delivered |", labels.join(" | "), ratios.join(" | "));
    let _ = writeln!(out, "|{}", " ---: |".repeat(2 + labels.len() + ratios.len()));
    for (r, &rate) in rates.iter().enumerate() {
        let cells: Vec<String> = (0..contenders.len())
            .map(|c| {
                let each: Vec<String> = rows[c][r].iter().map(|row| format!("{:.1}", row.cpu)).collect();
                format!("{:.1} ({})", cpu(c, r), each.join(", "))
            })
            .collect();
        let ratio: Vec<String> = (1..contenders.len()).map(|c| format!("{:.2}×", cpu(0, r) / cpu(c, r))).collect();
        let delivered: Vec<String> =
            (0..contenders.len()).map(|c| rows[c][r].last().map(Row::delivered_pct).unwrap_or_default()).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            fmt_int(rate),
            cells.join(" | "),
            ratio.join(" | "),
            delivered.join(", ")
        );
    }
    // The marginal cost: between the two highest rates.
    if rates.len() >= 2 {
        let (lo, hi) = (rates.len() - 2, rates.len() - 1);
        let per_segment = |c: usize| (cpu(c, hi) - cpu(c, lo)) / 100.0 / (rates[hi] - rates[lo]).max(1) as f64 * 1e6;
        let costs: Vec<String> =
            (0..contenders.len()).map(|c| format!("{}: {:.2} µs", labels[c], per_segment(c))).collect();
        let _ = writeln!(
            out,
            "\nMarginal cost per segment (the slope of CPU between {} and {} segments/s): {}.",
            fmt_int(rates[lo]),
            fmt_int(rates[hi]),
            costs.join("; ")
        );
    }
    if let Some(r) = rates.iter().position(|&rate| rate == 4_000) {
        let anon: Vec<String> = (0..contenders.len())
            .map(|c| {
                let peak = rows[c][r].iter().map(|row| row.anon_peak_mb).fold(0.0, f64::max);
                format!("{}: {peak:.1} MB", labels[c])
            })
            .collect();
        let _ = writeln!(out, "\nPeak anonymous memory at 4,000 segments/s: {}.", anon.join("; "));
    }
    let _ = writeln!(out);
}
