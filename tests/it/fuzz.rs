//! Fuzz targets: property-based (proptest, on stable Rust) runs of every parser that reads
//! input the daemon does not control: UDP datagrams, the config file, environment variables and
//! the command line. Each target asserts that the parser returns (never panics, never hangs) and
//! that what it returns obeys the documented rules.
//!
//! `make test` runs a short pass (proptest's default of 256 cases per target, a few seconds in
//! all); `make fuzz` runs each target with `PROPTEST_CASES` raised (see the Makefile). A failing
//! case is shrunk by proptest and printed; it then becomes a named regression test at the bottom
//! of this file.

use proptest::prelude::*;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use xray_daemon::config::cli;
use xray_daemon::config::{file, Config, Flags};
use xray_daemon::ingest::udp::Datagrams;
use xray_daemon::pipeline::buffer::Buffer;
use xray_daemon::pipeline::intake::Intake;
use xray_daemon::runner::lambda::events::{self, NextEvent, PlatformEvent};
use xray_daemon::signal::segments::{self, Datagram, Reject};
use xray_daemon::stats::Stats;

const HEADER: &[u8] = br#"{"format":"json","version":1}"#;

/// Tokens that header noise is made of.
const JSONISH: &[&[u8]] =
    &[b"{", b"}", b"\"format\"", b"\"version\"", b"\"json\"", b":", b",", b"1", b"[", b"]", b"\\u0000", b"\0"];

/// Header lines near the accepted ones: the spellings, the section 1 edge cases, and noise.
fn header() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(HEADER.to_vec()),
        Just(br#"{"format": "json", "version": 1}"#.to_vec()),
        Just(br#"{"FORMAT":"JsOn","Version":1,"x":[1,{"y":null}]}"#.to_vec()),
        Just(b"{\"format\":\"json\",\"version\":1}\r".to_vec()),
        Just(br#"{"format":"json","version":1.0}"#.to_vec()),
        Just(br#"{"format":"json","version":1,"version":2}"#.to_vec()),
        Just(b"\xef\xbb\xbf{\"format\":\"json\",\"version\":1}".to_vec()),
        // JSON-ish bytes: braces, quotes, keys and numbers in random order.
        prop::collection::vec(
            prop_oneof![
                prop::sample::select(JSONISH).prop_map(|t: &[u8]| t.to_vec()),
                any::<u8>().prop_map(|b| vec![b]),
            ],
            0..24
        )
        .prop_map(|parts| parts.concat().into_iter().filter(|&b| b != b'\n').collect()),
        prop::collection::vec(any::<u8>().prop_filter("no newline", |&b| b != b'\n'), 0..64),
    ]
}

/// Bodies: UTF-8 text, arbitrary bytes (often not UTF-8), truncated multi-byte characters,
/// OTLP prefixes, and bodies up to the UDP limit.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        ".{0,200}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..300),
        ".{1,50}".prop_map(|s| {
            let mut b = s.into_bytes();
            b.extend_from_slice("é✓😀".as_bytes());
            let cut = b.len() - 1;
            b.truncate(cut);
            b
        }),
        prop_oneof![Just("T1S"), Just("T1U"), Just("M1")].prop_map(|p| format!("{p}CgYKBAoC").into_bytes()),
        (1usize..=segments::MAX_DATAGRAM - HEADER.len() - 1).prop_map(|n| vec![b'x'; n]),
    ]
}

fn datagram() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (header(), body()).prop_map(|(h, b)| [h, b"\n".to_vec(), b].concat()),
        prop::collection::vec(any::<u8>(), 0..512),
    ]
}

