//! Log lines in upstream's format, `2026-11-25T16:20:41Z [Info] message`, because people grep
//! them; or one JSON object per line with `XRAY_DAEMON_LOG_FORMAT=json`.
//!
//! Only the daemon's own events are shown at the chosen level. Dependencies (the AWS SDK, hyper)
//! are held at warn, so a `dev` log never shows request internals such as signing material.
//!
//! The daemon's events carry structured fields (`count`, `duration_s`, `reason`, `api`,
//! `status`, `error_code`, `trace_id`, …) beside a message that already says the same in words.
//! The JSON format writes both; the text format writes the message alone, so that the lines
//! people grep stay upstream's byte for byte. Events of the [`ROUTINE`] target repeat with the
//! traffic (a line per batch sent): in Lambda mode they only show at debug level, so that a
//! function's log group gets no line per invocation unless something went wrong.

use crate::config::{ConfigError, LogFormat, LogLevel};
use crate::stats::log_limit::ROUTINE;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// Upstream's line format.
pub(crate) struct UpstreamFormat;

/// Writes an event's message, and nothing of its other fields.
struct MessageOnly<'w, 'a> {
    writer: &'w mut Writer<'a>,
    result: fmt::Result,
}

impl Visit for MessageOnly<'_, '_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.result = write!(self.writer, "{value:?}");
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.result = self.writer.write_str(value);
        }
    }
}

/// Upstream's level words.
pub(crate) fn level_word(level: &Level) -> &'static str {
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
        if event.metadata().target().starts_with("xray_daemon") {
            // The daemon's messages say everything; their fields are for the JSON format.
            let mut visitor = MessageOnly { writer: &mut writer, result: Ok(()) };
            event.record(&mut visitor);
            visitor.result?;
        } else {
            ctx.field_format().format_fields(writer.by_ref(), event)?;
        }
        writeln!(writer)
    }
}

fn filter(level: LogLevel, lambda: bool) -> Targets {
    let ours = match level {
        LogLevel::Dev => LevelFilter::TRACE,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    };
    // In Lambda, routine lines show from debug on; what goes wrong still shows at its level.
    let routine = if lambda && ours <= LevelFilter::INFO { ours.min(LevelFilter::WARN) } else { ours };
    Targets::new()
        .with_target("xray_daemon", ours)
        .with_target(ROUTINE, routine)
        .with_default(LevelFilter::WARN.min(ours))
}

/// Set once the JSON format is chosen, for what is logged outside an event's fields.
static JSON: AtomicBool = AtomicBool::new(false);

/// Installs the global subscriber writing to `writer`. `lambda`: hold back the [`ROUTINE`]
/// lines below debug level.
pub fn init<W>(level: LogLevel, format: LogFormat, lambda: bool, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    JSON.store(format == LogFormat::Json, Relaxed);
    let registry = tracing_subscriber::registry().with(filter(level, lambda));
    match format {
        LogFormat::Text => {
            let layer =
                tracing_subscriber::fmt::layer().event_format(UpstreamFormat).with_writer(writer).with_ansi(false);
            registry.with(layer).init();
        }
        LogFormat::Json => {
            let layer = tracing_subscriber::fmt::layer().json().flatten_event(true).with_writer(writer);
            registry.with(layer).init();
        }
    }
}

/// Logs a configuration that cannot be used: as one line (with a line per problem under it) in
/// the text format, as it always was; as one JSON object per problem in the JSON format, each
/// with the `setting` it names when it names one.
pub fn config_error(e: &ConfigError) {
    if !JSON.load(Relaxed) {
        tracing::error!("{e}");
        return;
    }
    let problems = e.problems();
    for problem in problems {
        tracing::error!(setting = problem.setting(), problems = problems.len(), "{problem}");
    }
}

/// Upstream rotates its log file at 50 MB and keeps one old file, `<path>.1`.
pub const ROTATE_AT: u64 = 50 * 1024 * 1024;

/// A log file that is renamed to `<path>.1` (replacing the previous one) when it reaches
/// `limit` bytes, if rotation is on.
#[derive(Clone)]
pub struct LogFile(Arc<Mutex<Rotating>>);

struct Rotating {
    path: PathBuf,
    file: File,
    size: u64,
    limit: Option<u64>,
    /// The last write ended a line: rotating now cannot split one.
    at_line_start: bool,
}

impl LogFile {
    /// Opens (appends to) `path`; `limit: None` never rotates.
    pub fn open(path: &Path, limit: Option<u64>) -> io::Result<LogFile> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogFile(Arc::new(Mutex::new(Rotating { path: path.to_owned(), file, size, limit, at_line_start: true }))))
    }
}

