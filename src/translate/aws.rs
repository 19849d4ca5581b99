//! The `aws` block and `origin` (mapping §4 and §6): where the span ran (EC2, ECS, EKS,
//! Elastic Beanstalk, its log groups, the SDK that made it) from the resource, and what AWS
//! call it made (operation, region, request id, queue, tables) from the span.
//!
//! The exporter reads the resource keys of this block in one pass (the last of duplicate keys
//! wins, except `container.name`, where the first non-empty one does), and the span keys from
//! the remaining map, consuming them whether or not a block results. A non-AWS
//! `cloud.provider` removes the whole block.

use super::attributes::{get, get_str, str_of, val, Attrs};
use super::json;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, KeyValue};

/// `origin`, from the resource (`get`: first occurrence).
pub(crate) fn origin(resource: &[KeyValue]) -> Option<&'static str> {
    if resource.is_empty() {
        return None;
    }
    if get(resource, "cloud.provider").is_some() && get_str(resource, "cloud.provider") != "aws" {
        return None;
    }
    get(resource, "cloud.platform")?;
    Some(match get_str(resource, "cloud.platform") {
        "aws_app_runner" => "AWS::AppRunner::Service",
        "aws_eks" => "AWS::EKS::Container",
        "aws_elastic_beanstalk" => "AWS::ElasticBeanstalk::Environment",
        "aws_ecs" => match get(resource, "aws.ecs.launchtype").map(|kv| str_of(val(kv))) {
            Some("ec2") => "AWS::ECS::EC2",
            Some("fargate") => "AWS::ECS::Fargate",
            _ => "AWS::ECS::Container",
        },
        "aws_ec2" => "AWS::EC2::Instance",
        _ => return None,
    })
}

/// The resource's part of the block.
#[derive(Default)]
struct Res<'a> {
    provider: &'a str,
    platform: &'a str,
    account: &'a str,
    zone: &'a str,
    host_id: &'a str,
    host_type: &'a str,
    ami: &'a str,
    container: &'a str,
    container_id: &'a str,
    pod: &'a str,
    cluster: &'a str,
    env: &'a str,
    deploy: &'a str,
    version: &'a str,
    sdk_name: &'a str,
    sdk_language: &'a str,
    sdk_version: &'a str,
    auto_version: &'a str,
    distro_version: &'a str,
    ecs_cluster: &'a str,
    ecs_container: &'a str,
    ecs_task: &'a str,
    ecs_family: &'a str,
    launch_type: &'a str,
    log_groups: Option<&'a Value>,
    log_group_arns: Option<&'a Value>,
}

/// The block of one piece.
pub(crate) struct Aws<'a> {
    res: Res<'a>,
    operation: &'a str,
    region: &'a str,
    request_id: &'a str,
    queue_url: &'a str,
    table_name: &'a str,
    table_names: Vec<&'a str>,
}

