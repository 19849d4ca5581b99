//! Entry point: parse the command line, load the configuration, start logging, run.

use std::collections::HashMap;
use std::process::ExitCode;
use xray_daemon::cli::{self, Action, Usage};
use xray_daemon::config::Config;
use xray_daemon::{logging, sidecar};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let flags = match cli::parse(std::env::args().skip(1)) {
        Ok(Action::Run(flags)) => flags,
        Ok(Action::Help) => {
            print!("{Usage}");
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
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = match Config::load(&flags, &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{} [Error] {e}", humantime::format_rfc3339_seconds(std::time::SystemTime::now()));
            return ExitCode::from(1);
        }
    };
    logging::init(config.log_level, config.log_format, std::io::stdout);
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("Cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(sidecar::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(1)
        }
    }
}
