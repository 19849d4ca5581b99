//! X-Ray's time, as the host's clock moved by what X-Ray said: SigV4 signatures carry the time
//! they were made, and X-Ray refuses one more than 5 minutes from its own clock (403
//! `InvalidSignatureException`, "Signature expired: … is now earlier than …"), with its time in
//! the answer's `Date` header. A host whose clock is that far off would fail every call until
//! the buffer spilled.
//!
//! The AWS SDKs learn the offset from such an answer and sign the retry and later calls with the
//! corrected time; this does the same for the requests the daemon signs itself (the OTLP sink,
//! the TCP port's proxy). The SDK's client (uploads, telemetry) corrects its own signatures
//! (`aws-runtime`'s `ServiceClockSkewInterceptor`); its answers are read here too, so the offset
//! is shared and the warning is the same. Only a refusal moves the offset, and only when the
//! `Date` is more than [`THRESHOLD`] from the time the request was signed with: a `Date` has
//! one-second resolution, and a signature refused for another reason must not move the clock.

use http::header::{HeaderMap, DATE};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};
use tracing::warn;

/// A refusal whose `Date` is this far from the signing time is a refusal for the time (X-Ray
/// allows 5 minutes; the SDKs use the same 4).
pub(crate) const THRESHOLD: Duration = Duration::from_secs(4 * 60);

/// Error codes that a signature refused for its time comes with (the SDKs' list): X-Ray's
/// `InvalidSignatureException`, the `RequestTimeTooSkewed` and `RequestExpired` of other
/// services.
const SKEW_CODES: &[&str] = &[
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "AuthFailure",
    "RequestTimeTooSkewed",
    "RequestExpired",
    "RequestInTheFuture",
    "AccessDeniedException",
];

/// The offset a request was signed with, in milliseconds (X-Ray's clock minus the host's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Offset(pub(crate) i64);

/// What [`ServiceClock::correct`] reads of an answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answer<'a> {
    pub(crate) status: u16,
    /// `x-amzn-ErrorType`: `Code` or `Code:uri`.
    pub(crate) error_type: Option<&'a str>,
    /// `Date`.
    pub(crate) date: Option<&'a str>,
}

/// X-Ray's clock, as learned from its refusals; shared by everything that signs.
#[derive(Debug, Default)]
pub(crate) struct ServiceClock {
    offset_ms: AtomicI64,
}

impl ServiceClock {
    /// The offset in effect.
    pub(crate) fn offset(&self) -> Offset {
        Offset(self.offset_ms.load(Ordering::Relaxed))
    }

    /// X-Ray's time now, to sign with, and the offset it carries.
    pub(crate) fn now(&self) -> (SystemTime, Offset) {
        let offset = self.offset();
        (shift(SystemTime::now(), offset.0), offset)
    }

    /// [`ServiceClock::correct`] with the answer's headers.
    pub(crate) fn correct_from(
        &self,
        status: u16,
        headers: &HeaderMap,
        signed: Offset,
        sent: SystemTime,
        received: SystemTime,
    ) -> bool {
        let header = |name| headers.get(name).and_then(|v: &http::HeaderValue| v.to_str().ok());
        let answer = Answer { status, error_type: header("x-amzn-errortype"), date: header(DATE.as_str()) };
        self.correct(&answer, signed, sent, received)
    }

