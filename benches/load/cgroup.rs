//! A memory cgroup of the daemon's own for one step: what a container's cgroup (the figure
//! Kubernetes and ECS limit and bill) would be charged for the daemon.
//!
//! The cgroup is created below the harness's own memory cgroup, so it stays inside whatever limit
//! the harness runs under, and the daemon joins it between `fork` and `exec`: everything it
//! allocates is charged there, start-up included. With cgroup v2 (a `memory` controller in the
//! unified hierarchy, delegated to the harness's cgroup) the figures are `memory.current` and
//! `memory.peak`; with a v1 memory hierarchy they are its equivalents, `memory.usage_in_bytes` and
//! `memory.max_usage_in_bytes`. Both count anonymous memory, kernel memory (page tables, slab) and
//! the page cache the cgroup faulted in; v2 also counts socket buffers, v1 does not. Both batch
//! their charges per CPU, so they may read up to 256 KB per CPU above the pages really held.
//! Without root or a memory controller there is no such cgroup, and the table says "n/a".

use std::ffi::CString;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the steps' cgroups are made, found once per run.
pub struct Parent {
    dir: PathBuf,
    v2: bool,
}

impl Parent {
    /// The harness's own memory cgroup, or why the daemon cannot have one of its own here.
    pub fn find() -> Result<Parent, String> {
        let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
        let path_of = |want: &dyn Fn(&str) -> bool| {
            own.lines().find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
                want(ctrl).then(|| path.trim_start_matches('/').to_owned())
            })
        };
        let mut why = Vec::new();
        if let Some(path) = path_of(&|c| c.is_empty()) {
            for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
                let root = Path::new(root);
                let Ok(controllers) = std::fs::read_to_string(root.join("cgroup.controllers")) else { continue };
                if !controllers.split_whitespace().any(|c| c == "memory") {
                    let (root, controllers) = (root.display(), controllers.trim());
                    why.push(format!("cgroup v2 at {root} has no memory controller (it has: {controllers})"));
                    continue;
                }
                // The harness changes no cgroup but the ones it makes: the memory controller must
                // already be enabled for the children of its own cgroup.
                let dir = root.join(&path);
                if delegates_memory(&dir) {
                    return Parent { dir, v2: true }.checked();
                }
                why.push(format!("{}'s cgroup.subtree_control does not enable memory", dir.display()));
            }
        }
        match path_of(&|c| c.split(',').any(|c| c == "memory")) {
            Some(path) if Path::new("/sys/fs/cgroup/memory/memory.usage_in_bytes").exists() => {
                return Parent { dir: Path::new("/sys/fs/cgroup/memory").join(path), v2: false }.checked();
            }
            _ => why.push("no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory".into()),
        }
        Err(why.join("; "))
    }

    /// `self` if a cgroup can be made there (it takes root, or a delegated cgroup).
    fn checked(self) -> Result<Parent, String> {
        drop(self.create(0)?);
        Ok(self)
    }

    /// One line for the results: which files the cgroup columns come from.
    pub fn describe(&self) -> String {
        let (version, files) = if self.v2 {
            ("v2", "`memory.current`, `memory.peak`")
        } else {
            ("v1", "`memory.usage_in_bytes`, `memory.max_usage_in_bytes`; v1 charges no socket buffers")
        };
        format!("cgroup {version} below {} ({files})", self.dir.display())
    }

    /// A new, empty cgroup for one step (removed when dropped).
    pub fn create(&self, step: u64) -> Result<Cgroup, String> {
        let dir = self.dir.join(format!("xray-bench-{}-{step}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let procs = CString::new(dir.join("cgroup.procs").as_os_str().as_bytes()).expect("no NUL in a path");
        let (current, peak) = match self.v2 {
            true => ("memory.current", "memory.peak"),
            false => ("memory.usage_in_bytes", "memory.max_usage_in_bytes"),
        };
        // Read-only where the peak cannot be reset (v2 before Linux 6.12): then it counts from
        // the cgroup's creation, the daemon's start-up included.
        let open = |write| std::fs::OpenOptions::new().read(true).write(write).open(dir.join(peak));
        let peak = open(true).or_else(|_| open(false)).ok();
        Ok(Cgroup { current: dir.join(current), dir, procs, peak, v2: self.v2 })
    }
}

fn delegates_memory(dir: &Path) -> bool {
    let enabled = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    enabled.split_whitespace().any(|c| c == "memory")
}

pub struct Cgroup {
    dir: PathBuf,
    procs: CString,
    current: PathBuf,
    /// Kept open: a v2 `memory.peak` reset holds only for reads through the file descriptor that
    /// wrote it.
    peak: Option<std::fs::File>,
    v2: bool,
}

impl Cgroup {
    /// The child of `cmd` joins this cgroup before `exec`, so its very first page is charged here.
    pub fn enter_on_spawn(&self, cmd: &mut Command) {
        let procs = self.procs.clone();
        // SAFETY: between fork and exec the closure calls only open, write and close, which are
        // async-signal-safe, on memory allocated before the fork.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0": the writing process itself, this child.
                let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
                let err = std::io::Error::last_os_error();
                libc::close(fd);
                if ok {
                    Ok(())
                } else {
                    Err(err)
                }
            });
        }
    }

    /// Charged to the cgroup now, in MB (MiB, as the table's other columns).
    pub fn current_mb(&self) -> Option<f64> {
        mb(&std::fs::read_to_string(&self.current).ok()?)
    }

    /// Makes [`Cgroup::peak_mb`] count from now on.
    pub fn reset_peak(&mut self) {
        let reset: &[u8] = if self.v2 { b"reset" } else { b"0" };
        if let Some(f) = self.peak.as_mut() {
            let _ = f.write_all(reset);
        }
    }

    /// The most charged to the cgroup since [`Cgroup::reset_peak`], in MB.
    pub fn peak_mb(&mut self) -> Option<f64> {
        let f = self.peak.as_mut()?;
        f.seek(SeekFrom::Start(0)).ok()?;
        let mut s = String::new();
        f.read_to_string(&mut s).ok()?;
        mb(&s)
    }
}

fn mb(bytes: &str) -> Option<f64> {
    Some(bytes.trim().parse::<u64>().ok()? as f64 / (1u64 << 20) as f64)
}

impl Drop for Cgroup {
    /// Removes the cgroup once its process has gone (the caller has reaped it); what it still
    /// holds (page cache) moves to the parent.
    fn drop(&mut self) {
        self.peak = None;
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        eprintln!("  could not remove the cgroup {}", self.dir.display());
    }
}
