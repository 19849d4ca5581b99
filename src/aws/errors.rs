//! What a failed call says, in the pipeline's neutral terms ([`crate::backend::ErrorKind`]):
//! transport errors told apart by what happened on the wire (a refused connection, a failed DNS
//! lookup, a timeout), X-Ray's error code from its answer, and messages cleaned of access key
//! ids before anything logs them.

use crate::backend::ErrorKind;
use std::error::Error as StdError;

/// Replaces AWS access key ids (`AKIA…` long-term, `ASIA…` temporary) in a message from X-Ray
/// with `<redacted>` before it is logged: an error about a signature or an unknown key may
/// echo the caller's key id, and the daemon's logs never carry its credentials.
pub(crate) fn redact_key_ids(message: &str) -> String {
    let bytes = message.as_bytes();
    let mut out = String::with_capacity(message.len());
    let mut i = 0;
    while i < bytes.len() {
        let prefix = bytes[i..].starts_with(b"AKIA") || bytes[i..].starts_with(b"ASIA");
        let tail = bytes[i..].iter().skip(4).take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit()).count();
        if prefix && tail >= 12 {
            out.push_str("<redacted>");
            i += 4 + tail;
        } else {
            // Advance by one whole character, so the output stays valid UTF-8.
            let len = message[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&message[i..i + len]);
            i += len;
        }
    }
    out
}

/// Walks the error's sources to tell a refused connection and a failed name lookup apart
/// from other transport errors.
pub(crate) fn transport_kind(err: &(dyn StdError + 'static)) -> ErrorKind {
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return ErrorKind::Refused,
                std::io::ErrorKind::TimedOut => return ErrorKind::Timeout,
                _ => {}
            }
        }
        let text = e.to_string();
        if text.contains("dns error")
            || text.contains("failed to lookup address")
            || text.contains("Name or service not known")
        {
            return ErrorKind::Dns;
        }
        if text.contains("Connection refused") {
            return ErrorKind::Refused;
        }
        source = e.source();
    }
    ErrorKind::Other
}

/// The error code of an AWS answer's `x-amzn-ErrorType` header (`Code` or `Code:uri`).
pub(crate) fn error_type(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get("x-amzn-errortype")?.to_str().ok()?;
    Some(value.split(':').next().unwrap_or(value).to_owned())
}

/// An error and its sources, one after the other, for a log line.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_in_xray_messages_are_redacted() {
        assert_eq!(
            redact_key_ids(r#"unknown access key "ASIAROTATEDKEY00001" (é)"#),
            r#"unknown access key "<redacted>" (é)"#
        );
        assert_eq!(redact_key_ids("AKIAIOSFODNN7EXAMPLE, and AKIA alone"), "<redacted>, and AKIA alone");
        assert_eq!(redact_key_ids("Rate exceeded"), "Rate exceeded");
    }

    #[test]
    fn transport_errors_are_told_apart_by_their_sources() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(transport_kind(&refused), ErrorKind::Refused);
        let dns = std::io::Error::other("dns error: failed to lookup address information");
        assert_eq!(transport_kind(&dns), ErrorKind::Dns);
        let other = std::io::Error::other("connection reset");
        assert_eq!(transport_kind(&other), ErrorKind::Other);
    }

    #[test]
    fn the_error_type_header_gives_the_code() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(error_type(&headers), None);
        headers.insert("x-amzn-ErrorType", "ThrottlingException:http://internal.amazon.com/".parse().unwrap());
        assert_eq!(error_type(&headers).as_deref(), Some("ThrottlingException"));
    }
}
