//! The UDP port: reads datagrams, classifies them, and stores segments and the spans of `T1S`
//! datagrams in their buffers.
//!
//! The reader never waits on the uploader: storing a body is a short, non-blocking buffer push
//! that drops the oldest segments when the buffer is full. After each wake-up it empties the
//! kernel queue with non-blocking reads (several datagrams per system call), then pauses 20 ms
//! (unless that would fill the kernel's buffer), so it wakes 50 times a second rather than once
//! per datagram. It asks the kernel for a large receive buffer so bursts are not lost before it
//! gets to them. Reading comes first: under a flood the reader lets the other tasks on its
//! thread run only between turns of [`READ_BUDGET`] datagrams, and the segment buffer, not the
//! kernel's, takes the backlog. On shutdown (or on a drain request from a Lambda flush) it reads
//! whatever is already queued in the socket before it returns or answers. It asks the kernel for
//! its count of datagrams dropped on the socket (`SO_RXQ_OVFL`), which comes with the first
//! datagram read after a drop, for `xray_daemon_udp_kernel_drops_total`.
//!
//! It is over 500 lines: the reader, its system calls and the [`Datagrams`] it hands each
//! datagram to are one step of a
//! datagram's path (see the crate docs), and its tests read real sockets.

use crate::pipeline::intake::{Intake, SourceControl, WhenFull};
use crate::signal::segments::{self, Datagram, OtlpKind, Reject};
use crate::signal::spans;
use crate::stats::log_limit::{suppressed_note, RateLimitedWarn};
use crate::stats::{SpanSource, Stats};
use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};

use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::oneshot;
use tracing::{debug, enabled, error, info, warn, Level};

/// The most datagrams one turn reads before the reader lets the other tasks on its thread run
/// (uploads, the TCP port, /health): 4,096 is a few milliseconds of reading. A smaller budget
/// hands the thread to the uploads so often that under a flood the reader falls behind and the
/// kernel drops datagrams (at 256 the kernel dropped 2 % at 30,000/s in `make bench`); the
/// segment buffer holds the backlog instead, and the uploads catch up once the flood ends.
const READ_BUDGET: usize = 4_096;

/// Datagrams one receive system call returns at most (`recvmmsg` on Linux). Each has a 64 KiB
/// buffer; only the pages that datagrams were written into are resident.
const RECV_BATCH: usize = 8;

/// Room for the largest UDP payload, IPv6 included.
const RECV_BUFFER: usize = 65_536;

/// The most one drain reads: more than a full 8 MiB kernel buffer holds (the kernel charges
/// each datagram several hundred bytes of overhead at least), a fraction of a second of reading.
const DRAIN_MAX: usize = 16_384;

/// After emptying the socket, the reader waits this long before it looks again, so it wakes
/// 50 times a second whatever the rate instead of once per datagram: each wake is a context
/// switch, and on a VM often a vCPU halt and an interrupt, which cost far more than reading a
/// datagram (~180 µs of CPU per wake on the Firecracker VM of `make bench`). The kernel holds
/// what arrives meanwhile; a drain request or shutdown ends the pause at once.
const PAUSE: Duration = Duration::from_millis(20);

/// Binding failed; the message names the address.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot resolve UDP address {address:?}: {source}")]
    Resolve { address: String, source: io::Error },
    #[error("listen udp {address}: {source}")]
    Bind { address: String, source: io::Error },
}

/// A bound socket and the receive buffer size the kernel granted.
pub(crate) struct Bound {
    pub socket: UdpSocket,
    pub local_addr: SocketAddr,
    pub(crate) receive_buffer: usize,
}