/// Reads the block and consumes its span keys; `None` when `cloud.provider` is not AWS.
pub(crate) fn make<'a>(attrs: &mut Attrs<'a>, resource: &'a [KeyValue]) -> Option<Aws<'a>> {
    let mut r = Res::default();
    for kv in resource {
        let v = val(kv);
        let s = str_of(v);
        match kv.key.as_str() {
            "cloud.provider" => r.provider = s,
            "cloud.platform" => r.platform = s,
            "cloud.account.id" => r.account = s,
            "cloud.availability_zone" => r.zone = s,
            "host.id" => r.host_id = s,
            "host.type" => r.host_type = s,
            "host.image.id" => r.ami = s,
            "container.name" if r.container.is_empty() => r.container = s,
            "container.id" => r.container_id = s,
            "k8s.pod.name" => r.pod = s,
            "k8s.cluster.name" => r.cluster = s,
            "service.namespace" => r.env = s,
            "service.instance.id" => r.deploy = s,
            "service.version" => r.version = s,
            "telemetry.sdk.name" => r.sdk_name = s,
            "telemetry.sdk.language" => r.sdk_language = s,
            "telemetry.sdk.version" => r.sdk_version = s,
            "telemetry.auto.version" => r.auto_version = s,
            "telemetry.distro.version" => r.distro_version = s,
            "aws.ecs.cluster.arn" => r.ecs_cluster = s,
            "aws.ecs.container.arn" => r.ecs_container = s,
            "aws.ecs.task.arn" => r.ecs_task = s,
            "aws.ecs.task.family" => r.ecs_family = s,
            "aws.ecs.launchtype" => r.launch_type = s,
            "aws.log.group.names" => r.log_groups = v,
            "aws.log.group.arns" => r.log_group_arns = v,
            _ => {}
        }
    }
    let rem = |key: &str| attrs.remaining(key).map(|kv| str_of(val(kv)));
    let operation = rem("aws.operation").or_else(|| rem("rpc.method")).unwrap_or("");
    if let Some(kv) = attrs.remaining("aws.account_id") {
        if val(kv).is_some() {
            r.account = str_of(val(kv));
        }
    }
    let region = rem("aws.region").unwrap_or("");
    // Two aliases of one field: Go's map order picks a random one; the later in the list wins.
    let either = |a: &str, b: &str| {
        let pick = match (attrs.remaining(a), attrs.remaining(b)) {
            (Some(x), Some(y)) => Some(if std::ptr::from_ref(x) > std::ptr::from_ref(y) { x } else { y }),
            (x, y) => x.or(y),
        };
        pick.map(|kv| str_of(val(kv))).unwrap_or("")
    };
    let request_id = either("aws.request_id", "aws.requestId");
    let mut queue_url = either("aws.queue_url", "aws.queue.url");
    let mut table_name = either("aws.table_name", "aws.table.name");
    let mut table_names = Vec::new();
    let messaging_url = attrs.remaining("messaging.url");
    let tables = attrs.remaining("aws.dynamodb.table_names");
    attrs.consume_where(|k| {
        matches!(
            k,
            "aws.operation"
                | "rpc.method"
                | "aws.account_id"
                | "aws.region"
                | "aws.request_id"
                | "aws.requestId"
                | "aws.queue_url"
                | "aws.queue.url"
                | "aws.table_name"
                | "aws.table.name"
        )
    });
    if !r.provider.is_empty() && r.provider != "aws" {
        return None;
    }
    if let Some(kv) = messaging_url {
        queue_url = str_of(val(kv));
    }
    match tables.and_then(val) {
        Some(Value::StringValue(s)) => table_name = s,
        Some(Value::ArrayValue(a)) if a.values.len() == 1 => table_name = str_of(json::inner(a.values.first())),
        Some(Value::ArrayValue(a)) if a.values.len() > 1 => {
            table_name = "";
            table_names = a.values.iter().map(|v| str_of(json::inner(Some(v)))).collect();
        }
        _ => {}
    }
    Some(Aws { res: r, operation, region, request_id, queue_url, table_name, table_names })
}