proptest! {
    /// The datagram parser: never panics, and its verdict follows the split rules.
    #[test]
    fn fuzz_datagram_parser(d in datagram()) {
        let first_newline = d.iter().position(|&b| b == b'\n');
        match segments::classify(&d) {
            Datagram::Segment(body) => {
                let nl = first_newline.expect("a segment has a header line");
                prop_assert_eq!(body, &d[nl + 1..], "the body is everything after the first newline");
                prop_assert!(!body.is_empty());
                prop_assert!(std::str::from_utf8(body).is_ok(), "only UTF-8 bodies are forwarded");
                prop_assert!(segments::header_is_valid(&d[..nl]));
            }
            Datagram::Otlp(..) => {
                let nl = first_newline.expect("OTLP has a header line");
                prop_assert!(segments::header_is_valid(&d[..nl]));
            }
            Datagram::Rejected(Reject::MissingNewline) => prop_assert!(first_newline.is_none()),
            Datagram::Rejected(Reject::EmptyBody) => prop_assert_eq!(first_newline, Some(d.len() - 1)),
            Datagram::Rejected(Reject::InvalidHeader) => {
                prop_assert!(!segments::header_is_valid(&d[..first_newline.unwrap()]));
            }
            Datagram::Rejected(Reject::InvalidUtf8) => {
                prop_assert!(std::str::from_utf8(&d[first_newline.unwrap() + 1..]).is_err());
            }
        }
        // The debug preview is bounded whatever the input.
        prop_assert!(segments::preview(&d, 256).len() <= 256 * 4 + 32);
    }

    /// Metamorphic header rules: any extra key, any case of `json`, whitespace around the
    /// object: still accepted. Any version other than the integer 1: rejected.
    #[test]
    fn fuzz_header_rules(
        key in "[a-z_]{1,12}".prop_filter("not a header field", |k| k != "format" && k != "version"),
        value in prop_oneof![Just("null".to_owned()), any::<i64>().prop_map(|n| n.to_string()), "[a-z]{0,8}".prop_map(|s| format!("{s:?}"))],
        json in "[jJ][sS][oO][nN]",
        ws in "[ \t\r]{0,3}",
        version in any::<i64>(),
    ) {
        let ok = format!(r#"{ws}{{"{key}":{value},"format":"{json}","version":1}}{ws}"#);
        prop_assert!(segments::header_is_valid(ok.as_bytes()), "{}", ok);
        let other = format!(r#"{{"format":"json","version":{version}}}"#);
        prop_assert_eq!(segments::header_is_valid(other.as_bytes()), version == 1);
    }

    /// The whole ingest step (count, classify, store) on arbitrary datagrams: never panics,
    /// and every datagram ends in exactly one counter.
    #[test]
    fn fuzz_ingest_counters_add_up(ds in prop::collection::vec(datagram(), 1..20)) {
        let buffer = Arc::new(Buffer::new(64 << 20, 50));
        let stats = Arc::new(Stats::default());
        let spans = Arc::new(Buffer::new(64 << 20, 10_000));
        let sink = Datagrams::new(Intake::otlp(buffer.clone(), spans, stats.clone()));
        for d in &ds {
            sink.accept(d);
        }
        let s = stats.snapshot();
        let non_empty = ds.iter().filter(|d| !d.is_empty()).count() as u64;
        prop_assert_eq!(s.received, non_empty, "zero-length reads are not counted");
        let sampled = stats.otlp_sampled.load(std::sync::atomic::Ordering::Relaxed);
        prop_assert_eq!(s.received, buffer.level().queued as u64 + s.rejected_datagrams + s.otlp + sampled + s.spillover);
        prop_assert!(buffer.level().bytes <= buffer.limit());
    }

    /// The config file parser (upstream's cfg.yaml), strict and lenient, on arbitrary text.
    #[test]
    fn fuzz_config_file_parser_arbitrary(text in ".{0,400}", strict in any::<bool>()) {
        let _ = file::parse(&text, strict);
    }

    /// The config file parser on YAML made of the real keys with values of every type.
    #[test]
    fn fuzz_config_file_parser_structured(
        entries in prop::collection::vec((config_key(), yaml_value()), 0..10),
        strict in any::<bool>(),
    ) {
        let mut text = String::new();
        for (key, value) in &entries {
            match key.split_once('.') {
                Some((section, leaf)) => text.push_str(&format!("{section}:\n  {leaf}: {value}\n")),
                None => text.push_str(&format!("{key}: {value}\n")),
            }
        }
        let _ = file::parse(&text, strict);
    }

    /// Environment variables: every variable the daemon reads, with arbitrary values. The
    /// result is a configuration or a typed error naming the variable, never a panic.
    #[test]
    fn fuzz_env_parsing(vars in prop::collection::vec((env_name(), env_value()), 0..8)) {
        let env: HashMap<String, String> = vars.into_iter().collect();
        if let Err(e) = Config::load_with(&Flags::default(), &env, Path::new("/nonexistent/cfg.yaml")) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    /// The command line (upstream's Go flag syntax), arbitrary arguments.
    #[test]
    fn fuzz_command_line(args in prop::collection::vec(prop_oneof![
        Just("-b".to_owned()), Just("--bind".to_owned()), Just("-m".to_owned()), Just("-o".to_owned()),
        Just("-l".to_owned()), Just("-v".to_owned()), Just("--".to_owned()), Just("-".to_owned()),
        Just("-t=".to_owned()), Just("--local-mode=maybe".to_owned()), Just("---x".to_owned()),
        "-{1,2}[a-z-]{0,12}(=.{0,8})?", ".{0,16}",
    ], 0..8)) {
        if let Ok(cli::Action::Run(flags)) = cli::parse(args) {
            let _ = Config::load_with(&flags, &HashMap::new(), Path::new("/nonexistent/cfg.yaml"));
        }
    }
}

/// The config file's keys (`Section.Key` for nested ones), plus a removed and an unknown key.
const CONFIG_KEYS: &[&str] = &[
    "Version",
    "TotalBufferSizeMB",
    "Concurrency",
    "Region",
    "Endpoint",
    "Socket.UDPAddress",
    "Socket.TCPAddress",
    "Logging.LogRotation",
    "Logging.LogLevel",
    "Logging.LogPath",
    "LocalMode",
    "ResourceARN",
    "RoleARN",
    "NoVerifySSL",
    "ProxyAddress",
    "MemoryLimit",
    "Unknown",
];

fn config_key() -> impl Strategy<Value = String> {
    prop::sample::select(CONFIG_KEYS).prop_map(str::to_owned)
}

fn yaml_value() -> impl Strategy<Value = String> {
    const FIXED: &[&str] = &["true", "~", "\"\"", "[1, 2]", "{a: b}", "&a [*a]", "!!binary aGVsbG8=", "*undefined"];
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| f.to_string()),
        prop::sample::select(FIXED).prop_map(str::to_owned),
        "[a-zA-Z0-9:./\\[\\]-]{0,24}",
        ".{0,24}".prop_map(|s| format!("{s:?}")),
    ]
}

/// Every variable the configuration reads, plus an unknown one with the daemon's prefix.
const ENV_NAMES: &[&str] = &[
    "XRAY_DAEMON_BUFFER_MEMORY_MB",
    "XRAY_DAEMON_CONCURRENCY",
    "XRAY_DAEMON_ENDPOINT",
    "XRAY_DAEMON_LOCAL_MODE",
    "XRAY_DAEMON_LOG_FORMAT",
    "XRAY_DAEMON_LOG_LEVEL",
    "XRAY_DAEMON_LOG_ROTATION",
    "XRAY_DAEMON_NO_VERIFY_SSL",
    "XRAY_DAEMON_PROXY_ADDRESS",
    "XRAY_DAEMON_PROXY_ALLOW_ALL",
    "XRAY_DAEMON_MAX_CONNECTIONS",
    "XRAY_DAEMON_PROXY_CLIENT_TIMEOUT",
    "XRAY_DAEMON_PROXY_MAX_BODY_KB",
    "XRAY_DAEMON_PROXY_TIMEOUT",
    "XRAY_DAEMON_RECEIVE_BUFFER_KB",
    "XRAY_DAEMON_REGION",
    "XRAY_DAEMON_RESOURCE_ARN",
    "XRAY_DAEMON_ROLE_ARN",
    "XRAY_DAEMON_SHUTDOWN_TIMEOUT",
    "XRAY_DAEMON_TCP_ADDRESS",
    "XRAY_DAEMON_TELEMETRY",
    "XRAY_DAEMON_UDP_ADDRESS",
    "XRAY_DAEMON_UPLOAD_TIMEOUT",
    "XRAY_DAEMON_UNKNOWN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_XRAY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ECS_ENABLE_CONTAINER_METADATA",
    "AWS_EC2_METADATA_DISABLED",
];

fn env_name() -> impl Strategy<Value = String> {
    prop::sample::select(ENV_NAMES).prop_map(str::to_owned)
}

fn env_value() -> impl Strategy<Value = String> {
    const FIXED: &[&str] = &[
        "",
        "18446744073709551616s",
        "99999999999999h",
        "true",
        "TRUE",
        "[::1]:0",
        "127.0.0.1:99999",
        "http://127.0.0.1:1",
        "https://[::1",
    ];
    prop_oneof![
        prop::sample::select(FIXED).prop_map(str::to_owned),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| format!("{n}ms")),
        "[a-z0-9:./\\[\\]-]{0,24}",
        ".{0,24}",
    ]
}