/// Binds the UDP address (IPv4 or IPv6, host names resolve to their first address; `[::]` takes
/// IPv4 as well) and asks for `receive_buffer` bytes of kernel buffer.
pub(crate) fn bind(address: &str, receive_buffer: usize) -> Result<Bound, BindError> {
    let addr = address
        .to_socket_addrs()
        .and_then(|mut a| a.next().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")))
        .map_err(|source| BindError::Resolve { address: address.to_owned(), source })?;
    let bind_err = |source| BindError::Bind { address: addr.to_string(), source };
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(bind_err)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        // `[::]` takes IPv4 too, as upstream's Go socket does, whatever net.ipv6.bindv6only says:
        // the X-Ray SDKs send over IPv4 only (the Lambda wrapper points them at 127.0.0.1).
        socket.set_only_v6(false).map_err(bind_err)?;
    }
    if socket.set_recv_buffer_size(receive_buffer).is_ok() {
        // Linux caps SO_RCVBUF at net.core.rmem_max; a privileged process may go past it.
        if socket.recv_buffer_size().unwrap_or(0) < receive_buffer {
            force_recv_buffer(&socket, receive_buffer);
        }
    }
    // The kernel's count of datagrams dropped on this socket, handed over with each datagram
    // read after a drop (xray_daemon_udp_kernel_drops_total). Without it the count stays 0.
    if let Err(e) = enable_drop_counter(&socket) {
        debug!("SO_RXQ_OVFL: {e}; kernel drops will not be counted");
    }
    socket.set_nonblocking(true).map_err(bind_err)?;
    socket.bind(&addr.into()).map_err(bind_err)?;
    let socket: UdpSocket = socket.into();
    let local_addr = socket.local_addr().map_err(bind_err)?;
    let granted = Socket::from(socket.try_clone().map_err(bind_err)?).recv_buffer_size().unwrap_or(0);
    Ok(Bound { socket, local_addr, receive_buffer: granted })
}

#[cfg(target_os = "linux")]
fn force_recv_buffer(socket: &Socket, bytes: usize) {
    let _ = set_socket_option(socket, libc::SO_RCVBUFFORCE, libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX));
}

#[cfg(target_os = "linux")]
fn enable_drop_counter(socket: &Socket) -> io::Result<()> {
    set_socket_option(socket, libc::SO_RXQ_OVFL, 1)
}

/// `setsockopt(SOL_SOCKET, name, value)` for an integer option.
#[cfg(target_os = "linux")]
fn set_socket_option(socket: &Socket, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt with a valid fd and a pointer to a c_int that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn force_recv_buffer(_: &Socket, _: usize) {}

#[cfg(not(target_os = "linux"))]
fn enable_drop_counter(_: &Socket) -> io::Result<()> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "not on this OS"))
}

/// What the reader hands each datagram to: counts and classifies it, and hands what it carries
/// to the pipeline's [`Intake`].
pub struct Datagrams {
    intake: Intake,
    stats: Arc<Stats>,
    rejected_warn: RateLimitedWarn,
    malformed_warn: RateLimitedWarn,
}

impl Datagrams {
    pub fn new(intake: Intake) -> Self {
        let warn = || RateLimitedWarn::new(10);
        let stats = intake.stats().clone();
        Datagrams { intake, stats, rejected_warn: warn(), malformed_warn: warn() }
    }

    /// Handles one datagram: count, classify, store.
    pub fn accept(&self, datagram: &[u8]) {
        if datagram.is_empty() {
            return;
        }
        Stats::add(&self.stats.received, 1);
        self.stats.datagram_seen();
        match segments::classify(datagram) {
            Datagram::Segment(body) => {
                Stats::add(&self.stats.segments_received, 1);
                self.intake.segment(Bytes::copy_from_slice(body));
            }
            Datagram::Otlp(OtlpKind::SampledSpans, payload) => self.sampled_spans(payload, datagram.len()),
            Datagram::Otlp(kind, _) => {
                Stats::add(&self.stats.otlp, 1);
                if kind == OtlpKind::UnsampledSpans {
                    Stats::add(&self.stats.otlp_unsampled, 1);
                }
                debug!("Received an OTLP datagram ({kind:?}, {} bytes); it is counted, not forwarded", datagram.len());
            }
            Datagram::Rejected(reason) => {
                Stats::add(&self.stats.rejected_datagrams, 1);
                Stats::add(&self.stats.rejected_reasons[reason as usize], 1);
                self.rejected(reason, datagram);
            }
        }
    }

    /// A `T1S` datagram: its spans go to the pipeline; a payload that is not an OTLP request
    /// is rejected, counted and logged without its bytes.
    fn sampled_spans(&self, payload: &[u8], size: usize) {
        let received = match spans::from_udp(payload) {
            Ok(received) => received,
            Err(e) => {
                Stats::add(&self.stats.rejected_datagrams, 1);
                Stats::add(&self.stats.spans_malformed, 1);
                if let Some(suppressed) = self.malformed_warn.check() {
                    warn!(
                        reason = "malformed_t1s",
                        size,
                        "Malformed T1S datagram of {size} bytes rejected: {e}{}",
                        suppressed_note(suppressed)
                    );
                }
                return;
            }
        };
        Stats::add(&self.stats.otlp_sampled, 1);
        // Nobody to tell to come back later: the oldest spans make room.
        let _always_taken = self.intake.spans(received, SpanSource::Udp, WhenFull::DropOldest);
    }

