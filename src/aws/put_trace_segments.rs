//! PutTraceSegments, the segments' sink: the request body written from the received bytes, the
//! call ([`XrayApi::call`], signed and sent on the daemon's own client), and the answer read.
//!
//! X-Ray answers an accepted call with the documents it did not process, by `Id`. They are matched
//! back to the batch's documents here: throttled or failed ones (`ThrottledException`,
//! `InternalFailure`, `ServiceUnavailable`) are sent again, the others are refused for good and
//! logged at error level with their trace id. The pipeline only sees the [`Receipt`].

use super::client::Deferred;
use super::errors::redact_key_ids;
use super::trace_segments_body;
use super::xray_api::XrayApi;
use crate::backend::{BackendError, Receipt, Sink};
use crate::signal::Documents;
use bytes::Bytes;
use tracing::{error, warn};

impl<S: Documents> Sink<S> for XrayApi {
    async fn send(&self, records: &[Bytes]) -> Result<Receipt, BackendError> {
        let answer = self.call("/TraceSegments", trace_segments_body::encode(records)).await?;
        Ok(read_answer(records, &unprocessed(&answer)))
    }
}

impl<S: Documents> Sink<S> for Deferred {
    async fn send(&self, records: &[Bytes]) -> Result<Receipt, BackendError> {
        Sink::<S>::send(&self.built().await?.xray, records).await
    }
}

/// The `UnprocessedTraceSegments` of an accepted call's answer (none when it has no list).
fn unprocessed(answer: &[u8]) -> Vec<Unprocessed> {
    #[derive(serde::Deserialize, Default)]
    struct Answer {
        #[serde(rename = "UnprocessedTraceSegments", default)]
        unprocessed: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(rename = "Id")]
        id: Option<String>,
        #[serde(rename = "ErrorCode")]
        error_code: Option<String>,
        #[serde(rename = "Message")]
        message: Option<String>,
    }
    let answer: Answer = serde_json::from_slice(answer).unwrap_or_default();
    answer
        .unprocessed
        .into_iter()
        .map(|e| Unprocessed { id: e.id, error_code: e.error_code, message: e.message.as_deref().map(redact_key_ids) })
        .collect()
}

/// One `UnprocessedTraceSegments` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Unprocessed {
    id: Option<String>,
    error_code: Option<String>,
    message: Option<String>,
}

impl Unprocessed {
    /// Whether X-Ray may accept the document if it is sent again.
    fn is_retryable(&self) -> bool {
        matches!(
            self.error_code.as_deref(),
            Some("ThrottledException" | "ThrottlingException" | "InternalFailure" | "ServiceUnavailable")
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Sent,
    Retry,
    Rejected,
}

/// Sorts the unprocessed entries of an answer to `records` into documents to send again and
/// documents refused, logging each. An entry that names no document of the batch still counts
/// as one refused, so the numbers add up.
fn read_answer(records: &[Bytes], unprocessed: &[Unprocessed]) -> Receipt {
    if unprocessed.is_empty() {
        return Receipt::default();
    }
    let n = records.len();
    let ids: Vec<DocIds> = records.iter().map(|d| DocIds::parse(d)).collect();
    let mut fate = vec![Fate::Sent; n];
    for entry in unprocessed {
        let id = entry.id.as_deref();
        let index = id.and_then(|id| (0..n).find(|&i| fate[i] == Fate::Sent && ids[i].id.as_deref() == Some(id)));
        let trace = index.and_then(|i| ids[i].trace_id.as_deref()).unwrap_or("unknown");
        let code = entry.error_code.as_deref().unwrap_or("unknown");
        let message = entry.message.as_deref().unwrap_or("");
        let id = id.unwrap_or("");
        match index {
            Some(i) if entry.is_retryable() => {
                fate[i] = Fate::Retry;
                warn!(
                    reason = code,
                    trace_id = trace,
                    segment_id = id,
                    "Unprocessed trace {trace}, segment {id}: {code} {message}; it will be sent again"
                );
            }
            Some(i) => {
                fate[i] = Fate::Rejected;
                error!(
                    reason = code,
                    trace_id = trace,
                    segment_id = id,
                    "Unprocessed trace {trace}, segment {id}: {code} {message}"
                );
            }
            None => error!(
                reason = code,
                segment_id = id,
                "Unprocessed segment {id:?} matches no document in the batch: {code} {message}"
            ),
        }
    }
    let retry: Vec<usize> = (0..n).filter(|&i| fate[i] == Fate::Retry).collect();
    let matched = fate.iter().filter(|f| **f != Fate::Sent).count();
    let refused = fate.iter().filter(|f| **f == Fate::Rejected).count();
    let unmatched = unprocessed.len() - matched;
    Receipt { retry, rejected: (refused + unmatched) as u64, unprocessed: unprocessed.len() as u64 }
}

/// The `id` and `trace_id` of a segment document, found by parsing it as JSON (so spacing and
/// pretty-printing do not matter). Only done for batches with unprocessed entries.
#[derive(Debug, Default, serde::Deserialize)]
struct DocIds {
    id: Option<String>,
    trace_id: Option<String>,
}

impl DocIds {
    fn parse(doc: &[u8]) -> DocIds {
        serde_json::from_slice(doc).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: &str) -> Bytes {
        Bytes::from(format!(r#"{{"id": "{id}", "trace_id": "1-5759e988-bd862e3fe1be46a99427{id}"}}"#))
    }

    fn entry(id: Option<&str>, code: &str) -> Unprocessed {
        Unprocessed { id: id.map(str::to_owned), error_code: Some(code.into()), message: Some("m".into()) }
    }

    #[test]
    fn unprocessed_entries_are_matched_by_id_and_sorted() {
        let entries = [entry(Some("b"), "ThrottledException"), entry(Some("c"), "InvalidTraceId")];
        let receipt = read_answer(&[doc("a"), doc("b"), doc("c")], &entries);
        assert_eq!(receipt, Receipt { retry: vec![1], rejected: 1, unprocessed: 2 });
        assert_eq!(read_answer(&[doc("a")], &[]), Receipt::default());
    }

    #[test]
    fn pretty_printed_documents_are_matched_too() {
        let docs = [Bytes::from_static(b"{\n  \"id\" : \"feed\",\n  \"trace_id\" : \"1-x\"\n}"), doc("beef")];
        let receipt = read_answer(&docs, &[entry(Some("feed"), "InternalFailure")]);
        assert_eq!(receipt.retry, vec![0]);
    }

    #[test]
    fn the_answer_lists_what_was_not_processed() {
        let answer = br#"{"UnprocessedTraceSegments":[{"Id":"b","ErrorCode":"ThrottledException","Message":"m"}]}"#;
        assert_eq!(unprocessed(answer), [entry(Some("b"), "ThrottledException")]);
        assert_eq!(unprocessed(br#"{"UnprocessedTraceSegments":[]}"#), []);
        assert_eq!(unprocessed(b"{}"), []);
        assert_eq!(unprocessed(b""), [], "an empty answer is a full success");
    }

    #[test]
    fn entries_without_a_matching_id_still_count_as_refused() {
        let receipt = read_answer(&[doc("a"), doc("b")], &[entry(None, "InvalidTraceId")]);
        assert_eq!(receipt, Receipt { retry: vec![], rejected: 1, unprocessed: 1 });
        // Two entries for one id: the second matches nothing left.
        let twice = [entry(Some("a"), "InvalidTraceId"), entry(Some("a"), "InvalidTraceId")];
        assert_eq!(read_answer(&[doc("a"), doc("b")], &twice).rejected, 2);
    }
}
