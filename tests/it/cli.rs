//! What a user sees from the command line: help, version, usage errors and exit codes.

use crate::daemon::run_to_exit;
use std::time::{Duration, Instant};

const REGION: (&str, &str) = ("AWS_REGION", "us-east-1");

#[test]
fn help_prints_upstream_usage_and_exits_0() {
    let (code, out, _) = run_to_exit(&["-h"], &[]);
    assert_eq!(code, 0);
    assert!(out.starts_with("Usage: X-Ray [options]\n\t-a\t--resource-arn\t"), "{out}");
    assert!(out.contains("\t-b\t--bind\t\tOverrides default UDP address (127.0.0.1:2000).\n"));
    assert_eq!(run_to_exit(&["--help"], &[]).1, out);
}

/// After upstream's screen: the `health-check` subcommand and the environment variables.
#[test]
fn help_lists_the_subcommand_and_the_environment_variables() {
    let (code, out, _) = run_to_exit(&["-h"], &[]);
    assert_eq!(code, 0);
    let (upstream, ours) = out.split_once("\t-h\t--help\t\tShow this screen\n").expect("upstream's last line");
    assert_eq!(upstream.lines().count(), 13, "{out}");
    assert!(ours.starts_with("\nUsage: X-Ray health-check [ADDR]\n"), "{ours}");
    for line in [
        "\tXRAY_DAEMON_UDP_ADDRESS (-b)\tUDP address to receive segments on; IPv6 as [::1]:2000; default: 127.0.0.1:2000\n",
        "\tXRAY_DAEMON_LOG_FORMAT\ttext (upstream's lines) or json (one object per line); default: text\n",
        "\tAWS_LAMBDA_LOG_FORMAT\tLambda mode: JSON or Text, ",
    ] {
        assert!(ours.contains(line), "{line:?} missing:\n{ours}");
    }
    // A usage error still shows upstream's screen alone.
    let (_, usage, _) = run_to_exit(&["-bogus"], &[]);
    assert_eq!(format!("{upstream}\t-h\t--help\t\tShow this screen\n"), usage);
}

#[test]
fn version_prints_the_upstream_line_and_exits_0() {
    let (code, out, _) = run_to_exit(&["-v"], &[]);
    assert_eq!(code, 0);
    assert!(out.starts_with(&format!("AWS X-Ray daemon version: {}\n", env!("CARGO_PKG_VERSION"))), "{out}");
    assert!(out.contains("xray-daemon"));
}

#[test]
fn unknown_flag_exits_2_with_go_message_and_usage() {
    let (code, out, err) = run_to_exit(&["-bogus"], &[]);
    assert_eq!(code, 2);
    assert_eq!(err.trim(), "flag provided but not defined: -bogus");
    assert!(out.starts_with("Usage: X-Ray"));
    let (code, _, err) = run_to_exit(&["-m", "lots"], &[]);
    assert_eq!((code, err.trim()), (2, "invalid value \"lots\" for flag -m: parse error"));
}

#[test]
fn bad_values_exit_1_naming_the_flag_or_variable() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&["-m", "2"], &[REGION], "Not enough Buffers Memory Allocated. Min Buffers Memory required: 3 MB."),
        (&["-b", "127.0.0.1"], &[REGION], "-b/--bind"),
        (&[], &[REGION, ("XRAY_DAEMON_UDP_ADDRESS", "nowhere")], "XRAY_DAEMON_UDP_ADDRESS"),
        (&["-l", "loud"], &[REGION], "-l/--log-level"),
        (&[], &[REGION, ("XRAY_DAEMON_BUFFER_MEMORY_MB", "x")], "XRAY_DAEMON_BUFFER_MEMORY_MB"),
    ];
    for (args, env, needle) in cases {
        let (code, _, err) = run_to_exit(args, env);
        assert_eq!(code, 1, "{args:?} {env:?}: {err}");
        assert!(err.contains(needle), "{args:?} {env:?}: {err}");
        assert!(err.contains("[Error] "), "{err}");
        assert_eq!(err.lines().count(), 1, "one clear line: {err}");
    }
}

#[test]
fn every_bad_value_is_reported_before_exit_1() {
    let env = [REGION, ("XRAY_DAEMON_CONCURRENCY", "0"), ("XRAY_DAEMON_LOG_FORMAT", "xml")];
    let (code, _, err) = run_to_exit(&["-b", "127.0.0.1", "-l", "loud"], &env);
    assert_eq!(code, 1, "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines[0].ends_with("[Error] 4 problems with the configuration:"), "{err}");
    assert_eq!(lines.len(), 5, "{err}");
    let named = ["-b/--bind", "XRAY_DAEMON_CONCURRENCY", "-l/--log-level", "XRAY_DAEMON_LOG_FORMAT"];
    for (line, name) in lines[1..].iter().zip(named) {
        assert!(line.starts_with("  invalid value ") && line.contains(name), "{name}: {err}");
    }
}

#[test]
fn a_busy_udp_port_exits_1() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let t0 = Instant::now();
    let (code, out, err) = run_to_exit(&["-b", &addr, "-t", "127.0.0.1:0"], &[REGION]);
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_eq!(code, 1);
    let all = format!("{out}{err}");
    assert!(all.contains(&format!("[Error] listen udp {addr}:")) && all.contains("in use"), "{all}");
}
