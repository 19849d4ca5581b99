//! Log lines in upstream's format, `2026-11-25T16:20:41Z [Info] message`, because people grep
//! them; or one JSON object per line with `XRAY_DAEMON_LOG_FORMAT=json`.
//!
//! Only the daemon's own events are shown at the chosen level. Dependencies (the AWS SDK, hyper)
//! are held at warn, so a `dev` log never shows request internals such as signing material.

use crate::config::{LogFormat, LogLevel};
use std::fmt;
use std::time::SystemTime;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// Upstream's line format.
pub struct UpstreamFormat;

/// Upstream's level words.
pub fn level_word(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "Trace",
        Level::DEBUG => "Debug",
        Level::INFO => "Info",
        Level::WARN => "Warn",
        Level::ERROR => "Error",
    }
}

impl<S, N> FormatEvent<S, N> for UpstreamFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let now = humantime::format_rfc3339_seconds(SystemTime::now());
        write!(writer, "{now} [{}] ", level_word(event.metadata().level()))?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

fn filter(level: LogLevel) -> Targets {
    let ours = match level {
        LogLevel::Dev => LevelFilter::TRACE,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    };
    Targets::new().with_target("xray_daemon", ours).with_default(LevelFilter::WARN.min(ours))
}

/// Installs the global subscriber writing to `writer`.
pub fn init<W>(level: LogLevel, format: LogFormat, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let registry = tracing_subscriber::registry().with(filter(level));
    match format {
        LogFormat::Text => {
            let layer = tracing_subscriber::fmt::layer().event_format(UpstreamFormat).with_writer(writer).with_ansi(false);
            registry.with(layer).init();
        }
        LogFormat::Json => {
            let layer = tracing_subscriber::fmt::layer().json().flatten_event(true).with_writer(writer);
            registry.with(layer).init();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_look_like_upstream() {
        let cap = Capture::default();
        let sink = cap.clone();
        let subscriber = tracing_subscriber::registry().with(filter(LogLevel::Info)).with(
            tracing_subscriber::fmt::layer().event_format(UpstreamFormat).with_writer(move || sink.clone()).with_ansi(false),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("Successfully sent batch of {} segments ({:.3} seconds)", 3, 0.0071);
            tracing::debug!("hidden at info");
            tracing::warn!(target: "hyper", "dependency warnings still show");
            tracing::info!(target: "aws_smithy_runtime", "dependency info is hidden");
        });
        let text = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let (stamp, rest) = lines[0].split_once(' ').unwrap();
        assert_eq!(stamp.len(), "2026-11-25T16:20:41Z".len());
        assert!(stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T');
        assert_eq!(rest, "[Info] Successfully sent batch of 3 segments (0.007 seconds)");
        assert!(lines[1].ends_with("[Warn] dependency warnings still show"));
    }
}