impl Rotating {
    fn rotate(&mut self) -> io::Result<()> {
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        std::fs::rename(&self.path, &old)?;
        self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut r = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if r.at_line_start && r.limit.is_some_and(|limit| r.size > 0 && r.size + buf.len() as u64 > limit) {
            // A failed rotation must not lose the line: keep writing to the current file.
            let _ = r.rotate();
        }
        let n = r.file.write(buf)?;
        r.size += n as u64;
        if n > 0 {
            r.at_line_start = buf[n - 1] == b'\n';
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).file.flush()
    }
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = LogFile;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
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
    fn the_log_file_rotates_keeping_one_old_file() {
        let dir = std::env::temp_dir().join(format!("xd-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("xray.log");
        let mut f = LogFile::open(&path, Some(100)).unwrap();
        for i in 0..25 {
            writeln!(f, "line {i:02} of the log").unwrap(); // 20 bytes each
        }
        let current = std::fs::read_to_string(&path).unwrap();
        let old = std::fs::read_to_string(dir.join("xray.log.1")).unwrap();
        assert_eq!(current.lines().last(), Some("line 24 of the log"));
        assert!(current.len() <= 100 + 19 && old.len() <= 100 + 19, "{} {}", current.len(), old.len());
        assert!(current.lines().chain(old.lines()).all(|l| l.len() == 18), "no line is split");
        let number = |l: &str| l[5..7].parse::<u32>().unwrap();
        let first_current = number(current.lines().next().unwrap());
        assert_eq!(number(old.lines().last().unwrap()) + 1, first_current, "the newest rotated file is .1");
        assert!(first_current > 10, "rotated more than once: {first_current}");
        assert!(!dir.join("xray.log.2").exists());
        // Without rotation the file just grows.
        let path2 = dir.join("plain.log");
        let mut g = LogFile::open(&path2, None).unwrap();
        for _ in 0..25 {
            writeln!(g, "line xx of the log").unwrap();
        }
        assert_eq!(std::fs::read_to_string(&path2).unwrap().len(), 25 * 19);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lines_look_like_upstream() {
        let cap = Capture::default();
        let sink = cap.clone();
        let subscriber = tracing_subscriber::registry().with(filter(LogLevel::Info, false)).with(
            tracing_subscriber::fmt::layer()
                .event_format(UpstreamFormat)
                .with_writer(move || sink.clone())
                .with_ansi(false),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                count = 3,
                duration_s = 0.0071,
                "Successfully sent batch of {} segments ({:.3} seconds)",
                3,
                0.0071
            );
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
        assert_eq!(rest, "[Info] Successfully sent batch of 3 segments (0.007 seconds)", "no fields in text");
        assert!(lines[1].ends_with("[Warn] dependency warnings still show"));
    }

    /// What the subscriber `init` would install writes for each event, at `level`.
    fn json_lines(level: LogLevel, lambda: bool, events: impl FnOnce()) -> Vec<serde_json::Value> {
        let cap = Capture::default();
        let sink = cap.clone();
        let layer = tracing_subscriber::fmt::layer().json().flatten_event(true).with_writer(move || sink.clone());
        let subscriber = tracing_subscriber::registry().with(filter(level, lambda)).with(layer);
        tracing::subscriber::with_default(subscriber, events);
        let text = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
    }

    #[test]
    fn json_lines_carry_the_fields_beside_the_message() {
        let lines = json_lines(LogLevel::Info, false, || {
            tracing::info!(target: ROUTINE, count = 3, duration_s = 0.25, "Successfully sent batch of 3 segments");
            tracing::warn!(reason = "invalid_header", status = Some(403u16), code = None::<&str>, "Invalid header");
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0]["message"], "Successfully sent batch of 3 segments");
        assert_eq!((lines[0]["count"].as_u64(), lines[0]["duration_s"].as_f64()), (Some(3), Some(0.25)));
        assert_eq!((lines[0]["level"].as_str(), lines[0]["target"].as_str()), (Some("INFO"), Some(ROUTINE)));
        assert_eq!((lines[1]["reason"].as_str(), lines[1]["status"].as_u64()), (Some("invalid_header"), Some(403)));
        assert!(lines[1].get("code").is_none(), "a field without a value is left out: {}", lines[1]);
    }

    /// In Lambda, routine lines need debug; what goes wrong shows as before.
    #[test]
    fn lambda_holds_routine_lines_back_below_debug() {
        let events = || {
            tracing::info!(target: ROUTINE, "Successfully sent batch of 1 segments");
            tracing::warn!(target: ROUTINE, "routine, but wrong");
            tracing::info!("Initializing");
        };
        let messages = |level, lambda| -> Vec<String> {
            json_lines(level, lambda, events).iter().map(|l| l["message"].as_str().unwrap().to_owned()).collect()
        };
        assert_eq!(messages(LogLevel::Info, true), ["routine, but wrong", "Initializing"]);
        assert_eq!(messages(LogLevel::Info, false).len(), 3);
        assert_eq!(messages(LogLevel::Debug, true).len(), 3);
        assert_eq!(messages(LogLevel::Warn, true), ["routine, but wrong"]);
    }
}
