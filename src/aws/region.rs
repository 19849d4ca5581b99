//! Finds the region when none is configured, in upstream's order: the ECS container metadata
//! file, then EC2 instance metadata (IMDSv2, falling back to IMDSv1), or in local mode the
//! AWS profile's region; `AWS_DEFAULT_REGION` last.
//!
//! The instance-metadata lookup has a total budget of one second, so a host that is not on EC2
//! never stalls the start. aws-config's IMDS client is IMDSv2-only by design, hence this small
//! client: when the token request gets no answer (in a container on EC2 this is the metadata
//! hop limit, upstream's #203) it still tries IMDSv1, and if that fails too the error says how
//! to fix it instead of a bare 401.

use crate::config::{Config, ConfigError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::path::Path;
use std::time::Duration;
use tokio::time::{timeout, timeout_at, Instant};
use tracing::debug;

/// The whole instance-metadata lookup.
pub(crate) const IMDS_BUDGET: Duration = Duration::from_secs(1);

/// The region and where it came from.
pub(crate) async fn resolve(config: &Config) -> Result<(String, String), ConfigError> {
    if let Some((region, source)) = &config.region {
        debug!("Fetch region {region} from {source}");
        return Ok((region.clone(), source.clone()));
    }
    let mut tried = Vec::new();
    if !config.local_mode {
        if let Some(path) = &config.ecs_metadata_file {
            match ecs_region(path) {
                Ok(region) => return found(region, "ecs metadata"),
                Err(e) => tried.push(e),
            }
        }
        if config.imds_disabled {
            tried.push("EC2 instance metadata: disabled by AWS_EC2_METADATA_DISABLED".into());
        } else {
            match imds_region(&config.imds_endpoint, IMDS_BUDGET).await {
                Ok(region) => return found(region, "ec2 metadata"),
                Err(e) => tried.push(format!("EC2 instance metadata: {e}")),
            }
        }
    } else if let Some(region) = profile_region().await {
        return found(region, "local profile");
    }
    if let Some(region) = &config.default_region {
        return found(region.clone(), "AWS_DEFAULT_REGION");
    }
    let detail = if tried.is_empty() { String::new() } else { format!(" Tried: {}.", tried.join("; ")) };
    Err(ConfigError::NoRegion(detail))
}

fn found(region: String, source: &str) -> Result<(String, String), ConfigError> {
    debug!("Fetch region {region} from {source}");
    Ok((region, source.to_owned()))
}

/// The region of the task's ARN in the ECS container metadata file.
pub(crate) fn ecs_region(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("Unable to open ECS metadata file {}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("Unable to read ECS metadata file {}: {e}", path.display()))?;
    v.get("TaskARN")
        .and_then(|a| a.as_str())
        .and_then(|arn| arn.split(':').nth(3))
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| format!("ECS metadata file {} has no TaskARN with a region", path.display()))
}

async fn profile_region() -> Option<String> {
    use aws_config::meta::region::ProvideRegion;
    aws_config::profile::ProfileFileRegionProvider::builder().build().region().await.map(|r| r.to_string())
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// Asks instance metadata for the region, within `budget`.
pub(crate) async fn imds_region(endpoint: &str, budget: Duration) -> Result<String, String> {
    let deadline = Instant::now() + budget;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    // Half the budget for the token, so IMDSv1 still gets a chance when it goes unanswered.
    let (token, why_no_token) = match timeout(budget / 2, imds_call(&client, "PUT", endpoint, "/latest/api/token", None)).await {
        Ok(Ok(token)) => (Some(token), None),
        Ok(Err(e)) => (None, Some(format!("IMDSv2 token request failed ({e})"))),
        Err(_) => (None, Some(format!(
            "IMDSv2 token request got no answer within {} ms (in a container on EC2, set the instance's metadata hop limit to 2 or set AWS_REGION)",
            (budget / 2).as_millis()
        ))),
    };
    let path = "/latest/dynamic/instance-identity/document";
    let document = match timeout_at(deadline, imds_call(&client, "GET", endpoint, path, token.as_deref())).await {
        Ok(Ok(doc)) => doc,
        Ok(Err(e)) => {
            let v1 = if token.is_some() { "IMDSv2" } else { "IMDSv1" };
            return Err(join(why_no_token, format!("{v1} identity document: {e}")));
        }
        Err(_) => {
            return Err(join(why_no_token, format!("no answer from {endpoint} within {} ms", budget.as_millis())))
        }
    };
    let v: serde_json::Value =
        serde_json::from_str(&document).map_err(|e| format!("identity document is not JSON: {e}"))?;
    v.get("region").and_then(|r| r.as_str()).map(str::to_owned).ok_or_else(|| "identity document has no region".into())
}

fn join(first: Option<String>, second: String) -> String {
    match first {
        Some(f) => format!("{f}; {second}"),
        None => second,
    }
}

async fn imds_call(
    client: &HttpClient,
    method: &str,
    endpoint: &str,
    path: &str,
    token: Option<&str>,
) -> Result<String, String> {
    let mut req = http::Request::builder().method(method).uri(format!("{endpoint}{path}"));
    req = match (method, token) {
        ("PUT", _) => req.header("x-aws-ec2-metadata-token-ttl-seconds", "60"),
        (_, Some(t)) => req.header("x-aws-ec2-metadata-token", t),
        _ => req,
    };
    let req = req.body(Full::new(Bytes::new())).map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| format!("{e}"))?;
    let status = resp.status();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    if !status.is_success() {
        return Err(format!("HTTP {}", status.as_u16()));
    }
    String::from_utf8(body.to_vec()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecs_metadata_region_comes_from_the_task_arn() {
        let dir = std::env::temp_dir().join(format!("xd-ecs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.json");
        std::fs::write(&good, r#"{"Cluster":"c","TaskARN":"arn:aws:ecs:us-east-1:012345678910:task/2b88376d"}"#)
            .unwrap();
        assert_eq!(ecs_region(&good).unwrap(), "us-east-1");
        let bad = dir.join("bad.json");
        std::fs::write(&bad, "{not json").unwrap();
        assert!(ecs_region(&bad).unwrap_err().starts_with("Unable to read"));
        assert!(ecs_region(&dir.join("missing.json")).unwrap_err().starts_with("Unable to open"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
