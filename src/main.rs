//! Entry point: parse the command line, load the configuration, start logging, and run the
//! mode: a Lambda extension when Lambda started us, else the long-lived sidecar.

use std::collections::HashMap;
use std::process::ExitCode;
use xray_daemon::aws::outbound;
use xray_daemon::config::cli::{self, Action, Help, Usage};
use xray_daemon::config::running::{self, Found};
use xray_daemon::config::{self, Config, Flags};
use xray_daemon::report::{health, logging};
use xray_daemon::runner::{lambda, sidecar};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("health-check") {
        args.next();
        return health_check(args.collect());
    }
    let flags = match cli::parse(args) {
        Ok(Action::Run(flags)) => flags,
        Ok(Action::Help) => {
            print!("{Help}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}");
            print!("{Usage}");
            return ExitCode::from(2);
        }
    };
    if flags.version {
        println!("AWS X-Ray daemon version: {}", env!("CARGO_PKG_VERSION"));
        println!("xray-daemon {} (a drop-in replacement written in Rust)", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    // Before any thread starts (it sets an environment variable).
    outbound::prefer_ca_bundle();
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = Config::load(&flags, &env);
    // Known even when the configuration cannot be used, so that its problems are reported in
    // the format asked for.
    let (level, format) = match &config {
        Ok(c) => (c.log_level, c.log_format),
        Err(_) => config::log_choice(&flags, &env),
    };
    if let Some(runtime_api) = config::lambda_runtime_api(&env) {
        // Lambda mode reports even a bad configuration to Lambda, so it starts logging first.
        logging::init(level, format, true, std::io::stdout);
        warn_unknown_variables(&env);
        // The extension logs its errors itself, as it reports them to Lambda.
        return run(|| lambda::run(config, &runtime_api), false);
    }
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            logging::init(level, format, false, std::io::stderr);
            warn_unknown_variables(&env);
            logging::config_error(&e);
            return ExitCode::from(1);
        }
    };
    match &config.log_file {
        None => logging::init(level, format, false, std::io::stdout),
        Some(path) => {
            let limit = config.log_rotation.then_some(logging::ROTATE_AT);
            match logging::LogFile::open(path, limit) {
                Ok(file) => logging::init(level, format, false, file),
                Err(e) => {
                    logging::init(level, format, false, std::io::stderr);
                    tracing::error!("cannot open the log file {}: {e}", path.display());
                    return ExitCode::from(1);
                }
            }
        }
    }
    warn_unknown_variables(&env);
    run(|| sidecar::run(config), true)
}

/// A warning for each set `XRAY_DAEMON_*` variable that nothing reads, naming the closest real
/// one: a typo would otherwise do nothing, silently.
fn warn_unknown_variables(env: &HashMap<String, String>) {
    for unknown in config::names::unknown_variables(env) {
        tracing::warn!(variable = unknown.name.as_str(), closest = unknown.closest, "{unknown}");
    }
}

/// Runs a mode on the async runtime: exit code 0 when it returns `Ok`, else 1, with the error
/// logged if `log_error`. One thread: the work is small per segment and the cost is in wake-ups, which a
/// second worker multiplies (it is woken to steal tasks). At 10,000 segments/s the daemon used
/// 51 % of a core on one thread against 73 % on two, and a Lambda function rarely has more than
/// a fraction of a vCPU.
fn run<F, E>(mode: impl FnOnce() -> F, log_error: bool) -> ExitCode
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("Cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(mode()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if log_error {
                tracing::error!("{e}");
            }
            ExitCode::from(1)
        }
    }
}

/// `xray-daemon health-check [ADDR | FLAGS]`: asks a running daemon's `/health`, for container
/// health checks in images without a shell. An unspecified host such as 0.0.0.0 is probed on
/// loopback. Exit 0 and `healthy` on stdout, else exit 1 and why on stderr.
fn health_check(args: Vec<String>) -> ExitCode {
    let (addr, source) = match health_check_address(args) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("unhealthy: {e}");
            return ExitCode::from(1);
        }
    };
    match health::probe_address(&addr).and_then(|a| health::check(a, std::time::Duration::from_secs(3))) {
        Ok(()) => {
            println!("healthy");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("unhealthy: {e} (the TCP address {addr} from {source})");
            ExitCode::from(1)
        }
    }
}

/// The daemon's TCP address and where it came from, the first of: ADDR; the daemon's flags given
/// to the health check (`-t`, `-c`, with the health check's variables); the configuration of the
/// one daemon running beside it ([`running`]: its flags, variables and config file, read from
/// /proc); the health check's own variables and config file; 127.0.0.1:2000.
fn health_check_address(args: Vec<String>) -> Result<(String, String), String> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let own = |flags: &Flags, source: String| match Config::load(flags, &env) {
        Ok(c) => Ok((c.tcp_address, source)),
        Err(e) => Err(e.to_string()),
    };
    match args.first() {
        Some(addr) if !addr.starts_with('-') => return Ok((addr.clone(), "the command line".into())),
        Some(_) => {
            return match cli::parse(args) {
                Ok(Action::Run(flags)) => own(&flags, "the flags given".into()),
                Ok(Action::Help) => Err("usage: xray-daemon health-check [HOST:PORT | -t HOST:PORT | -c FILE]".into()),
                Err(e) => Err(e.to_string()),
            }
        }
        None => {}
    }
    match running::find() {
        // Port 0 (any free port) says nothing about the port it got.
        Found::One(daemon) if !daemon.config.tcp_address.ends_with(":0") => {
            Ok((daemon.config.tcp_address, format!("the daemon running as PID {}", daemon.pid)))
        }
        Found::One(daemon) => own(&Flags::default(), format!("the environment (PID {} asked for port 0)", daemon.pid)),
        Found::None => own(&Flags::default(), "the environment (no daemon visible in /proc)".into()),
        Found::Several(pids) => own(&Flags::default(), format!("the environment (several daemons: PIDs {pids:?})")),
    }
}
