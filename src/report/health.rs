//! Whether the daemon is alive and ready, for `/health`, `/ready` and the `health-check`
//! subcommand.
//!
//! Alive means the UDP reader and the upload loop are both running: each holds a guard that
//! clears its flag when the task ends for any reason. Ready means the listeners are bound and
//! credentials and region are resolved; until then the reason is kept for `/ready` to show.
//! None of this calls AWS when probed.

use crate::stats::liveness::Liveness;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Liveness plus readiness.
#[derive(Debug)]
pub(crate) struct Health {
    pub(crate) liveness: Arc<Liveness>,
    not_ready: Mutex<Option<String>>,
}

impl Health {
    pub(crate) fn new(liveness: Arc<Liveness>) -> Self {
        Health { liveness, not_ready: Mutex::new(Some("starting".into())) }
    }

    pub(crate) fn set_ready(&self) {
        *self.not_ready.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub(crate) fn set_not_ready(&self, reason: impl Into<String>) {
        *self.not_ready.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.into());
    }

    /// `Ok` when ready, else why not.
    pub(crate) fn ready(&self) -> Result<(), String> {
        if let Some(problem) = self.liveness.problem() {
            return Err(problem.into());
        }
        match self.not_ready.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            None => Ok(()),
            Some(reason) => Err(reason.clone()),
        }
    }
}

/// The address to probe for a configured TCP address: an unspecified host (`0.0.0.0`, `[::]`)
/// is probed on loopback.
pub fn probe_address(tcp_address: &str) -> Result<SocketAddr, String> {
    let addr = tcp_address
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {tcp_address:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("no address for {tcp_address:?}"))?;
    Ok(match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => SocketAddr::from(([127, 0, 0, 1], a.port())),
        SocketAddr::V6(a) if a.ip().is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port())),
        other => other,
    })
}

/// `GET /health` over plain TCP, for images without a shell or curl. `Ok` on a 200.
pub fn check(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    write!(stream, "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 1024];
    // The status line is all we need; stop reading once it is in.
    while !response.contains(&b'\n') && response.len() < 8192 {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("no answer from {addr}: {e}")),
        }
    }
    let status_line = String::from_utf8_lossy(&response);
    let status_line = status_line.lines().next().unwrap_or("");
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        Some(code) => Err(format!("{addr} answered {code}")),
        None => Err(format!("{addr} did not answer with HTTP")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::liveness::AliveGuard;

    #[test]
    fn unspecified_hosts_are_probed_on_loopback() {
        assert_eq!(probe_address("0.0.0.0:2000").unwrap(), "127.0.0.1:2000".parse().unwrap());
        assert_eq!(probe_address("[::]:2000").unwrap(), "[::1]:2000".parse().unwrap());
        assert_eq!(probe_address("127.0.0.2:9").unwrap(), "127.0.0.2:9".parse().unwrap());
        assert!(probe_address("nowhere").is_err());
    }

    #[test]
    fn readiness_needs_both_tasks_and_the_ready_mark() {
        let live = Arc::new(Liveness::default());
        let h = Health::new(live.clone());
        assert_eq!(h.ready(), Err("starting".into()));
        h.set_ready();
        assert_eq!(h.ready(), Ok(()));
        drop(AliveGuard(live.clone(), |l| &l.uploads));
        assert_eq!(h.ready(), Err("the upload loop has stopped".into()));
        assert_eq!(live.problem(), Some("the upload loop has stopped"));
    }
}
