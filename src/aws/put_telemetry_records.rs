//! PutTelemetryRecords: the daemon's counters, in the shape the X-Ray console shows.

use super::client::Deferred;
use super::errors::classify;
use crate::backend::{BackendError, ErrorKind, TelemetryApi, TelemetryBatch, TelemetryRecord};
use crate::stats::UpstreamClass;
use aws_sdk_xray::types::{BackendConnectionErrors, TelemetryRecord as SdkRecord};

impl TelemetryApi for aws_sdk_xray::Client {
    async fn put_telemetry_records(&self, batch: TelemetryBatch) -> Result<(), BackendError> {
        let records = batch.records.iter().map(to_sdk_record).collect::<Result<Vec<_>, _>>()?;
        self.put_telemetry_records()
            .set_telemetry_records(Some(records))
            .ec2_instance_id(batch.reporter.ec2_instance_id)
            .hostname(batch.reporter.hostname)
            .resource_arn(batch.reporter.resource_arn)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }
}

impl TelemetryApi for Deferred {
    async fn put_telemetry_records(&self, batch: TelemetryBatch) -> Result<(), BackendError> {
        TelemetryApi::put_telemetry_records(&self.built().await?.client, batch).await
    }
}

fn clamp(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn to_sdk_record(r: &TelemetryRecord) -> Result<SdkRecord, BackendError> {
    let e = |c| clamp(r.counts.backend_error(c));
    let errors = BackendConnectionErrors::builder()
        .timeout_count(e(UpstreamClass::Timeout))
        .connection_refused_count(e(UpstreamClass::ConnectionRefused))
        .http_code4_xx_count(e(UpstreamClass::Http4xx))
        .http_code5_xx_count(e(UpstreamClass::Http5xx))
        .unknown_host_count(e(UpstreamClass::UnknownHost))
        .other_count(e(UpstreamClass::Other))
        .build();
    SdkRecord::builder()
        .timestamp(aws_smithy_types::DateTime::from_secs_f64(r.timestamp))
        .segments_received_count(clamp(r.counts.received))
        .segments_sent_count(clamp(r.counts.sent))
        .segments_spillover_count(clamp(r.counts.spillover))
        .segments_rejected_count(clamp(r.counts.rejected()))
        .backend_connection_errors(errors)
        .build()
        .map_err(|e| BackendError::new(ErrorKind::Other, e.to_string()))
}