    /// Reads an answer to a request signed with `signed` offset, sent at `sent` and answered at
    /// `received` (host clock). When it refuses the signature for its time, the offset becomes
    /// X-Ray's (logged once per change) and the answer is `true`: the request, signed again
    /// now, carries X-Ray's time.
    pub(crate) fn correct(&self, answer: &Answer<'_>, signed: Offset, sent: SystemTime, received: SystemTime) -> bool {
        if !matches!(answer.status, 400 | 401 | 403) {
            return false;
        }
        let code = answer.error_type.and_then(|v| v.split(':').next());
        if code.is_some_and(|code| !SKEW_CODES.contains(&code)) {
            return false;
        }
        let Some(server) = answer.date.and_then(|v| httpdate::parse_http_date(v).ok()) else {
            return false;
        };
        // X-Ray stamped its Date about halfway through the exchange.
        let midpoint = sent + received.duration_since(sent).unwrap_or_default() / 2;
        let measured = signed_millis(server, midpoint);
        let threshold = THRESHOLD.as_millis() as i64;
        if (measured - signed.0).abs() <= threshold {
            return false;
        }
        let current = self.offset_ms.load(Ordering::Relaxed);
        // Unless another request learned it a moment ago.
        let changed = (measured - current).abs() > threshold
            && self.offset_ms.compare_exchange(current, measured, Ordering::Relaxed, Ordering::Relaxed).is_ok();
        if changed {
            let secs = (measured as f64 / 1000.0).round() as i64;
            let side = if secs > 0 { "behind" } else { "ahead of" };
            warn!(
                "The host clock is off by {} seconds ({side} X-Ray's clock, whose Date header says {}); signing requests with X-Ray's time from now on",
                secs.abs(),
                httpdate::fmt_http_date(server)
            );
        }
        true
    }
}

/// `t` moved by `ms` milliseconds.
fn shift(t: SystemTime, ms: i64) -> SystemTime {
    let by = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        t.checked_add(by).unwrap_or(t)
    } else {
        t.checked_sub(by).unwrap_or(t)
    }
}

/// `a - b` in milliseconds, signed.
fn signed_millis(a: SystemTime, b: SystemTime) -> i64 {
    match a.duration_since(b) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn answer(code: Option<&str>, server: SystemTime) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(code) = code {
            h.insert("x-amzn-errortype", HeaderValue::from_str(code).unwrap());
        }
        h.insert(DATE, HeaderValue::from_str(&httpdate::fmt_http_date(server)).unwrap());
        h
    }

    #[test]
    fn a_refusal_for_the_time_moves_the_clock_to_x_rays() {
        let clock = ServiceClock::default();
        let host = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ahead = answer(
            Some("InvalidSignatureException:http://internal.amazon.com/coral/"),
            host + Duration::from_secs(900),
        );
        assert!(clock.correct_from(403, &ahead, Offset(0), host, host));
        assert_eq!(clock.offset(), Offset(900_000));
        // A second refusal of a request signed before the correction: retried, the offset kept.
        let ahead_again = answer(Some("InvalidSignatureException"), host + Duration::from_secs(901));
        assert!(clock.correct_from(403, &ahead_again, Offset(0), host, host));
        assert_eq!(clock.offset(), Offset(900_000));
        // Signed with the corrected time and still refused: not the clock's fault.
        assert!(!clock.correct_from(403, &ahead_again, Offset(900_000), host, host));
        // The host clock fixed, then 15 minutes fast: X-Ray behind.
        let behind = answer(None, host - Duration::from_secs(900));
        assert!(clock.correct_from(401, &behind, Offset(900_000), host, host));
        assert_eq!(clock.offset(), Offset(-900_000));
    }

    #[test]
    fn other_answers_leave_the_clock_alone() {
        let clock = ServiceClock::default();
        let host = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let far = host + Duration::from_secs(3600);
        assert!(!clock.correct_from(200, &answer(None, far), Offset(0), host, host));
        assert!(!clock.correct_from(503, &answer(None, far), Offset(0), host, host));
        assert!(!clock.correct_from(400, &answer(Some("InvalidRequestException"), far), Offset(0), host, host));
        assert!(!clock.correct_from(403, &answer(None, host + Duration::from_secs(200)), Offset(0), host, host));
        assert!(!clock.correct_from(403, &HeaderMap::new(), Offset(0), host, host));
        assert_eq!(clock.offset(), Offset(0));
    }
}