    fn rejected(&self, reason: Reject, datagram: &[u8]) {
        if let Some(suppressed) = self.rejected_warn.check() {
            warn!(
                reason = reason.as_str(),
                size = datagram.len(),
                suppressed,
                "{reason}: rejected a datagram of {} bytes{}",
                datagram.len(),
                suppressed_note(suppressed)
            );
        }
        if enabled!(Level::DEBUG) {
            debug!("Rejected datagram ({}): {}", reason.as_str(), segments::preview(datagram, 256));
        }
    }
}

/// Reads the socket into `intake` until `control` says stop, then drains what the kernel
/// already holds and returns. A drain request asks for the same drain without stopping; the
/// reply is sent after it.
///
/// The socket is registered for readiness only while the reader waits for traffic. Once
/// datagrams flow it reads, pauses, reads again, with the socket unregistered: a registered
/// socket wakes the thread for every datagram that arrives, even while the reader pauses.
pub async fn run(mut socket: UdpSocket, intake: Intake, mut control: SourceControl) {
    let sink = Datagrams::new(intake);
    let mut receiver = Receiver::new();
    // What one pause may leave in the kernel: an eighth of its buffer, the rest is for bursts.
    // A wake that read more means the traffic would fill it; then the reader does not pause.
    let pause_bytes = socket2::SockRef::from(&socket).recv_buffer_size().unwrap_or(0) / 8;
    let mut waiting = true;
    loop {
        let event = if waiting {
            // SAFETY: the std socket owns its descriptor, which stays open and the same while
            // the AsyncFd owns the socket; into_inner deregisters it before handing it back.
            let registered = match unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) } {
                Ok(registered) => registered,
                Err(e) => {
                    let (_, e) = e.into_parts();
                    error!("Cannot wait for UDP datagrams: {e}");
                    return;
                }
            };
            let event = tokio::select! {
                biased;
                _ = control.stopped() => Event::Shutdown,
                reply = control.drain_requested() => Event::Drain(reply),
                ready = registered.readable() => match ready {
                    Ok(mut guard) => {
                        guard.clear_ready();
                        Event::Traffic
                    }
                    Err(e) => Event::Failed(e),
                },
            };
            socket = registered.into_inner();
            event
        } else if control.is_stopped() {
            Event::Shutdown
        } else if let Some(reply) = control.try_drain_request() {
            Event::Drain(reply)
        } else {
            Event::Traffic
        };
        match event {
            Event::Shutdown => {
                let n = receiver.drain(&socket, &sink);
                debug!("UDP reader stopped; read {n} datagrams that were still queued");
                return;
            }
            Event::Drain(reply) => {
                receiver.drain(&socket, &sink);
                let _ = reply.send(());
            }
            Event::Failed(e) => {
                warn!("UDP socket error: {e}");
                tokio::time::sleep(PAUSE).await;
            }
            Event::Traffic => {
                let turn = receiver.read(&socket, &sink, READ_BUDGET);
                waiting = turn.datagrams == 0;
                if turn.end == End::Budget || turn.bytes >= pause_bytes {
                    // More is coming than a pause could hold: read on, but let the flush drivers, the
                    // uploads and the TCP port run first (they share this thread).
                    tokio::task::yield_now().await;
                } else if turn.datagrams > 0 {
                    tokio::select! {
                        biased;
                        _ = control.stopped() => {}
                        reply = control.drain_requested() => {
                            receiver.drain(&socket, &sink);
                            let _ = reply.send(());
                        }
                        _ = tokio::time::sleep(PAUSE) => {}
                    }
                }
            }
        }
    }
}

/// What the reader does next.
enum Event {
    Shutdown,
    Drain(oneshot::Sender<()>),
    Traffic,
    Failed(io::Error),
}

/// What one turn of reading did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Turn {
    datagrams: usize,
    bytes: usize,
    end: End,
}