/// Writes `"aws":{…}`; `service_segment` leaves out the call's own fields (mapping §1c).
pub(crate) fn write(buf: &mut Vec<u8>, a: &Aws<'_>, service_segment: bool) {
    let r = &a.res;
    json::key(buf, "aws");
    buf.push(b'{');
    if r.platform == "aws_elastic_beanstalk" && !r.deploy.is_empty() {
        json::key(buf, "elastic_beanstalk");
        buf.push(b'{');
        json::str_or_null_field(buf, "environment_name", r.env.as_bytes());
        json::str_or_null_field(buf, "version_label", r.version.as_bytes());
        json::int_field(buf, "deployment_id", r.deploy.parse::<i64>().unwrap_or(0));
        buf.push(b'}');
    }
    write_log_groups(buf, r);
    if r.platform == "aws_ecs" {
        json::key(buf, "ecs");
        buf.push(b'{');
        for (k, v) in [
            ("container", r.container),
            ("container_id", r.container_id),
            ("task_arn", r.ecs_task),
            ("task_family", r.ecs_family),
            ("cluster_arn", r.ecs_cluster),
            ("container_arn", r.ecs_container),
            ("availability_zone", r.zone),
            ("launch_type", r.launch_type),
        ] {
            json::opt_str_field(buf, k, v);
        }
        buf.push(b'}');
    }
    if r.platform == "aws_ec2" || !r.host_id.is_empty() {
        json::key(buf, "ec2");
        buf.push(b'{');
        json::str_or_null_field(buf, "instance_id", r.host_id.as_bytes());
        json::str_or_null_field(buf, "availability_zone", r.zone.as_bytes());
        json::str_or_null_field(buf, "instance_size", r.host_type.as_bytes());
        json::str_or_null_field(buf, "ami_id", r.ami.as_bytes());
        buf.push(b'}');
    }
    if r.platform == "aws_eks" || !r.cluster.is_empty() {
        json::key(buf, "eks");
        buf.push(b'{');
        json::str_or_null_field(buf, "cluster_name", r.cluster.as_bytes());
        json::str_or_null_field(buf, "pod", r.pod.as_bytes());
        json::str_or_null_field(buf, "container_id", r.container_id.as_bytes());
        buf.push(b'}');
    }
    json::key(buf, "xray");
    buf.push(b'{');
    if !r.sdk_name.is_empty() && !r.sdk_language.is_empty() {
        // `<name> for <language>`, escaped as one string.
        json::key(buf, "sdk");
        buf.push(b'"');
        json::escape(buf, r.sdk_name.as_bytes());
        buf.extend_from_slice(b" for ");
        json::escape(buf, r.sdk_language.as_bytes());
        buf.push(b'"');
    } else {
        json::opt_str_field(buf, "sdk", r.sdk_name);
    }
    json::opt_str_field(buf, "sdk_version", r.sdk_version);
    json::bool_field(buf, "auto_instrumentation", !r.auto_version.is_empty() || !r.distro_version.is_empty());
    buf.push(b'}');
    if !service_segment {
        json::opt_str_field(buf, "account_id", r.account);
        json::opt_str_field(buf, "operation", a.operation);
        json::opt_str_field(buf, "region", a.region);
        json::opt_str_field(buf, "request_id", a.request_id);
        json::opt_str_field(buf, "queue_url", a.queue_url);
        json::opt_str_field(buf, "table_name", a.table_name);
        if !a.table_names.is_empty() {
            json::key(buf, "table_names");
            buf.push(b'[');
            for t in &a.table_names {
                json::sep(buf);
                json::string(buf, t.as_bytes());
            }
            buf.push(b']');
        }
    }
    buf.push(b'}');
}

/// The log group names of a resource value: an array (elements via `Str()`), or a string
/// split on `&` without the empty pieces; other types count as none.
fn log_group_list(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::StringValue(s)) => s.split('&').filter(|p| !p.is_empty()).collect(),
        Some(Value::ArrayValue(a)) => a.values.iter().map(|e| str_of(json::inner(Some(e)))).collect(),
        _ => Vec::new(),
    }
}

