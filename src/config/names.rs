//! The daemon's variable names, and the warning for a set one that is none of them.
//!
//! A mistyped variable (`XRAY_DAEMON_UDP_ADRESS`) does nothing, silently: the daemon runs with
//! the default and the user looks elsewhere. So every set `XRAY_DAEMON_*` variable that nothing
//! reads gets a warning at start that names the closest real one. The names are the settings
//! table's (`table.rs`), so a new setting is known as soon as it is in the table, plus the few
//! that other parts of the project read ([`OTHERS`]); a test holds that list to the sources.

use super::{table, OWN_PREFIX};
use std::collections::HashMap;
use std::fmt;

/// `XRAY_DAEMON_*` variables read outside the settings table.
pub(crate) const OTHERS: &[&str] = &[
    // The Lambda layer's wrapper (extension/wrapper) runs this wrapper after its own.
    "XRAY_DAEMON_EXEC_WRAPPER",
    // The project's tests: the binary, images and layers under test.
    "XRAY_DAEMON_BIN",
    "XRAY_DAEMON_IMAGE_BIN_AMD64",
    "XRAY_DAEMON_IMAGE_BIN_ARM64",
    "XRAY_DAEMON_LAYER_ARM64",
    "XRAY_DAEMON_LAYER_X86_64",
    "XRAY_DAEMON_DIST_BIN_X86_64",
    "XRAY_DAEMON_DIST_BIN_ARM64",
    // Read at build time (`option_env!`): the commit, for `xray_daemon_build_info`.
    "XRAY_DAEMON_REVISION",
];

/// A set variable with the daemon's prefix that nothing reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVariable {
    pub name: String,
    /// The real name it is closest to, when one is close enough to be what was meant.
    pub closest: Option<&'static str>,
}

impl fmt::Display for UnknownVariable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is set, but the daemon has no such variable", self.name)?;
        match self.closest {
            Some(closest) => write!(f, "; did you mean {closest}?"),
            None => write!(f, " (xray-daemon --help lists them)"),
        }
    }
}

/// Every `XRAY_DAEMON_*` name something in the project reads.
fn known() -> impl Iterator<Item = &'static str> {
    table::ALL.iter().map(|s| s.var).filter(|v| v.starts_with(OWN_PREFIX)).chain(OTHERS.iter().copied())
}

/// The set (non-empty) variables whose name starts with the daemon's prefix, in any case, and
/// that nothing reads, by name. The loader reads the part after the prefix in any case
/// (`XRAY_DAEMON_log_level`), but the prefix only in capitals.
pub fn unknown_variables(env: &HashMap<String, String>) -> Vec<UnknownVariable> {
    let mut unknown: Vec<UnknownVariable> = env
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .filter_map(|(name, _)| {
            let upper = name.to_ascii_uppercase();
            let rest = upper.strip_prefix(OWN_PREFIX)?;
            if name.starts_with(OWN_PREFIX) && known().any(|k| k == upper) {
                return None;
            }
            Some(UnknownVariable { name: name.clone(), closest: closest(rest) })
        })
        .collect();
    unknown.sort_by(|a, b| a.name.cmp(&b.name));
    unknown
}

