//! What the Lambda platform sends the extension: `/event/next` payloads and Telemetry API
//! batches, parsed leniently (unknown fields and record types are ignored, numbers may arrive
//! as strings) because a parse failure here must never stop the extension.

use serde::Deserialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An event from `GET /2020-01-01/extension/event/next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextEvent {
    Invoke { request_id: String, deadline_ms: u64 },
    Shutdown { reason: ShutdownReason, deadline_ms: u64 },
}

/// Why the sandbox shuts down. Lambda sends lowercase names; the docs print them in capitals;
/// the emulator sends `SandboxTerminated` on SIGTERM. Unknown names count as a spindown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShutdownReason {
    Spindown,
    /// The function timed out: the last chance to send the subsegments it already streamed.
    Timeout,
    Failure,
    Other(String),
}

impl ShutdownReason {
    pub fn parse(s: &str) -> ShutdownReason {
        match s.trim().to_ascii_lowercase().as_str() {
            "spindown" => ShutdownReason::Spindown,
            "timeout" => ShutdownReason::Timeout,
            "failure" => ShutdownReason::Failure,
            _ => ShutdownReason::Other(s.trim().to_owned()),
        }
    }
}

impl std::fmt::Display for ShutdownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ShutdownReason::Spindown => "spindown",
            ShutdownReason::Timeout => "timeout",
            ShutdownReason::Failure => "failure",
            ShutdownReason::Other(s) => s,
        })
    }
}

/// A `/event/next` body that is not an event we can act on.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("the event is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unknown eventType {0:?}")]
    UnknownType(String),
}

/// `deadlineMs` is a number in practice and a string in the docs' template; accept both.
#[derive(Deserialize)]
#[serde(untagged)]
enum Millis {
    Number(u64),
    Float(f64),
    Text(String),
}

impl Millis {
    fn get(&self) -> Option<u64> {
        match self {
            Millis::Number(n) => Some(*n),
            Millis::Float(f) if f.is_finite() && *f >= 0.0 => Some(*f as u64),
            Millis::Float(_) => None,
            Millis::Text(s) => s.trim().parse().ok(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEvent {
    event_type: String,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    deadline_ms: Option<Millis>,
    #[serde(default)]
    shutdown_reason: Option<String>,
}

impl NextEvent {
    /// Parses a `/event/next` body. A missing or unreadable deadline becomes 0, which the
    /// runner treats as "no time to spare" rather than as an error.
    pub fn parse(body: &[u8]) -> Result<NextEvent, EventError> {
        let raw: RawEvent = serde_json::from_slice(body)?;
        let deadline_ms = raw.deadline_ms.as_ref().and_then(Millis::get).unwrap_or(0);
        match raw.event_type.to_ascii_uppercase().as_str() {
            "INVOKE" => Ok(NextEvent::Invoke { request_id: raw.request_id.unwrap_or_default(), deadline_ms }),
            "SHUTDOWN" => Ok(NextEvent::Shutdown {
                reason: ShutdownReason::parse(raw.shutdown_reason.as_deref().unwrap_or("")),
                deadline_ms,
            }),
            _ => Err(EventError::UnknownType(raw.event_type)),
        }
    }
}

/// How long until an epoch-milliseconds deadline, zero if it has passed.
pub(crate) fn time_until(deadline_ms: u64) -> Duration {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Duration::from_millis(deadline_ms).saturating_sub(now)
}

/// One Telemetry API record the extension acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformEvent {
    /// `platform.runtimeDone`: the runtime finished the invocation `request_id`.
    RuntimeDone { request_id: String, status: String },
}

#[derive(Deserialize)]
struct RawRecord {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    record: serde_json::Value,
}

/// Parses a Telemetry API batch (a JSON array of `{time, type, record}`), keeping the records
/// the extension acts on. Records it cannot read are skipped, never fatal.
pub fn parse_telemetry(body: &[u8]) -> Result<Vec<PlatformEvent>, serde_json::Error> {
    let records: Vec<serde_json::Value> = serde_json::from_slice(body)?;
    Ok(records
        .into_iter()
        .filter_map(|r| serde_json::from_value::<RawRecord>(r).ok())
        .filter_map(|r| match r.kind.as_str() {
            "platform.runtimeDone" => {
                let request_id = r.record.get("requestId")?.as_str()?.to_owned();
                let status = r.record.get("status").and_then(|s| s.as_str()).unwrap_or("").to_owned();
                Some(PlatformEvent::RuntimeDone { request_id, status })
            }
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invoke_events_parse_with_extra_fields() {
        let body = br#"{"eventType":"INVOKE","deadlineMs":1654469121614,"requestId":"3da1f2dc-3222-475e-9205-e2e6c6318895",
            "invokedFunctionArn":"arn:aws:lambda:us-east-1:123456789012:function:f:alias",
            "tracing":{"type":"X-Amzn-Trace-Id","value":"Root=1-5f84c7a9-0123456789abcdef01234567;Parent=0123456789abcdef;Sampled=1;Lineage=a:1"}}"#;
        assert_eq!(
            NextEvent::parse(body).unwrap(),
            NextEvent::Invoke { request_id: "3da1f2dc-3222-475e-9205-e2e6c6318895".into(), deadline_ms: 1654469121614 }
        );
    }

    #[test]
    fn shutdown_reasons_parse_in_any_case_and_deadlines_as_strings() {
        for (text, reason) in [
            ("spindown", ShutdownReason::Spindown),
            ("SPINDOWN", ShutdownReason::Spindown),
            ("timeout", ShutdownReason::Timeout),
            ("Timeout", ShutdownReason::Timeout),
            ("failure", ShutdownReason::Failure),
            ("FAILURE", ShutdownReason::Failure),
            ("SandboxTerminated", ShutdownReason::Other("SandboxTerminated".into())),
        ] {
            let body = format!(r#"{{"eventType":"SHUTDOWN","shutdownReason":"{text}","deadlineMs":"1700000000123"}}"#);
            assert_eq!(
                NextEvent::parse(body.as_bytes()).unwrap(),
                NextEvent::Shutdown { reason: reason.clone(), deadline_ms: 1_700_000_000_123 },
                "{text}"
            );
        }
        let no_reason = NextEvent::parse(br#"{"eventType":"SHUTDOWN"}"#).unwrap();
        assert_eq!(no_reason, NextEvent::Shutdown { reason: ShutdownReason::Other(String::new()), deadline_ms: 0 });
    }

    #[test]
    fn bad_events_are_errors_not_panics() {
        assert!(matches!(NextEvent::parse(b"not json"), Err(EventError::Json(_))));
        assert!(
            matches!(NextEvent::parse(br#"{"eventType":"RESTORE"}"#), Err(EventError::UnknownType(t)) if t == "RESTORE")
        );
        assert!(NextEvent::parse(br#"{"deadlineMs":1}"#).is_err());
        assert_eq!(
            NextEvent::parse(br#"{"eventType":"INVOKE","deadlineMs":-5}"#).unwrap(),
            NextEvent::Invoke { request_id: String::new(), deadline_ms: 0 }
        );
    }

    #[test]
    fn telemetry_batches_keep_runtime_done_and_skip_the_rest() {
        let body = br#"[
            {"time":"2022-10-12T00:00:15.064Z","type":"platform.start","record":{"requestId":"a","version":"$LATEST"}},
            {"time":"2022-10-12T00:00:15.100Z","type":"platform.runtimeDone","record":{"requestId":"a","status":"success",
                "metrics":{"durationMs":20.1,"producedBytes":12},"spans":[]}},
            {"type":"platform.runtimeDone","record":{"status":"timeout"}},
            {"type":"platform.runtimeDone","record":"not an object"},
            42,
            {"type":"function","record":"log line"},
            {"time":"x","type":"platform.runtimeDone","record":{"requestId":"b","status":"timeout"}}
        ]"#;
        assert_eq!(
            parse_telemetry(body).unwrap(),
            vec![
                PlatformEvent::RuntimeDone { request_id: "a".into(), status: "success".into() },
                PlatformEvent::RuntimeDone { request_id: "b".into(), status: "timeout".into() },
            ]
        );
        assert!(parse_telemetry(b"{}").is_err());
        assert!(parse_telemetry(b"").is_err());
    }

    #[test]
    fn time_until_a_past_deadline_is_zero() {
        assert_eq!(time_until(0), Duration::ZERO);
        let soon = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64 + 60_000;
        assert!(time_until(soon) > Duration::from_secs(50));
    }
}
