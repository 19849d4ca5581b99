//! Where telemetry enters the daemon. [`udp`] reads the UDP port and hands each datagram's
//! record to its signal's buffer; it never waits on an upload. [`otlp_http`] takes OTLP/HTTP
//! `POST /v1/traces` requests, on the TCP port and on a listener of their own.

pub(crate) mod otlp_http;
pub mod udp;