/// Why a turn of reading ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// It read as many datagrams as it was allowed; more may be queued.
    Budget,
    /// The kernel had nothing more.
    Empty,
    /// The socket reported an error (a queued ICMP report and the like).
    Failed,
}

/// Reads datagrams with non-blocking calls, [`RECV_BATCH`] per call where the OS allows it.
struct Receiver {
    bufs: Vec<Vec<u8>>,
    /// The kernel's drop counter as last read (it is a wrapping `u32`).
    kernel_drops: u32,
}

impl Receiver {
    fn new() -> Self {
        Receiver { bufs: (0..RECV_BATCH).map(|_| vec![0u8; RECV_BUFFER]).collect(), kernel_drops: 0 }
    }

    /// Counts the drops since the counter was last read.
    fn kernel_drops(&mut self, now: u32, stats: &Stats) {
        let new = now.wrapping_sub(self.kernel_drops);
        // The counter only grows; a datagram queued before a later one carries an older count.
        if new > 0 && new < 1 << 31 {
            self.kernel_drops = now;
            Stats::add(&stats.kernel_drops, u64::from(new));
        }
    }

    /// Reads until the socket is empty or `max` datagrams were read, and hands each to `sink`.
    fn read(&mut self, socket: &UdpSocket, sink: &Datagrams, max: usize) -> Turn {
        let mut turn = Turn { datagrams: 0, bytes: 0, end: End::Budget };
        let mut lens = [0usize; RECV_BATCH];
        while turn.datagrams < max {
            let want = (max - turn.datagrams).min(RECV_BATCH);
            match recv_batch(socket, &mut self.bufs[..want], &mut lens) {
                Ok((n, drops)) => {
                    for (buf, &len) in self.bufs.iter().zip(&lens[..n]) {
                        sink.accept(&buf[..len]);
                        turn.bytes += len;
                    }
                    turn.datagrams += n;
                    if let Some(drops) = drops {
                        self.kernel_drops(drops, &sink.stats);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    turn.end = End::Empty;
                    break;
                }
                Err(e) => {
                    // ICMP errors and the like: nothing to do but go on reading later.
                    debug!("UDP receive error: {e}");
                    turn.end = End::Failed;
                    break;
                }
            }
        }
        turn
    }

    /// Reads until the socket is empty, or until [`DRAIN_MAX`] datagrams were read (under a
    /// flood it would never be: the drain must end, it runs on the only thread). Returns how
    /// many datagrams were read.
    fn drain(&mut self, socket: &UdpSocket, sink: &Datagrams) -> usize {
        let (mut n, mut errors) = (0, 0);
        while n < DRAIN_MAX {
            let turn = self.read(socket, sink, DRAIN_MAX - n);
            n += turn.datagrams;
            // Errors such as a queued ICMP report are one-off; a socket that keeps failing is
            // given up on.
            match turn.end {
                End::Budget => {}
                End::Failed if errors < 16 => errors += 1,
                End::Empty | End::Failed => return n,
            }
        }
        n
    }
}

/// Room for the control messages of one datagram: the drop counter's `cmsghdr` and `u32`
/// (`CMSG_SPACE(4)`, 24 bytes on 64-bit Linux), aligned as a `cmsghdr`.
#[cfg(target_os = "linux")]
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct Control([u8; 32]);

/// One non-blocking `recvmmsg`: fills `bufs` from the front with up to `bufs.len()` datagrams
/// and their lengths into `lens`. Returns how many, and the kernel's drop counter if a datagram
/// carried it (only after the socket's first drop); `WouldBlock` when none was queued.
#[cfg(target_os = "linux")]
fn recv_batch(
    socket: &UdpSocket,
    bufs: &mut [Vec<u8>],
    lens: &mut [usize; RECV_BATCH],
) -> io::Result<(usize, Option<u32>)> {
    use std::os::fd::AsRawFd;
    let count = bufs.len().min(RECV_BATCH);
    // SAFETY: iovec and mmsghdr are plain old data; all-zero is a valid empty value.
    let mut iovecs: [libc::iovec; RECV_BATCH] = unsafe { std::mem::zeroed() };
    let mut msgs: [libc::mmsghdr; RECV_BATCH] = unsafe { std::mem::zeroed() };
    let mut control = [Control([0; 32]); RECV_BATCH];
    for (((iov, msg), buf), control) in iovecs.iter_mut().zip(msgs.iter_mut()).zip(bufs.iter_mut()).zip(&mut control) {
        *iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        msg.msg_hdr.msg_iov = iov;
        msg.msg_hdr.msg_iovlen = 1;
        msg.msg_hdr.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_hdr.msg_controllen = control.0.len() as _;
    }
    // SAFETY: msgs[..count] point at iovecs, buffers and control buffers that outlive the
    // call; the kernel writes at most iov_len bytes into each buffer and msg_controllen bytes
    // into each control buffer, and fills in msg_len and msg_controllen.
    let n = unsafe {
        libc::recvmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), count as _, libc::MSG_DONTWAIT as _, std::ptr::null_mut())
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    for (len, msg) in lens.iter_mut().zip(&msgs[..n]) {
        *len = msg.msg_len as usize;
    }
    // The counter only grows, so the last datagram that carries it has the newest count.
    let drops = msgs[..n].iter().zip(&control).rev().find_map(|(msg, control)| {
        let len = (msg.msg_hdr.msg_controllen as usize).min(control.0.len());
        rxq_ovfl(&control.0[..len])
    });
    Ok((n, drops))
}

