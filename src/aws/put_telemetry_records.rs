//! PutTelemetryRecords: the daemon's counters, in the shape the X-Ray console shows, posted as
//! X-Ray's JSON ([`XrayApi::call`]).

use super::client::Deferred;
use super::xray_api::XrayApi;
use crate::backend::{BackendError, TelemetryApi, TelemetryBatch, TelemetryRecord};
use crate::stats::UpstreamClass;
use bytes::Bytes;
use serde_json::{json, Value};

impl TelemetryApi for XrayApi {
    async fn put_telemetry_records(&self, batch: TelemetryBatch) -> Result<(), BackendError> {
        self.call("/TelemetryRecords", body(&batch)).await.map(|_| ())
    }
}

impl TelemetryApi for Deferred {
    async fn put_telemetry_records(&self, batch: TelemetryBatch) -> Result<(), BackendError> {
        TelemetryApi::put_telemetry_records(&self.built().await?.xray, batch).await
    }
}

/// X-Ray's counts are 32-bit.
fn clamp(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The request's JSON, as the SDK wrote it: timestamps in epoch seconds, every count present.
fn body(batch: &TelemetryBatch) -> Bytes {
    let records: Vec<Value> = batch.records.iter().map(record).collect();
    let reporter = &batch.reporter;
    let body = json!({
        "TelemetryRecords": records,
        "EC2InstanceId": reporter.ec2_instance_id,
        "Hostname": reporter.hostname,
        "ResourceARN": reporter.resource_arn,
    });
    Bytes::from(body.to_string())
}

fn record(r: &TelemetryRecord) -> Value {
    let e = |c| clamp(r.counts.backend_error(c));
    json!({
        "Timestamp": r.timestamp,
        "SegmentsReceivedCount": clamp(r.counts.received),
        "SegmentsSentCount": clamp(r.counts.sent),
        "SegmentsSpilloverCount": clamp(r.counts.spillover),
        "SegmentsRejectedCount": clamp(r.counts.rejected()),
        "BackendConnectionErrors": {
            "TimeoutCount": e(UpstreamClass::Timeout),
            "ConnectionRefusedCount": e(UpstreamClass::ConnectionRefused),
            "HTTPCode4XXCount": e(UpstreamClass::Http4xx),
            "HTTPCode5XXCount": e(UpstreamClass::Http5xx),
            "UnknownHostCount": e(UpstreamClass::UnknownHost),
            "OtherCount": e(UpstreamClass::Other),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Reporter;
    use crate::stats::Snapshot;

    #[test]
    fn the_body_has_upstreams_shape() {
        let counts = Snapshot { received: 10, sent: 7, spillover: 1, ..Default::default() };
        let reporter = Reporter { ec2_instance_id: "i-1".into(), hostname: "h".into(), resource_arn: String::new() };
        let batch = TelemetryBatch { reporter, records: vec![TelemetryRecord { timestamp: 1700000000.5, counts }] };
        let body: Value = serde_json::from_slice(&body(&batch)).unwrap();
        assert_eq!(body["EC2InstanceId"], "i-1");
        assert_eq!(body["ResourceARN"], "");
        let r = &body["TelemetryRecords"][0];
        assert_eq!(r["Timestamp"], 1700000000.5);
        assert_eq!((r["SegmentsReceivedCount"].as_i64(), r["SegmentsSentCount"].as_i64()), (Some(10), Some(7)));
        assert_eq!(r["BackendConnectionErrors"]["HTTPCode5XXCount"], 0);
        assert_eq!(clamp(u64::MAX), i32::MAX);
    }
}
