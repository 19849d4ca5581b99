//! Command-line flags, parsed the way Go's `flag` package parses upstream's.
//!
//! Upstream registers each option under a short and a long name, and Go accepts one or two
//! dashes for either: `-b x`, `-b=x`, `--bind x`, `--bind=x`, `-bind x`. Booleans are set bare
//! or with `=value` (`-o=false`); parsing stops at the first argument that is not a flag or
//! after `--`. Usage errors exit 2, help exits 0, as upstream.

use std::fmt;

/// What kind of value a flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Int,
    Bool,
}

struct Spec {
    short: &'static str,
    long: &'static str,
    kind: Kind,
    usage: &'static str,
}

/// The flags in upstream's order, with upstream's usage texts.
const SPECS: &[Spec] = &[
    Spec { short: "a", long: "resource-arn", kind: Kind::Str, usage: "Amazon Resource Name (ARN) of the AWS resource running the daemon." },
    Spec { short: "o", long: "local-mode", kind: Kind::Bool, usage: "Don't check for EC2 instance metadata." },
    Spec { short: "m", long: "buffer-memory", kind: Kind::Int, usage: "Change the amount of memory in MB that buffers can use (minimum 3)." },
    Spec { short: "n", long: "region", kind: Kind::Str, usage: "Send segments to X-Ray service in a specific region." },
    Spec { short: "b", long: "bind", kind: Kind::Str, usage: "Overrides default UDP address (127.0.0.1:2000)." },
    Spec { short: "t", long: "bind-tcp", kind: Kind::Str, usage: "Overrides default TCP address (127.0.0.1:2000)." },
    Spec { short: "r", long: "role-arn", kind: Kind::Str, usage: "Assume the specified IAM role to upload segments to a different account." },
    Spec { short: "c", long: "config", kind: Kind::Str, usage: "Load a configuration file from the specified path." },
    Spec { short: "f", long: "log-file", kind: Kind::Str, usage: "Output logs to the specified file path." },
    Spec { short: "l", long: "log-level", kind: Kind::Str, usage: "Log level, from most verbose to least: dev, debug, info, warn, error, prod (default)." },
    Spec { short: "p", long: "proxy-address", kind: Kind::Str, usage: "Proxy address through which to upload segments." },
    Spec { short: "v", long: "version", kind: Kind::Bool, usage: "Show AWS X-Ray daemon version." },
];

/// The values given on the command line; `None` where a flag was not given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    pub resource_arn: Option<String>,
    pub local_mode: Option<bool>,
    pub buffer_memory: Option<i64>,
    pub region: Option<String>,
    pub bind: Option<String>,
    pub bind_tcp: Option<String>,
    pub role_arn: Option<String>,
    pub config: Option<String>,
    pub log_file: Option<String>,
    pub log_level: Option<String>,
    pub proxy_address: Option<String>,
    pub version: bool,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Run(Box<Flags>),
    Help,
}

/// A usage error, worded as Go's `flag` package words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    #[error("flag provided but not defined: -{0}")]
    Unknown(String),
    #[error("flag needs an argument: -{0}")]
    MissingValue(String),
    #[error("invalid value {value:?} for flag -{flag}: {reason}")]
    BadValue { flag: String, value: String, reason: &'static str },
    #[error("bad flag syntax: {0}")]
    Syntax(String),
}

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Action, FlagError> {
    let mut flags = Flags::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg.len() < 2 || !arg.starts_with('-') {
            break; // the first non-flag argument ends parsing, as in Go
        }
        if arg == "--" {
            break;
        }
        let stripped = arg.strip_prefix("--").unwrap_or(&arg[1..]);
        if stripped.is_empty() || stripped.starts_with('-') || stripped.starts_with('=') {
            return Err(FlagError::Syntax(arg));
        }
        let (name, inline) = match stripped.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (stripped, None),
        };
        let Some(spec) = SPECS.iter().find(|s| s.short == name || s.long == name) else {
            if name == "h" || name == "help" {
                return Ok(Action::Help);
            }
            return Err(FlagError::Unknown(name.to_owned()));
        };
        let value = match (spec.kind, inline) {
            (Kind::Bool, None) => "true".to_owned(),
            (_, Some(v)) => v,
            (_, None) => args.next().ok_or_else(|| FlagError::MissingValue(name.to_owned()))?,
        };
        set(&mut flags, spec, name, value)?;
    }
    Ok(Action::Run(Box::new(flags)))
}

