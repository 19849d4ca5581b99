//! Command-line flags, parsed the way Go's `flag` package parses upstream's.
//!
//! Upstream registers each option under a short and a long name, and Go accepts one or two
//! dashes for either: `-b x`, `-b=x`, `--bind x`, `--bind=x`, `-bind x`. Booleans are set bare
//! or with `=value` (`-o=false`); parsing stops at the first argument that is not a flag or
//! after `--`. Usage errors exit 2, help exits 0, as upstream.
//!
//! The flags and their usage lines are the settings table's (`table.rs`), plus `-v` and `-h`.
//! `-h` prints upstream's usage screen unchanged, then what upstream did not have: the
//! `health-check` subcommand and every environment variable, also from the table.

use super::flags::{Flags, VERSION};
use super::table::{self, DefaultValue};
use std::fmt;

/// Every flag, in upstream's order: the settings' (the table's order), then `-v`.
fn all_flags() -> impl Iterator<Item = &'static super::flags::Flag> {
    table::ALL.iter().filter_map(|s| s.flag.as_ref()).chain([&VERSION])
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
        let Some(flag) = all_flags().find(|f| f.short == name || f.long == name) else {
            if name == "h" || name == "help" {
                return Ok(Action::Help);
            }
            return Err(FlagError::Unknown(name.to_owned()));
        };
        let value = match inline {
            Some(v) => v,
            None if !(flag.slot)(&mut flags).takes_value() => "true".to_owned(),
            None => args.next().ok_or_else(|| FlagError::MissingValue(name.to_owned()))?,
        };
        let bad = FlagError::BadValue { flag: name.to_owned(), value: value.clone(), reason: "parse error" };
        (flag.slot)(&mut flags).set(value).ok_or(bad)?;
    }
    Ok(Action::Run(Box::new(flags)))
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
        for flag in all_flags() {
            line(f, flag.short, flag.long, flag.usage)?;
        }
        line(f, "h", "help", "Show this screen")
    }
}

/// The `-h` screen: upstream's usage screen, then the subcommand and the environment variables.
pub struct Help;

impl fmt::Display for Help {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{Usage}")?;
        writeln!(f, "\nUsage: X-Ray health-check [ADDR]")?;
        writeln!(
            f,
            "\tAsk a running daemon's /health at ADDR (default: XRAY_DAEMON_TCP_ADDRESS, else {}); \
             exit 0 when healthy, else 1.",
            super::DEFAULT_TCP_ADDRESS
        )?;
        writeln!(f, "\nEnvironment variables (a flag wins over its variable, a variable over the config file):")?;
        let (own, platform): (Vec<&&table::Info>, Vec<_>) =
            table::ALL.iter().partition(|s| s.var.starts_with(super::OWN_PREFIX));
        for setting in own {
            let flag = setting.flag.as_ref().map(|f| format!(" (-{})", f.short)).unwrap_or_default();
            writeln!(f, "\t{}{flag}\t{}; default: {}", setting.var, plain(setting.about), default(&setting.default))?;
        }
        writeln!(f, "\nAlso read, from the AWS SDK, ECS, EC2 and Lambda:")?;
        for setting in platform {
            let names: Vec<&str> = std::iter::once(setting.var).chain(setting.also.iter().copied()).collect();
            writeln!(f, "\t{}\t{}", names.join(", then "), plain(setting.about))?;
        }
        Ok(())
    }
}

fn default(value: &DefaultValue) -> String {
    match value {
        DefaultValue::Is(text) => (*text).to_owned(),
        DefaultValue::Empty(text) | DefaultValue::Derived(text) => plain(text),
    }
}