/// `cloudwatch_logs`: from the ARNs if any (the group is the ARN's 7th `:` field), else from
/// the names. (The exporter's third source, its `aws_log_groups` setting, has no counterpart
/// in the daemon.)
fn write_log_groups(buf: &mut Vec<u8>, r: &Res<'_>) {
    let arns = log_group_list(r.log_group_arns);
    let (list, is_arn) = if arns.is_empty() { (log_group_list(r.log_groups), false) } else { (arns, true) };
    if list.is_empty() {
        return;
    }
    json::key(buf, "cloudwatch_logs");
    buf.push(b'[');
    for item in list {
        json::sep(buf);
        buf.push(b'{');
        let group = if is_arn { item.split(':').nth(6).unwrap_or(item) } else { item };
        json::str_or_null_field(buf, "log_group", group.as_bytes());
        if is_arn {
            json::opt_str_field(buf, "arn", item);
        }
        buf.push(b'}');
    }
    buf.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::test_attrs::{kv, s, strs as arr};
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue};

    fn block(span: &[KeyValue], resource: &[KeyValue], service: bool) -> (String, usize) {
        let mut attrs = Attrs::new(span);
        let out = match make(&mut attrs, resource) {
            Some(a) => {
                let mut buf = Vec::new();
                write(&mut buf, &a, service);
                String::from_utf8(buf).unwrap()
            }
            None => "none".into(),
        };
        (out, attrs.remaining_entries().len())
    }

    #[test]
    fn origins() {
        let o = |r: &[KeyValue]| origin(r);
        assert_eq!(o(&[]), None);
        assert_eq!(o(&[s("cloud.provider", "gcp"), s("cloud.platform", "aws_ec2")]), None);
        assert_eq!(o(&[s("cloud.platform", "aws_ec2")]), Some("AWS::EC2::Instance"));
        assert_eq!(
            o(&[s("cloud.provider", "aws"), s("cloud.platform", "aws_app_runner")]),
            Some("AWS::AppRunner::Service")
        );
        assert_eq!(o(&[s("cloud.platform", "aws_eks")]), Some("AWS::EKS::Container"));
        assert_eq!(o(&[s("cloud.platform", "aws_elastic_beanstalk")]), Some("AWS::ElasticBeanstalk::Environment"));
        assert_eq!(o(&[s("cloud.platform", "aws_ecs")]), Some("AWS::ECS::Container"));
        assert_eq!(o(&[s("cloud.platform", "aws_ecs"), s("aws.ecs.launchtype", "ec2")]), Some("AWS::ECS::EC2"));
        assert_eq!(o(&[s("cloud.platform", "aws_ecs"), s("aws.ecs.launchtype", "fargate")]), Some("AWS::ECS::Fargate"));
        assert_eq!(o(&[s("cloud.platform", "aws_ecs"), s("aws.ecs.launchtype", "x")]), Some("AWS::ECS::Container"));
        assert_eq!(o(&[s("cloud.platform", "aws_lambda")]), None);
        assert_eq!(o(&[s("service.name", "x")]), None);
    }

    #[test]
    fn empty_resource_still_has_xray() {
        assert_eq!(block(&[], &[], false).0, r#""aws":{"xray":{"auto_instrumentation":false}}"#);
        assert_eq!(block(&[s("aws.region", "x")], &[s("cloud.provider", "gcp")], false), ("none".into(), 0));
    }

    #[test]
    fn ec2_ecs_eks_beanstalk_xray() {
        let res = [
            s("cloud.provider", "aws"),
            s("cloud.platform", "aws_ecs"),
            s("cloud.account.id", "123"),
            s("cloud.availability_zone", "us-east-1c"),
            s("host.id", "i-1"),
            s("container.name", "c"),
            s("container.name", "d"),
            s("container.id", "cid"),
            s("aws.ecs.cluster.arn", "ca"),
            s("aws.ecs.task.arn", "ta"),
            s("aws.ecs.launchtype", "fargate"),
            s("k8s.cluster.name", "kc"),
            s("telemetry.sdk.name", "opentelemetry"),
            s("telemetry.sdk.language", "java"),
            s("telemetry.sdk.version", "1.2"),
            s("telemetry.distro.version", "2.0"),
        ];
        assert_eq!(
            block(&[], &res, false).0,
            concat!(
                r#""aws":{"ecs":{"container":"c","container_id":"cid","task_arn":"ta","cluster_arn":"ca","availability_zone":"us-east-1c","launch_type":"fargate"},"#,
                r#""ec2":{"instance_id":"i-1","availability_zone":"us-east-1c","instance_size":null,"ami_id":null},"#,
                r#""eks":{"cluster_name":"kc","pod":null,"container_id":"cid"},"#,
                r#""xray":{"sdk":"opentelemetry for java","sdk_version":"1.2","auto_instrumentation":true},"account_id":"123"}"#
            )
        );
        let eb = [
            s("cloud.platform", "aws_elastic_beanstalk"),
            s("service.namespace", "prod"),
            s("service.instance.id", "42"),
            s("telemetry.sdk.name", "otel"),
        ];
        assert_eq!(
            block(&[], &eb, false).0,
            r#""aws":{"elastic_beanstalk":{"environment_name":"prod","version_label":null,"deployment_id":42},"xray":{"sdk":"otel","auto_instrumentation":false}}"#
        );
        let eb = [s("cloud.platform", "aws_elastic_beanstalk"), s("service.instance.id", "x")];
        assert!(block(&[], &eb, false).0.contains(r#""deployment_id":0"#));
    }

    #[test]
    fn span_fields_and_their_consumption() {
        let span = [
            s("rpc.method", "GetItem"),
            s("aws.region", "us-west-2"),
            s("aws.requestId", "r1"),
            s("aws.queue.url", "q1"),
            s("messaging.url", "q2"),
            s("aws.table.name", "t1"),
            kv("aws.account_id", Value::IntValue(1)),
            s("other", "o"),
        ];
        let res = [s("cloud.account.id", "123")];
        let (out, left) = block(&span, &res, false);
        assert_eq!(
            out,
            r#""aws":{"xray":{"auto_instrumentation":false},"operation":"GetItem","region":"us-west-2","request_id":"r1","queue_url":"q2","table_name":"t1"}"#
        );
        assert_eq!(left, 2, "other and messaging.url stay");
        let (out, _) = block(&span, &res, true);
        assert_eq!(out, r#""aws":{"xray":{"auto_instrumentation":false}}"#);
        let span = [s("aws.operation", ""), s("rpc.method", "M")];
        assert!(!block(&span, &[], false).0.contains("operation"), "present but empty: no fallback");
        let span = [kv("aws.dynamodb.table_names", arr(&["a", "b"])), s("aws.table_name", "t")];
        assert!(block(&span, &[], false).0.ends_with(r#""table_names":["a","b"]}"#));
        let span = [kv("aws.dynamodb.table_names", arr(&["a"])), s("aws.table_name", "t")];
        assert!(block(&span, &[], false).0.ends_with(r#""table_name":"a"}"#));
        let span = [kv("aws.dynamodb.table_names", arr(&[])), s("aws.table_name", "t")];
        assert!(block(&span, &[], false).0.ends_with(r#""table_name":"t"}"#));
    }

    #[test]
    fn log_groups() {
        let arns =
            [kv("aws.log.group.arns", arr(&["arn:aws:logs:us-east-1:123456789123:log-group:group1:*", "short"]))];
        assert_eq!(
            block(&[], &arns, false).0,
            concat!(
                r#""aws":{"cloudwatch_logs":[{"log_group":"group1","arn":"arn:aws:logs:us-east-1:123456789123:log-group:group1:*"},"#,
                r#"{"log_group":"short","arn":"short"}],"xray":{"auto_instrumentation":false}}"#
            )
        );
        let names = [s("aws.log.group.names", "g1&&g2"), kv("aws.log.group.arns", Value::IntValue(1))];
        assert!(block(&[], &names, false).0.contains(r#""cloudwatch_logs":[{"log_group":"g1"},{"log_group":"g2"}]"#));
        let odd = [kv("aws.log.group.names", Value::ArrayValue(ArrayValue { values: vec![AnyValue::default()] }))];
        assert!(block(&[], &odd, false).0.contains(r#""cloudwatch_logs":[{"log_group":null}]"#));
    }
}