/// Elsewhere, one datagram per call.
#[cfg(not(target_os = "linux"))]
fn recv_batch(
    socket: &UdpSocket,
    bufs: &mut [Vec<u8>],
    lens: &mut [usize; RECV_BATCH],
) -> io::Result<(usize, Option<u32>)> {
    let Some(buf) = bufs.first_mut() else { return Ok((0, None)) };
    lens[0] = socket.recv(buf)?;
    Ok((1, None))
}

/// The drop counter (`SO_RXQ_OVFL`) among a datagram's control messages, if there is one.
/// Reads only within `control`, whatever lengths the headers claim.
#[cfg(target_os = "linux")]
fn rxq_ovfl(control: &[u8]) -> Option<u32> {
    let header = std::mem::size_of::<libc::cmsghdr>();
    // SAFETY: CMSG_LEN is arithmetic on its argument.
    let data_at = unsafe { libc::CMSG_LEN(0) } as usize;
    let align = std::mem::size_of::<usize>();
    let mut at = 0;
    while control.len().saturating_sub(at) >= header {
        // SAFETY: `header` bytes from `at` are within `control`; read_unaligned has no
        // alignment requirement, and every bit pattern is a valid cmsghdr.
        let c: libc::cmsghdr = unsafe { std::ptr::read_unaligned(control[at..].as_ptr().cast()) };
        let len = c.cmsg_len as usize;
        if len < data_at || len > control.len() - at {
            return None;
        }
        if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == libc::SO_RXQ_OVFL && len >= data_at + 4 {
            let value = control[at + data_at..at + data_at + 4].try_into().ok()?;
            return Some(u32::from_ne_bytes(value));
        }
        at += len.div_ceil(align) * align;
    }
    None
}

