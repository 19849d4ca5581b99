//! Where telemetry enters the daemon. [`udp`] reads the UDP port and hands each datagram's
//! record to its signal's buffer; it never waits on an upload.

pub mod udp;