/// The known name whose part after the prefix is nearest to `rest` (Damerau-Levenshtein: a
/// swapped pair of letters is one edit), if it is within a third of its length (at least 2).
fn closest(rest: &str) -> Option<&'static str> {
    let (distance, name) =
        known().map(|k| (strsim::damerau_levenshtein(rest, &k[OWN_PREFIX.len()..]), k)).min_by_key(|&(d, _)| d)?;
    (distance <= (name.len() - OWN_PREFIX.len()).div_ceil(3).max(2)).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn unknown(pairs: &[(&str, &str)]) -> Vec<String> {
        let env = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        unknown_variables(&env).iter().map(|u| u.to_string()).collect()
    }

    #[test]
    fn a_mistyped_variable_is_named_with_the_closest_real_one() {
        assert_eq!(
            unknown(&[("XRAY_DAEMON_UDP_ADRESS", "127.0.0.1:3000"), ("XRAY_DAEMON_UDP_ADDRESS", "127.0.0.1:2000")]),
            ["XRAY_DAEMON_UDP_ADRESS is set, but the daemon has no such variable; did you mean XRAY_DAEMON_UDP_ADDRESS?"]
        );
        for (typo, meant) in [
            ("XRAY_DAEMON_LOGLEVEL", "XRAY_DAEMON_LOG_LEVEL"),
            ("XRAY_DAEMON_BUFFER_MEMORY", "XRAY_DAEMON_BUFFER_MEMORY_MB"),
            ("XRAY_DAEMON_CONCURENCY", "XRAY_DAEMON_CONCURRENCY"),
            ("XRAY_DAEMON_REGOIN", "XRAY_DAEMON_REGION"),
            ("XRAY_DAEMON_TCP_ADDR", "XRAY_DAEMON_TCP_ADDRESS"),
            // The prefix is only read in capitals.
            ("xray_daemon_CONCURRENCY", "XRAY_DAEMON_CONCURRENCY"),
        ] {
            let env = HashMap::from([(typo.to_owned(), "1".to_owned())]);
            assert_eq!(unknown_variables(&env), [UnknownVariable { name: typo.into(), closest: Some(meant) }]);
        }
    }

    #[test]
    fn known_empty_and_unrelated_variables() {
        let known = [
            ("XRAY_DAEMON_TELEMETRY", "false"),
            ("XRAY_DAEMON_log_level", "debug"),
            ("XRAY_DAEMON_EXEC_WRAPPER", "/opt/otel-instrument"),
            ("XRAY_DAEMON_UDP_ADRESS", ""),
            ("AWS_XRAY_DAEMON_ADDRESS", "127.0.0.1:2000"),
            ("PATH", "/bin"),
        ];
        assert!(unknown(&known).is_empty(), "{:?}", unknown(&known));
        assert_eq!(
            unknown(&[("XRAY_DAEMON_SOMETHING_ELSE_ENTIRELY", "1")]),
            ["XRAY_DAEMON_SOMETHING_ELSE_ENTIRELY is set, but the daemon has no such variable (xray-daemon --help \
              lists them)"]
        );
    }

    /// Files under `dir` (recursively), skipping build output and dependencies.
    fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if ["target", "node_modules", ".git", "__pycache__"].iter().any(|skip| name == *skip) {
                continue;
            }
            if path.is_dir() {
                files(&path, out);
            } else {
                out.push(path);
            }
        }
    }

    /// Every `XRAY_DAEMON_*` name that the daemon, the layer, the image, the chart, the Makefile
    /// or the tests use is known, so that none of them draws the warning. Only the tests' own
    /// examples of unknown names are left out.
    #[test]
    fn every_variable_the_project_uses_is_known() {
        // The other tests' unknown names; this file's own examples are not read.
        const EXAMPLES: [&str; 3] = ["_ADRESS", "_GONE", "_UNKNOWN"];
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut paths = vec![root.join("Makefile")];
        for dir in ["src", "extension", "docker", "helm", "tests", "examples", ".ci"] {
            files(&root.join(dir), &mut paths);
        }
        let mut missing = std::collections::BTreeSet::new();
        for path in paths {
            if path.ends_with(file!().trim_start_matches("./")) {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            for (at, _) in text.match_indices(OWN_PREFIX) {
                if text[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                    continue; // AWS_XRAY_DAEMON_ADDRESS, the SDK's
                }
                let name: String = text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                let name = name.trim_end_matches('_');
                if name.len() > OWN_PREFIX.len()
                    && !known().any(|k| k == name)
                    && !EXAMPLES.iter().any(|e| name.contains(e))
                {
                    missing.insert(format!("{name} ({})", path.strip_prefix(root).unwrap_or(&path).display()));
                }
            }
        }
        assert!(missing.is_empty(), "add these to the settings table or to OTHERS: {missing:#?}");
    }
}