// Regression tests: cases the fuzz targets (or reviews of them) turned up, kept by name.

/// A datagram of only newlines: the header is empty, the body is the rest.
#[test]
fn regression_newlines_only() {
    assert_eq!(segments::classify(b"\n"), Datagram::Rejected(Reject::EmptyBody));
    assert_eq!(segments::classify(b"\n\n"), Datagram::Rejected(Reject::InvalidHeader));
}

// The Lambda extension's parsers: whatever reaches /event/next's answer or the telemetry
// listener is an error or an event, never a panic.
fn next_event_body() -> impl Strategy<Value = Vec<u8>> {
    let kind =
        prop_oneof![Just("INVOKE".to_owned()), Just("SHUTDOWN".to_owned()), Just("invoke".to_owned()), "[A-Za-z]{0,8}"];
    let deadline = prop_oneof![
        Just("1".to_owned()),
        Just("\"1700000000000\"".to_owned()),
        Just("-5".to_owned()),
        Just("1e400".to_owned()),
        Just("null".to_owned()),
        Just("[]".to_owned()),
        "[0-9]{0,25}".prop_map(|s| if s.is_empty() { "0".to_owned() } else { s }),
    ];
    let reason = prop_oneof![Just("spindown".to_owned()), Just("TIMEOUT".to_owned()), ".{0,8}"];
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        (kind, deadline, reason).prop_map(|(t, d, r)| {
            format!(
                r#"{{"eventType":{},"requestId":"r","deadlineMs":{d},"shutdownReason":{}}}"#,
                serde_json::json!(t),
                serde_json::json!(r)
            )
            .into_bytes()
        }),
    ]
}