fn set(flags: &mut Flags, spec: &Spec, name: &str, value: String) -> Result<(), FlagError> {
    let bad = |reason| FlagError::BadValue { flag: name.to_owned(), value: value.clone(), reason };
    match spec.kind {
        Kind::Bool => {
            let b = parse_go_bool(&value).ok_or_else(|| bad("parse error"))?;
            match spec.short {
                "o" => flags.local_mode = Some(b),
                _ => flags.version = b,
            }
        }
        Kind::Int => flags.buffer_memory = Some(value.parse().map_err(|_| bad("parse error"))?),
        Kind::Str => {
            let slot = match spec.short {
                "a" => &mut flags.resource_arn,
                "n" => &mut flags.region,
                "b" => &mut flags.bind,
                "t" => &mut flags.bind_tcp,
                "r" => &mut flags.role_arn,
                "c" => &mut flags.config,
                "f" => &mut flags.log_file,
                "l" => &mut flags.log_level,
                _ => &mut flags.proxy_address,
            };
            *slot = Some(value);
        }
    }
    Ok(())
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Upstream's usage screen.
pub struct Usage;

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Usage: X-Ray [options]")?;
        let line = |f: &mut fmt::Formatter<'_>, short: &str, long: &str, usage: &str| {
            let tabs = if long.len() <= 4 { "\t\t" } else { "\t" };
            writeln!(f, "\t-{short}\t--{long}{tabs}{usage}")
        };
        for s in SPECS {
            line(f, s.short, s.long, s.usage)?;
        }
        line(f, "h", "help", "Show this screen")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Action, FlagError> {
        parse(args.iter().map(|s| s.to_string()))
    }

    fn flags(args: &[&str]) -> Flags {
        match run(args) {
            Ok(Action::Run(f)) => *f,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn every_go_spelling_sets_the_same_value() {
        for args in [
            &["-b", "0.0.0.0:2000"][..],
            &["-b=0.0.0.0:2000"],
            &["--bind", "0.0.0.0:2000"],
            &["--bind=0.0.0.0:2000"],
            &["-bind", "0.0.0.0:2000"],
            &["--b=0.0.0.0:2000"],
        ] {
            assert_eq!(flags(args).bind.as_deref(), Some("0.0.0.0:2000"), "{args:?}");
        }
    }

    #[test]
    fn all_flags_parse() {
        let f = flags(&[
            "-a", "arn:x", "-o", "-m", "16", "-n", "eu-west-1", "-b", "[::1]:2000", "-t", "127.0.0.1:2001",
            "-r", "arn:role", "-c", "/etc/x.yaml", "-f", "/tmp/x.log", "-l", "debug", "-p", "http://p:3128",
        ]);
        assert_eq!(f.resource_arn.as_deref(), Some("arn:x"));
        assert_eq!(f.local_mode, Some(true));
        assert_eq!(f.buffer_memory, Some(16));
        assert_eq!(f.region.as_deref(), Some("eu-west-1"));
        assert_eq!(f.bind.as_deref(), Some("[::1]:2000"));
        assert_eq!(f.bind_tcp.as_deref(), Some("127.0.0.1:2001"));
        assert_eq!(f.role_arn.as_deref(), Some("arn:role"));
        assert_eq!(f.config.as_deref(), Some("/etc/x.yaml"));
        assert_eq!(f.log_file.as_deref(), Some("/tmp/x.log"));
        assert_eq!(f.log_level.as_deref(), Some("debug"));
        assert_eq!(f.proxy_address.as_deref(), Some("http://p:3128"));
        assert!(!f.version);
    }

    #[test]
    fn booleans_take_no_separate_value() {
        assert_eq!(flags(&["-o=false"]).local_mode, Some(false));
        assert_eq!(flags(&["--local-mode=1"]).local_mode, Some(true));
        // `-o false`: "false" is the first non-flag argument and ends parsing.
        let f = flags(&["-o", "false", "-n", "x"]);
        assert_eq!((f.local_mode, f.region), (Some(true), None));
        assert!(flags(&["-v"]).version);
        assert!(flags(&["--version"]).version);
    }

    #[test]
    fn usage_errors() {
        assert_eq!(run(&["-bogus"]), Err(FlagError::Unknown("bogus".into())));
        assert_eq!(run(&["-bogus"]).unwrap_err().to_string(), "flag provided but not defined: -bogus");
        assert_eq!(run(&["-b"]), Err(FlagError::MissingValue("b".into())));
        assert_eq!(
            run(&["-m", "lots"]).unwrap_err().to_string(),
            "invalid value \"lots\" for flag -m: parse error"
        );
        assert_eq!(run(&["-o=maybe"]).unwrap_err().to_string(), "invalid value \"maybe\" for flag -o: parse error");
        assert_eq!(run(&["---x"]), Err(FlagError::Syntax("---x".into())));
        assert_eq!(run(&["-h"]), Ok(Action::Help));
        assert_eq!(run(&["--help"]), Ok(Action::Help));
    }

    #[test]
    fn parsing_stops_at_the_first_non_flag() {
        let f = flags(&["-n", "x", "positional", "-bogus"]);
        assert_eq!(f.region.as_deref(), Some("x"));
        let f = flags(&["--", "-bogus"]);
        assert_eq!(f, Flags::default());
    }

    #[test]
    fn usage_matches_upstream_layout() {
        let text = Usage.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Usage: X-Ray [options]");
        assert_eq!(lines[1], "\t-a\t--resource-arn\tAmazon Resource Name (ARN) of the AWS resource running the daemon.");
        assert_eq!(lines[5], "\t-b\t--bind\t\tOverrides default UDP address (127.0.0.1:2000).");
        assert_eq!(lines[13], "\t-h\t--help\t\tShow this screen");
        assert_eq!(lines.len(), 14);
    }
}
