//! Entry point: parse the command line, load the configuration, start logging, and run the
//! mode: a Lambda extension when Lambda started us, else the long-lived sidecar.

use std::collections::HashMap;
use std::process::ExitCode;
use xray_daemon::aws::outbound;
use xray_daemon::config::cli::{self, Action, Help, Usage};
use xray_daemon::config::{self, Config, DEFAULT_TCP_ADDRESS};
use xray_daemon::observe::{health, logging};
use xray_daemon::runner::{lambda, sidecar};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("health-check") {
        args.next();
        return health_check(args.next());
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

/// `xray-daemon health-check [ADDR]`: asks a running daemon's `/health`, for container health
/// checks in images without a shell. ADDR defaults to `XRAY_DAEMON_TCP_ADDRESS`, then
/// 127.0.0.1:2000; an unspecified host such as 0.0.0.0 is probed on loopback.
fn health_check(addr: Option<String>) -> ExitCode {
    let addr = addr
        .or_else(|| std::env::var("XRAY_DAEMON_TCP_ADDRESS").ok().filter(|a| !a.is_empty()))
        .unwrap_or_else(|| DEFAULT_TCP_ADDRESS.to_owned());
    match health::probe_address(&addr).and_then(|a| health::check(a, std::time::Duration::from_secs(3))) {
        Ok(()) => {
            println!("healthy");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::from(1)
        }
    }
}
