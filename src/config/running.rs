//! The configuration of the daemon already running beside us, for `xray-daemon health-check`.
//!
//! A container's health check is a process of its own (Docker's `HEALTHCHECK`, ECS's
//! `healthCheck`, a Kubernetes exec probe): it does not get the flags the daemon was started
//! with, and an address given as a flag (`docker run IMAGE -t 0.0.0.0:3000`) beats the image's
//! `XRAY_DAEMON_TCP_ADDRESS` that the health check does get. So the health check reads the
//! daemon's own command line, environment and config file from `/proc`, and loads them as the
//! daemon did. Nothing is written anywhere, so this works on a read-only root filesystem.
//!
//! The daemon is the one process running the same executable file as the health check (same
//! device and inode behind `/proc/PID/exe`) that is not itself a `health-check`, `-v` or `-h`.
//! In a container that is PID 1, or the child of an init such as `docker run --init`. When
//! several are visible (a host running more than one daemon from one binary) none is picked,
//! and the caller falls back to its own settings.

use super::cli::{self, Action};
use super::{file, Config};
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A daemon found running.
#[derive(Debug, Clone, PartialEq)]
pub struct Running {
    pub pid: u32,
    /// Its configuration, loaded from its flags, variables and config file.
    pub config: Config,
}

/// What the search of `/proc` found.
#[derive(Debug)]
pub enum Found {
    One(Box<Running>),
    /// No daemon visible (another PID namespace, another user, not running).
    None,
    /// More than one: their PIDs.
    Several(Vec<u32>),
}

/// Looks for the daemon in `/proc`.
pub fn find() -> Found {
    find_in(Path::new("/proc"), std::process::id())
}

fn find_in(proc: &Path, own_pid: u32) -> Found {
    let Ok(me) = fs::metadata(proc.join("self/exe")) else { return Found::None };
    let Ok(entries) = fs::read_dir(proc) else { return Found::None };
    let mut pids: Vec<u32> = entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    pids.sort_unstable();
    let mut found: Vec<Running> = pids
        .into_iter()
        .filter(|&pid| pid != own_pid)
        .filter(|&pid| {
            fs::metadata(proc.join(format!("{pid}/exe"))).is_ok_and(|m| (m.dev(), m.ino()) == (me.dev(), me.ino()))
        })
        .filter_map(|pid| read(&proc.join(pid.to_string()), pid))
        .collect();
    match found.len() {
        0 => Found::None,
        1 => Found::One(Box::new(found.remove(0))),
        _ => Found::Several(found.iter().map(|r| r.pid).collect()),
    }
}

/// The NUL-separated strings of a `/proc/PID/cmdline` or `environ`.
fn strings(dir: &Path, name: &str) -> Option<Vec<String>> {
    let raw = fs::read(dir.join(name)).ok()?;
    Some(raw.split(|&b| b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect())
}

/// The configuration of the process at `dir` (`/proc/PID`), when it is a running daemon.
fn read(dir: &Path, pid: u32) -> Option<Running> {
    let mut args = strings(dir, "cmdline")?.into_iter().skip(1).peekable();
    if args.peek().is_some_and(|a| a == "health-check") {
        return None;
    }
    let Ok(Action::Run(mut flags)) = cli::parse(args) else { return None };
    if flags.version {
        return None;
    }
    let mut env: HashMap<String, String> = strings(dir, "environ")?
        .into_iter()
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.into(), v.into())))
        .collect();
    // The config file as the daemon sees it: under its root, relative to its working directory.
    let seen = |path: &str| as_seen_by(dir, Path::new(path)).to_string_lossy().into_owned();
    flags.config = flags.config.as_deref().filter(|p| !p.is_empty()).map(seen);
    for (name, value) in env.iter_mut() {
        if name.eq_ignore_ascii_case("XRAY_DAEMON_CONFIG_FILE") && !value.is_empty() {
            *value = seen(value);
        }
    }
    let default_file = as_seen_by(dir, Path::new(file::DEFAULT_PATH));
    let config = Config::load_with(&flags, &env, &default_file).ok()?;
    Some(Running { pid, config })
}