fn telemetry_body() -> impl Strategy<Value = Vec<u8>> {
    let kind = prop_oneof![Just("platform.runtimeDone".to_owned()), Just("platform.report".to_owned()), ".{0,12}"];
    let record = prop_oneof![
        Just(r#"{"requestId":"r","status":"success"}"#.to_owned()),
        Just(r#"{"requestId":7}"#.to_owned()),
        Just(r#"{"requestId":""}"#.to_owned()),
        Just("null".to_owned()),
        Just("[]".to_owned()),
    ];
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        prop::collection::vec((kind, record), 0..6).prop_map(|rs| {
            let items: Vec<String> = rs
                .iter()
                .map(|(t, r)| format!(r#"{{"time":"x","type":{},"record":{r}}}"#, serde_json::json!(t)))
                .collect();
            format!("[{}]", items.join(",")).into_bytes()
        }),
    ]
}

proptest! {
    #[test]
    fn fuzz_lambda_next_event(body in next_event_body()) {
        match NextEvent::parse(&body) {
            Ok(NextEvent::Invoke { .. }) | Ok(NextEvent::Shutdown { .. }) => {
                let text = String::from_utf8_lossy(&body).to_ascii_uppercase();
                prop_assert!(text.contains("\"INVOKE\"") || text.contains("\"SHUTDOWN\""));
            }
            Err(_) => {}
        }
    }

    #[test]
    fn fuzz_lambda_telemetry(body in telemetry_body()) {
        if let Ok(parsed) = events::parse_telemetry(&body) {
            let done = String::from_utf8_lossy(&body).matches("platform.runtimeDone").count();
            prop_assert!(parsed.len() <= done);
            for PlatformEvent::RuntimeDone { request_id, .. } in parsed {
                prop_assert!(request_id == "r" || request_id.is_empty());
            }
        }
    }
}

/// Found by `fuzz_env_parsing`: a buffer size in MB whose byte count overflows u64
/// (2^44 MB = 2^64 bytes) panicked in debug builds and wrapped to a 0-byte buffer in release
/// builds, which would have dropped every segment. It now saturates.
#[test]
fn regression_huge_buffer_memory_does_not_wrap_to_zero() {
    let env: HashMap<String, String> =
        [("XRAY_DAEMON_BUFFER_MEMORY_MB".to_owned(), "17592186044416".to_owned())].into();
    let c = Config::load_with(&Flags::default(), &env, Path::new("/nonexistent/cfg.yaml")).expect("a valid size");
    assert_eq!(c.buffer_memory, u64::MAX);
}