/// Logs the bound address and the receive buffer, as the startup lines do.
pub(crate) fn log_bound(local_addr: SocketAddr, granted: usize, requested: usize) {
    info!("Listening on UDP {local_addr}");
    if granted < requested {
        warn!(
            "UDP receive buffer: requested {requested} bytes, the kernel granted {granted}. Raise net.core.rmem_max to avoid losing bursts"
        );
    } else {
        info!("UDP receive buffer: {granted} bytes");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::buffer::Buffer;
    use tokio_util::sync::CancellationToken;

    /// The reader shares the runtime's one thread: with more datagrams waiting than one turn
    /// reads, it must let the other tasks run before it reads on.
    #[tokio::test(flavor = "current_thread")]
    async fn a_busy_reader_lets_the_other_tasks_run() {
        let bound = bind("127.0.0.1:0", 4 << 20).expect("bind");
        let to = bound.local_addr;
        let socket = bound.socket;
        let sender = UdpSocket::bind("127.0.0.1:0").expect("sender");
        let total = (READ_BUDGET + 1_000) as u64;
        for _ in 0..total {
            sender.send_to(b"{\"format\":\"json\",\"version\":1}\n{}", to).expect("send");
        }
        let stats = Arc::new(Stats::default());
        let intake =
            Intake::otlp(Arc::new(Buffer::new(64 << 20, 50)), Arc::new(Buffer::new(1 << 20, 10_000)), stats.clone());
        let shutdown = CancellationToken::new();
        let (control, _drain) = SourceControl::standalone(shutdown.clone());
        let reader = tokio::spawn(run(socket, intake, control));
        let seen = tokio::spawn({
            let stats = stats.clone();
            async move {
                loop {
                    tokio::task::yield_now().await;
                    let received = stats.snapshot().received;
                    if received > 0 {
                        return received;
                    }
                }
            }
        });
        let seen = seen.await.expect("task");
        assert_eq!(seen, READ_BUDGET as u64, "one turn reads the budget, then the other tasks run");
        shutdown.cancel();
        reader.await.expect("reader");
        assert_eq!(stats.snapshot().received, total);
    }

    /// `[::]` takes datagrams sent to 127.0.0.1 as well as to ::1, as upstream's socket does: the
    /// X-Ray SDKs send over IPv4 only, and the Lambda wrapper points them at 127.0.0.1.
    #[test]
    fn the_ipv6_wildcard_takes_ipv4_datagrams_too() {
        let bound = bind("[::]:0", 1 << 20).expect("bind [::]");
        assert!(bound.local_addr.is_ipv6(), "{}", bound.local_addr);
        let port = bound.local_addr.port();
        let v4 = UdpSocket::bind("127.0.0.1:0").expect("v4 sender");
        v4.send_to(b"from v4", ("127.0.0.1", port)).expect("send to 127.0.0.1");
        let v6 = UdpSocket::bind("[::1]:0").expect("v6 sender");
        v6.send_to(b"from v6", ("::1", port)).expect("send to ::1");
        bound.socket.set_nonblocking(false).expect("blocking");
        bound.socket.set_read_timeout(Some(std::time::Duration::from_secs(5))).expect("timeout");
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        for _ in 0..2 {
            let (n, from) = bound.socket.recv_from(&mut buf).expect("a datagram");
            got.push((String::from_utf8_lossy(&buf[..n]).into_owned(), from.ip().to_canonical().is_ipv4()));
        }
        got.sort();
        assert_eq!(got, [("from v4".to_owned(), true), ("from v6".to_owned(), false)]);
    }

    /// Batched receives hand over every datagram whole and in order, from 1 byte to the
    /// largest UDP payload, and a turn ends when the socket is empty.
    #[test]
    fn batched_reads_keep_every_datagram_whole_and_in_order() {
        let bound = bind("127.0.0.1:0", 4 << 20).expect("bind");
        let sender = UdpSocket::bind("127.0.0.1:0").expect("sender");
        let sizes = [1, 2, 700, 1_500, 9_000, 30_000, 65_000, 3, 64, 65_470, 10, 11, 12];
        let mut sent = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            let body: Vec<u8> = (0..*size).map(|j| b'a' + ((i + j) % 26) as u8).collect();
            let datagram = [&b"{\"format\":\"json\",\"version\":1}\n"[..], &body].concat();
            sender.send_to(&datagram, bound.local_addr).expect("send");
            sent.push(body);
        }
        let stats = Arc::new(Stats::default());
        let buffer = Arc::new(Buffer::new(64 << 20, 50));
        let sink = Datagrams::new(Intake::otlp(buffer.clone(), Arc::new(Buffer::new(1 << 20, 10_000)), stats.clone()));
        let mut receiver = Receiver::new();
        let turn = receiver.read(&bound.socket, &sink, READ_BUDGET);
        assert_eq!(turn.datagrams, sizes.len());
        assert_eq!(turn.end, End::Empty, "{turn:?}");
        let got: Vec<Vec<u8>> = std::iter::from_fn(|| buffer.take_batch(50, usize::MAX))
            .flat_map(|b| b.records().to_vec())
            .map(|d| d.to_vec())
            .collect();
        assert_eq!(got, sent);
        let again = receiver.read(&bound.socket, &sink, READ_BUDGET);
        assert_eq!(again, Turn { datagrams: 0, bytes: 0, end: End::Empty });
    }

    /// The kernel hands its drop counter over with the first datagram queued after drops: a
    /// socket with a tiny buffer, sent more than it holds while nobody reads, counts exactly
    /// the datagrams that never arrived.
    #[cfg(target_os = "linux")]
    #[test]
    fn datagrams_the_kernel_dropped_are_counted() {
        let bound = bind("127.0.0.1:0", 1).expect("bind");
        let sender = UdpSocket::bind("127.0.0.1:0").expect("sender");
        let datagram = [&b"{\"format\":\"json\",\"version\":1}\n"[..], &[b'x'; 1_000]].concat();
        let sent = 64;
        for _ in 0..sent {
            sender.send_to(&datagram, bound.local_addr).expect("send");
        }
        let stats = Arc::new(Stats::default());
        let sink = Datagrams::new(Intake::otlp(
            Arc::new(Buffer::new(64 << 20, 50)),
            Arc::new(Buffer::new(1 << 20, 10_000)),
            stats.clone(),
        ));
        let mut receiver = Receiver::new();
        let queued = receiver.read(&bound.socket, &sink, READ_BUDGET).datagrams;
        assert!(queued > 0 && queued < sent, "a tiny buffer holds a few of {sent}: {queued}");
        assert_eq!(Stats::read(&stats.kernel_drops), 0, "the datagrams queued before the drops carry no count");
        sender.send_to(&datagram, bound.local_addr).expect("send");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while Stats::read(&stats.received) == queued as u64 && std::time::Instant::now() < deadline {
            receiver.read(&bound.socket, &sink, READ_BUDGET);
        }
        assert_eq!(Stats::read(&stats.received), queued as u64 + 1);
        assert_eq!(Stats::read(&stats.kernel_drops), (sent - queued) as u64);
    }

    /// A control buffer as the kernel fills it: `cmsghdr`s, each padded to the alignment.
    #[cfg(target_os = "linux")]
    fn control(messages: &[(libc::c_int, libc::c_int, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (level, kind, data) in messages {
            // SAFETY: CMSG_LEN and CMSG_SPACE are arithmetic.
            let (len, space) = unsafe { (libc::CMSG_LEN(data.len() as _), libc::CMSG_SPACE(data.len() as _)) };
            // SAFETY: all-zero is a valid cmsghdr.
            let mut header: libc::cmsghdr = unsafe { std::mem::zeroed() };
            header.cmsg_len = len as _;
            header.cmsg_level = *level;
            header.cmsg_type = *kind;
            let start = out.len();
            // SAFETY: a cmsghdr is plain old data; its bytes are read for their length only.
            out.extend_from_slice(unsafe {
                std::slice::from_raw_parts((&header as *const libc::cmsghdr).cast::<u8>(), size_of_val(&header))
            });
            out.resize(start + (len as usize - data.len()), 0);
            out.extend_from_slice(data);
            out.resize(start + space as usize, 0);
        }
        out
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_drop_counter_is_found_among_control_messages() {
        let drops = 70_000u32.to_ne_bytes();
        let ovfl = (libc::SOL_SOCKET, libc::SO_RXQ_OVFL, &drops[..]);
        assert_eq!(rxq_ovfl(&control(&[ovfl])), Some(70_000));
        let timestamp = (libc::SOL_SOCKET, libc::SO_TIMESTAMP, &[1u8; 16][..]);
        assert_eq!(rxq_ovfl(&control(&[timestamp, ovfl])), Some(70_000));
        assert_eq!(rxq_ovfl(&control(&[timestamp])), None);
        assert_eq!(rxq_ovfl(&[]), None);
        // Lengths that do not fit are not read past, and a zero length does not loop.
        let whole = control(&[ovfl]);
        assert_eq!(rxq_ovfl(&whole[..whole.len() - 8]), None);
        let mut zero = whole.clone();
        zero[..size_of::<usize>()].fill(0);
        assert_eq!(rxq_ovfl(&zero), None);
    }

    #[test]
    fn the_drop_count_grows_by_what_is_new_and_survives_the_counter_wrapping() {
        let stats = Stats::default();
        let mut receiver = Receiver::new();
        receiver.kernel_drops(5, &stats);
        receiver.kernel_drops(3, &stats);
        receiver.kernel_drops(5, &stats);
        assert_eq!(Stats::read(&stats.kernel_drops), 5);
        for now in [1 << 30, 2 << 30, 3 << 30, u32::MAX, 2] {
            receiver.kernel_drops(now, &stats);
        }
        assert_eq!(Stats::read(&stats.kernel_drops), u64::from(u32::MAX) + 3);
    }
}
