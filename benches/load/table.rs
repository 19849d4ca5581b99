//! How a step's measurements are written: the markdown rows and headers of the tables that
//! `make bench` prints and writes to `target/bench/results.md`.

use crate::step::Row;
use crate::UPSTREAM;

impl Row {
    /// Everything delivered, at (95 % of) the rate asked for: a step whose generator could not
    /// keep the rate on these cores says nothing about that rate.
    pub(crate) fn lossless(&self) -> bool {
        self.sent > 0 && self.delivered >= self.sent && self.sent_per_sec >= 0.95 * self.rate as f64
    }

    pub(crate) fn delivered_pct(&self) -> String {
        if self.rate == 0 {
            "–".into()
        } else {
            let pct = 100.0 * self.delivered as f64 / self.sent.max(1) as f64;
            if self.delivered >= self.sent {
                "100%".into()
            } else {
                format!("{pct:.2}%")
            }
        }
    }

    /// anon and cgroup, at the end of sending and at the peak: the columns after RSS.
    pub(crate) fn memory(&self) -> String {
        let mb = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1} MB"));
        format!(
            "{} | {} | {} | {}",
            mb(Some(self.anon_mb)),
            mb(Some(self.anon_peak_mb)),
            mb(self.cgroup_mb),
            mb(self.cgroup_peak_mb)
        )
    }

    pub(crate) fn header() -> &'static str {
        "| segments/s | sent/s achieved | CPU (% of one core) | RSS at end | peak RSS | anon at end | peak anon \
         | cgroup at end | cgroup peak | delivered | PutTraceSegments calls | kernel drops | spillover |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    }

    pub(crate) fn markdown(&self) -> String {
        format!("| {} | {:.0} | {} | {} |", fmt_int(self.rate), self.sent_per_sec, self.measured(), self.losses())
    }

    /// CPU, RSS, anon and cgroup, delivered, calls: the columns both kinds of row share.
    pub(crate) fn measured(&self) -> String {
        format!(
            "{:.1} | {:.1} MB | {:.1} MB | {} | {} | {}",
            self.cpu,
            self.rss_mb,
            self.peak_mb,
            self.memory(),
            self.delivered_pct(),
            fmt_int(self.calls)
        )
    }

    /// Kernel drops and what the daemon dropped itself (spillover).
    pub(crate) fn losses(&self) -> String {
        format!("{} | {}", fmt_int(self.kernel_drops), self.spillover.map(fmt_int).unwrap_or_else(|| "?".into()))
    }

    /// The `otlp` part's columns: spans instead of segments, OTLP calls and their bytes, and the
    /// sender's and the sink's CPU beside the daemon's.
    pub(crate) fn header_spans() -> &'static str {
        "| spans/s | datagrams/s achieved | spans/s achieved | CPU (% of one core) | RSS at end | peak RSS | anon at end \
         | peak anon | cgroup at end | cgroup peak | delivered | calls | MB sent | MB inflated (OTLP) \
         | kernel drops | dropped | sender CPU | sink CPU |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: \
         | ---: | ---: | ---: |"
    }

    pub(crate) fn markdown_spans(&self) -> String {
        format!(
            "| {} | {:.0} | {:.0} | {} | {:.1} | {:.1} | {} | {:.1} | {:.1} |",
            fmt_int(self.rate),
            self.datagrams as f64 / self.secs.max(1e-9),
            self.sent_per_sec,
            self.measured(),
            self.body_bytes as f64 / 1e6,
            self.raw_bytes as f64 / 1e6,
            self.losses(),
            self.gen_cpu,
            self.sink_cpu
        )
    }

    pub(crate) fn header_with_upstream() -> &'static str {
        "| segments/s | CPU (% of one core) | upstream CPU | RSS at end | peak RSS | upstream RSS | anon at end \
         | peak anon | cgroup at end | cgroup peak | delivered | upstream delivered | PutTraceSegments calls \
         | kernel drops |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: \
         | ---: | ---: |"
    }

    pub(crate) fn markdown_with_upstream(&self) -> String {
        let up = UPSTREAM.iter().find(|u| u.0 == self.rate);
        let (ucpu, urss, udel) = match up {
            Some((_, c, r, d)) => {
                (format!("{c}"), format!("{r} MB"), d.map(|d| format!("{d}%")).unwrap_or_else(|| "–".into()))
            }
            None => ("".into(), "".into(), "".into()),
        };
        format!(
            "| {} | {:.1} | {ucpu} | {:.1} MB | {:.1} MB | {urss} | {} | {} | {udel} | {} | {} |",
            fmt_int(self.rate),
            self.cpu,
            self.rss_mb,
            self.peak_mb,
            self.memory(),
            self.delivered_pct(),
            fmt_int(self.calls),
            fmt_int(self.kernel_drops)
        )
    }
}

pub(crate) fn fmt_int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