/// `path` as the process at `dir` opens it: absolute paths under its root, relative ones under
/// its working directory (both through `/proc`, so a process in another mount namespace or
/// chroot works too).
fn as_seen_by(dir: &Path, path: &Path) -> PathBuf {
    match path.strip_prefix("/") {
        Ok(rest) => dir.join("root").join(rest),
        Err(_) => dir.join("cwd").join(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fake `/proc` with `self/exe` and one entry per (pid, executable, args, environment).
    fn fake_proc(name: &str, procs: &[(u32, &str, &[&str], &[&str])]) -> PathBuf {
        let base = std::env::temp_dir().join(format!("xray-daemon-running-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let (bin, other, root) = (base.join("bin"), base.join("other"), base.join("rootfs"));
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(&bin, "daemon").unwrap();
        fs::write(&other, "something else").unwrap();
        fs::write(root.join("etc/cfg.yaml"), "Version: 2\nSocket:\n  TCPAddress: 127.0.0.1:4100\n").unwrap();
        let proc = base.join("proc");
        fs::create_dir_all(proc.join("self")).unwrap();
        symlink(&bin, proc.join("self/exe")).unwrap();
        for (pid, exe, args, env) in procs {
            let dir = proc.join(pid.to_string());
            fs::create_dir_all(&dir).unwrap();
            symlink(if *exe == "daemon" { &bin } else { &other }, dir.join("exe")).unwrap();
            symlink(&root, dir.join("root")).unwrap();
            symlink(root.join("etc"), dir.join("cwd")).unwrap();
            let nul = |v: &[&str]| v.iter().map(|s| format!("{s}\0")).collect::<String>();
            fs::write(dir.join("cmdline"), nul(&[&["/xray-daemon"], *args].concat())).unwrap();
            fs::write(dir.join("environ"), nul(env)).unwrap();
        }
        proc
    }

    fn tcp_of(found: Found) -> (u32, String) {
        match found {
            Found::One(r) => (r.pid, r.config.tcp_address),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_daemons_flag_beats_its_variable_and_other_processes_are_skipped() {
        let env: &[&str] = &["XRAY_DAEMON_TCP_ADDRESS=0.0.0.0:2000", "AWS_REGION=us-east-1"];
        let proc = fake_proc(
            "flags",
            &[
                (1, "daemon", &["-t", "0.0.0.0:3000"], env),
                (5, "other", &["-t", "127.0.0.1:9"], env),
                (6, "daemon", &["health-check"], env),
                (7, "daemon", &["-v"], env),
                (8, "daemon", &[], env), // ourselves
            ],
        );
        assert_eq!(tcp_of(find_in(&proc, 8)), (1, "0.0.0.0:3000".into()));
    }

    #[test]
    fn the_daemons_variable_and_config_file_are_read_as_it_reads_them() {
        let proc = fake_proc("env", &[(1, "daemon", &[], &["XRAY_DAEMON_TCP_ADDRESS=127.0.0.1:3100"])]);
        assert_eq!(tcp_of(find_in(&proc, 99)), (1, "127.0.0.1:3100".into()));
        // -c relative to its working directory, XRAY_DAEMON_CONFIG_FILE and the default path under its root
        for (args, env) in [
            (&["-c", "cfg.yaml"][..], &[][..]),
            (&[], &["XRAY_DAEMON_CONFIG_FILE=/etc/cfg.yaml"]),
            (&["--config=/etc/cfg.yaml"], &[]),
        ] {
            let proc = fake_proc("file", &[(1, "daemon", args, env)]);
            assert_eq!(tcp_of(find_in(&proc, 99)), (1, "127.0.0.1:4100".into()), "{args:?} {env:?}");
        }
    }

    #[test]
    fn no_daemon_or_several_pick_none() {
        let proc = fake_proc("none", &[(1, "other", &[], &[])]);
        assert!(matches!(find_in(&proc, 99), Found::None));
        let proc = fake_proc("several", &[(3, "daemon", &["-t", "127.0.0.1:1"], &[]), (4, "daemon", &[], &[])]);
        assert!(matches!(find_in(&proc, 99), Found::Several(p) if p == [3, 4]));
    }

    #[test]
    fn paths_are_resolved_in_the_daemons_root_and_working_directory() {
        let dir = Path::new("/proc/7");
        assert_eq!(as_seen_by(dir, Path::new("/etc/x.yaml")), Path::new("/proc/7/root/etc/x.yaml"));
        assert_eq!(as_seen_by(dir, Path::new("cfg.yaml")), Path::new("/proc/7/cwd/cfg.yaml"));
    }
}