/// The README's Markdown as plain text: no backticks, links as their words.
fn plain(markdown: &str) -> String {
    let mut out = markdown.replace('`', "");
    while let Some(start) = out.find("](") {
        let Some(len) = out[start..].find(')') else { break };
        out.replace_range(start..start + len + 1, "");
        if let Some(open) = out[..start].rfind('[') {
            out.remove(open);
        }
    }
    out
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
            "-a",
            "arn:x",
            "-o",
            "-m",
            "16",
            "-n",
            "eu-west-1",
            "-b",
            "[::1]:2000",
            "-t",
            "127.0.0.1:2001",
            "-r",
            "arn:role",
            "-c",
            "/etc/x.yaml",
            "-f",
            "/tmp/x.log",
            "-l",
            "debug",
            "-p",
            "http://p:3128",
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
        assert_eq!(run(&["-m", "lots"]).unwrap_err().to_string(), "invalid value \"lots\" for flag -m: parse error");
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

    /// Upstream's `-h` screen, byte for byte: its lines come from the settings table, in the
    /// table's order, so this also holds the table to upstream's order of flags.
    #[test]
    fn usage_matches_upstream_layout() {
        let text = Usage.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Usage: X-Ray [options]");
        assert_eq!(
            lines[1],
            "\t-a\t--resource-arn\tAmazon Resource Name (ARN) of the AWS resource running the daemon."
        );
        assert_eq!(lines[5], "\t-b\t--bind\t\tOverrides default UDP address (127.0.0.1:2000).");
        assert_eq!(lines[13], "\t-h\t--help\t\tShow this screen");
        assert_eq!(lines.len(), 14);
        assert_eq!(text, UPSTREAM_USAGE);
    }

    /// `-h` is upstream's screen, then the subcommand and every variable of the table.
    #[test]
    fn help_adds_the_subcommand_and_every_variable_after_upstreams_screen() {
        let text = Help.to_string();
        let rest = text.strip_prefix(UPSTREAM_USAGE).expect("upstream's screen first");
        assert!(rest.starts_with("\nUsage: X-Ray health-check [ADDR]\n"), "{rest}");
        for setting in table::ALL {
            assert!(rest.contains(&format!("\t{}", setting.var)), "{} missing:\n{rest}", setting.var);
        }
        assert!(rest.contains(
            "\tXRAY_DAEMON_UDP_ADDRESS (-b)\tUDP address to receive segments on; IPv6 as [::1]:2000; \
             default: 127.0.0.1:2000\n"
        ));
        assert!(rest.contains("default: end\n") && rest.contains("(see Lambda);"), "{rest}");
        assert!(!rest.contains('`') && !rest.contains("](#"), "no Markdown: {rest}");
        assert_eq!(plain("a [Lambda](#lambda) b [c](#d)"), "a Lambda b c");
    }

    const UPSTREAM_USAGE: &str = concat!(
        "Usage: X-Ray [options]\n",
        "\t-a\t--resource-arn\tAmazon Resource Name (ARN) of the AWS resource running the daemon.\n",
        "\t-o\t--local-mode\tDon't check for EC2 instance metadata.\n",
        "\t-m\t--buffer-memory\tChange the amount of memory in MB that buffers can use (minimum 3).\n",
        "\t-n\t--region\tSend segments to X-Ray service in a specific region.\n",
        "\t-b\t--bind\t\tOverrides default UDP address (127.0.0.1:2000).\n",
        "\t-t\t--bind-tcp\tOverrides default TCP address (127.0.0.1:2000).\n",
        "\t-r\t--role-arn\tAssume the specified IAM role to upload segments to a different account.\n",
        "\t-c\t--config\tLoad a configuration file from the specified path.\n",
        "\t-f\t--log-file\tOutput logs to the specified file path.\n",
        "\t-l\t--log-level\tLog level, from most verbose to least: dev, debug, info, warn, error, ",
        "prod (default).\n",
        "\t-p\t--proxy-address\tProxy address through which to upload segments.\n",
        "\t-v\t--version\tShow AWS X-Ray daemon version.\n",
        "\t-h\t--help\t\tShow this screen\n",
    );
}
