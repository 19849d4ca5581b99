//! The load generator: valid segments of a fixed size with unique ids, sent over UDP at a fixed
//! rate with `sendmmsg` (one system call per 64 datagrams, so one thread reaches well past
//! 100,000 datagrams per second on loopback).
//!
//! Each id is `step << 40 | seq` in 16 hex digits; the trace id carries the same digits. The sink
//! reads the ids back out of the PutTraceSegments requests, so a segment counts as delivered
//! only when its own id arrived.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const HEADER: &[u8] = br#"{"format":"json","version":1}"#;
/// Datagrams handed to the kernel per `sendmmsg`.
const BURST: usize = 64;

/// A datagram whose id digits can be rewritten in place.
#[derive(Clone)]
pub struct Template {
    pub bytes: Vec<u8>,
    id_at: usize,
    trace_at: usize,
}

impl Template {
    /// A datagram whose body (the segment document after the header line) is exactly
    /// `body_size` bytes, or the smallest valid document when `body_size` is smaller.
    pub fn new(body_size: usize) -> Template {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let head = format!("{{\"trace_id\":\"1-{now:08x}-00000000");
        let mid = "\",\"id\":\"";
        let tail =
            format!("\",\"name\":\"bench\",\"start_time\":{now}.125,\"end_time\":{now}.5,\"annotations\":{{\"pad\":\"");
        let end = "\"}}";
        let fixed = head.len() + 16 + mid.len() + 16 + tail.len() + end.len();
        let pad = body_size.saturating_sub(fixed);
        let mut bytes = Vec::with_capacity(HEADER.len() + 1 + fixed + pad);
        bytes.extend_from_slice(HEADER);
        bytes.push(b'\n');
        bytes.extend_from_slice(head.as_bytes());
        let trace_at = bytes.len();
        bytes.extend_from_slice(&[b'0'; 16]);
        bytes.extend_from_slice(mid.as_bytes());
        let id_at = bytes.len();
        bytes.extend_from_slice(&[b'0'; 16]);
        bytes.extend_from_slice(tail.as_bytes());
        bytes.resize(bytes.len() + pad, b'x');
        bytes.extend_from_slice(end.as_bytes());
        Template { bytes, id_at, trace_at }
    }

    /// The body size this template produces.
    pub fn body_len(&self) -> usize {
        self.bytes.len() - HEADER.len() - 1
    }

    pub fn set_id(&mut self, id: u64) {
        write_hex(&mut self.bytes[self.id_at..self.id_at + 16], id);
        write_hex(&mut self.bytes[self.trace_at..self.trace_at + 16], id);
    }
}

pub fn id(step: u64, seq: u64) -> u64 {
    (step << 40) | seq
}

fn write_hex(out: &mut [u8], v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in out.iter_mut().enumerate() {
        *b = DIGITS[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
}

/// What one run sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sent {
    pub datagrams: u64,
    pub errors: u64,
    pub elapsed: Duration,
}

/// Sends `rate × duration` datagrams to `target`, spread evenly (checked every ~0.5 ms), ids
/// `id(step, 0..)`. Returns when all were handed to the kernel.
pub fn run(target: SocketAddr, body_size: usize, step: u64, rate: u64, duration: Duration) -> Sent {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the sender");
    socket.connect(target).expect("connect the sender");
    let total = (rate as f64 * duration.as_secs_f64()).round() as u64;
    let mut bufs: Vec<Template> = vec![Template::new(body_size); BURST];
    let mut iovecs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|t| libc::iovec { iov_base: t.bytes.as_mut_ptr().cast(), iov_len: t.bytes.len() })
        .collect();
    // SAFETY: mmsghdr is plain old data; all-zero is a valid empty header.
    let mut msgs: Vec<libc::mmsghdr> = (0..BURST).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (m, iov) in msgs.iter_mut().zip(iovecs.iter_mut()) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let fd = socket.as_raw_fd();
    let (mut seq, mut errors) = (0u64, 0u64);
    let start = Instant::now();
    while seq < total {
        let due = ((rate as f64 * start.elapsed().as_secs_f64()) as u64).min(total);
        while seq < due {
            let n = ((due - seq) as usize).min(BURST);
            for (i, t) in bufs.iter_mut().take(n).enumerate() {
                t.set_id(id(step, seq + i as u64));
            }
            let mut done = 0;
            while done < n {
                // SAFETY: msgs[done..n] point at iovecs and buffers that live for this call.
                let r = unsafe { libc::sendmmsg(fd, msgs[done..].as_mut_ptr(), (n - done) as u32, 0) };
                if r <= 0 {
                    errors += 1;
                    if errors > 1_000_000 {
                        panic!("sendmmsg keeps failing: {}", std::io::Error::last_os_error());
                    }
                    std::thread::yield_now();
                    continue;
                }
                done += r as usize;
            }
            seq += n as u64;
        }
        if seq < total {
            // The next datagram is due in 1/rate s; sleep in small steps to keep the rate even.
            let next = Duration::from_secs_f64((seq + 1) as f64 / rate as f64);
            let wait = next.saturating_sub(start.elapsed()).min(Duration::from_micros(500));
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
    }
    Sent { datagrams: seq, errors, elapsed: start.elapsed() }
}
