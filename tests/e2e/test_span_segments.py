"""OpenTelemetry spans as X-Ray segment documents (the default, XRAY_DAEMON_SPAN_UPLOAD=segments), end to end
with real clients into moto, an independent X-Ray: the stock Python SDK and OTLP/HTTP exporter (X-Ray ids from
opentelemetry-sdk-extension-aws), the Node SDK (sdk-trace-node) with the OTLP/HTTP JSON exporter, and ADOT's UDP
exporter (T1S). moto accepts each converted document with PutTraceSegments, and BatchGetTraces reads them back
with their fields. Nothing goes to X-Ray's OTLP endpoint (the fake one is watched)."""
import json
import shutil
import sys

import pytest

from conftest import LOOPBACK, PEERS, ROOT, base_env, run_capturing
from test_adot_udp import run_adot
from test_otlp_e2e import metrics


@pytest.fixture
def segments_daemon(daemon_factory, fake_otlp, moto):
    """A daemon in the default span mode; its OTLP endpoint is the fake one, which must see nothing."""
    fake_otlp.set_credentials(moto.access_key, moto.secret_key)

    def start(**env):
        return daemon_factory(env={"XRAY_DAEMON_OTLP_ENDPOINT": fake_otlp.endpoint, **env})
    return start


def read_back(moto, trace_ids, count, timeout=20):
    """{span id: document} once moto holds `count` documents for `trace_ids`."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        stored = moto.documents(trace_ids)
        docs = [json.loads(d) for ds in stored.values() for d in ds]
        if len(docs) >= count or time.monotonic() > deadline:
            return docs
        time.sleep(0.3)


def by_name(docs):
    out = {}
    for d in docs:
        out.setdefault(d["name"], []).append(d)
    return out


def test_python_sdk_spans_of_every_kind_are_read_back_from_moto(segments_daemon, moto, fake_otlp, tmp_path):
    d = segments_daemon(XRAY_DAEMON_INDEXED_ATTRIBUTES="order.id")
    capture = tmp_path / "py_otel.json"
    env = base_env(tmp_path)
    out = run_capturing([sys.executable, PEERS / "py_otel_emit.py", "--endpoint",
                         f"http://{LOOPBACK}:{d.tcp_port}/v1/traces", "--capture", capture],
                        env, capture, "py_otel_emit.py")
    spans = {s["kind"]: s for s in out["spans"]}
    trace_ids = sorted({s["trace_id"] for s in out["spans"]})
    assert len(trace_ids) == 2
    # 7 spans; the LOCAL_ROOT client span is split into a service segment and a dependency subsegment.
    assert len(out["spans"]) == 7
    docs = read_back(moto, trace_ids, 8)
    assert len(docs) == 8, [(x["name"], x.get("type"), x["id"], x.get("parent_id")) for x in docs]
    named = by_name(docs)

    server = named["checkout"]
    server = next(x for x in server if x["id"] == spans["server"]["span_id"])
    assert server["trace_id"] == spans["server"]["trace_id"] and "type" not in server and "parent_id" not in server
    assert server["http"] == {
        # client.address without a peer address: X-Ray reads the client ip as forwarded.
        "request": {"x_forwarded_for": True, "method": "GET", "url": "https://api.example.com/orders/7?expand=items",
                    "user_agent": "curl/8.5.0", "client_ip": "203.0.113.9"},
        "response": {"status": 500, "content_length": 0},
    }
    assert (server["fault"], server["error"], server["throttle"]) == (True, False, False)
    [exc] = server["cause"]["exceptions"]
    assert exc["type"] == "ValueError" and exc["message"] == "card declined: insufficient funds"
    assert any(f["label"] == "charge_card" and f["path"].endswith("py_otel_emit.py") for f in exc["stack"]), exc
    assert server["origin"] == "AWS::EC2::Instance"
    assert server["aws"]["ec2"]["instance_id"] == "i-0123456789abcdef0"
    assert server["aws"]["xray"]["sdk"] == "opentelemetry for python"
    assert server["user"] == "user-42"
    assert server["service"] == {"version": "1.4.2"}
    assert server["annotations"] == {"order.id": "A-7"}
    meta = server["metadata"]["default"]
    assert meta["attr.str"] == "text <&>" and meta["attr.int"] == 42 and meta["attr.float"] == 2.5
    assert meta["attr.bool"] is True and meta["attr.strings"] == ["a", "b"] and meta["attr.ints"] == [1, 2, 3]
    assert meta["otel.resource.service.name"] == "checkout"
    assert server["end_time"] > server["start_time"] > 1.7e9

    client = next(x for x in docs if x["id"] == spans["http_client"]["span_id"])
    assert (client["type"], client["namespace"], client["parent_id"]) == ("subsegment", "remote", server["id"])
    assert client["http"]["request"] == {"method": "GET", "url": "https://payments.example.com/charge?id=7"}
    assert client["http"]["response"]["status"] == 429
    assert (client["fault"], client["error"], client["throttle"]) == (False, True, True)

    db = next(x for x in docs if x["id"] == spans["db"]["span_id"])
    assert db["name"] == "orders@db.internal"
    assert db["sql"] == {"url": "SELECT orders", "connection_string": "jdbc:postgresql://db.internal:5432/orders",
                         "sanitized_query": "SELECT * FROM orders WHERE id = $1", "database_type": "postgresql",
                         "user": "app"}

    aws = next(x for x in docs if x["id"] == spans["aws"]["span_id"])
    assert (aws["name"], aws["namespace"]) == ("DynamoDB", "aws")
    assert {k: aws["aws"][k] for k in ("operation", "region", "table_name", "request_id")} == {
        "operation": "GetItem", "region": "us-east-1", "table_name": "orders", "request_id": "REQ123"}

    producer = next(x for x in docs if x["id"] == spans["producer"]["span_id"])
    assert producer["aws"]["queue_url"] == "https://sqs.us-east-1.amazonaws.com/123456789012/orders"

    # ADOT's LOCAL_ROOT: a dependency subsegment (the span's id) under a new service segment.
    dependency = next(x for x in docs if x["id"] == spans["local_root"]["span_id"])
    assert (dependency["type"], dependency["name"]) == ("subsegment", "inventory")
    service = next(x for x in docs if x["id"] == dependency["parent_id"])
    assert service["name"] == "checkout" and "type" not in service and service["parent_id"] == server["id"]

    consumer = next(x for x in docs if x["id"] == spans["consumer"]["span_id"])
    assert "type" not in consumer and consumer["trace_id"] != server["trace_id"]
    assert consumer["links"] == [{"trace_id": producer["trace_id"], "id": producer["id"],
                                  "attributes": {"link.kind": "sqs"}}]

    assert fake_otlp.requests() == [], "a span went to /v1/traces"
    m = metrics(d)
    assert m['xray_daemon_spans_received_total{source="http"}'] == 7
    assert m["xray_daemon_spans_sent_total"] == 8
    assert m['xray_daemon_spans_rejected_total{reason="xray"}'] == 0


NODE_EMIT = r"""
const { NodeTracerProvider } = require('@opentelemetry/sdk-trace-node');
const { SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-http');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { SpanKind, SpanStatusCode } = require('@opentelemetry/api');
const fs = require('fs');
const [endpoint, capture] = process.argv.slice(2);
const provider = new NodeTracerProvider({
  resource: resourceFromAttributes({ 'service.name': 'node-shop', 'cloud.provider': 'aws',
    'cloud.platform': 'aws_ecs', 'aws.ecs.launchtype': 'fargate' }),
  spanProcessors: [new SimpleSpanProcessor(new OTLPTraceExporter({ url: endpoint }))],
});
const tracer = provider.getTracer('node_otel_emit');
const spans = [];
const server = tracer.startSpan('POST /cart', { kind: SpanKind.SERVER, attributes: {
  'http.request.method': 'POST', 'url.scheme': 'http', 'server.address': 'shop.local', 'url.path': '/cart',
  'http.response.status_code': 404, 'cart.items': 3, 'cart.tags': ['a', 'b'] } });
try { throw new TypeError('no such cart'); } catch (e) { server.recordException(e); }
server.setStatus({ code: SpanStatusCode.ERROR });
const ctx = require('@opentelemetry/api').trace.setSpan(require('@opentelemetry/api').context.active(), server);
const call = tracer.startSpan('GET', { kind: SpanKind.CLIENT, attributes: {
  'http.request.method': 'GET', 'url.full': 'http://prices.local/p/1', 'http.response.status_code': 200 } }, ctx);
call.end();
server.end();
for (const [span, kind] of [[server, 'server'], [call, 'client']]) {
  const c = span.spanContext();
  spans.push({ kind, trace_id: c.traceId, span_id: c.spanId });
}
provider.shutdown().then(() => fs.writeFileSync(capture, JSON.stringify({ spans })));
"""


def test_node_sdk_spans_over_otlp_http_json_are_read_back_from_moto(segments_daemon, moto, fake_otlp, tmp_path):
    node = shutil.which("node")
    modules = ROOT / "target" / "node" / "node_modules"
    if not node or not (modules / "@opentelemetry" / "sdk-trace-node").is_dir():
        pytest.fail("node and the OpenTelemetry JS SDK are needed: run tests/e2e/setup.sh")
    d = segments_daemon()
    script, capture = tmp_path / "node_otel_emit.js", tmp_path / "node_otel.json"
    script.write_text(NODE_EMIT)
    env = base_env(tmp_path)
    env["NODE_PATH"] = str(modules)
    out = run_capturing([node, script, f"http://{LOOPBACK}:{d.tcp_port}/v1/traces", capture], env, capture,
                        "node_otel_emit.js")
    spans = {s["kind"]: s for s in out["spans"]}
    # Random W3C trace ids are kept as they are.
    trace_id = "1-{0}-{1}".format(spans["server"]["trace_id"][:8], spans["server"]["trace_id"][8:])
    docs = {x["id"]: x for x in read_back(moto, [trace_id], 2)}
    server, call = docs[spans["server"]["span_id"]], docs[spans["client"]["span_id"]]
    assert server["name"] == "node-shop" and server["origin"] == "AWS::ECS::Fargate"
    assert server["http"]["request"] == {"method": "POST", "url": "http://shop.local/cart"}
    assert (server["fault"], server["error"]) == (False, True), "404 is an error, whatever the status says"
    assert server["cause"]["exceptions"][0]["type"] == "TypeError"
    assert server["metadata"]["default"]["cart.items"] == 3 and server["metadata"]["default"]["cart.tags"] == ["a", "b"]
    assert call["type"] == "subsegment" and call["parent_id"] == server["id"]
    assert call["http"]["request"]["url"] == "http://prices.local/p/1"
    assert fake_otlp.requests() == []


def test_adot_udp_spans_become_documents_in_moto(segments_daemon, moto, fake_otlp, tmp_path):
    d = segments_daemon()
    out, _ = run_adot(tmp_path, d.udp_address, "--spans", "25")
    ids = {s["span_id"] for s in out["spans"]}
    trace_ids = sorted({s["trace_id"] for s in out["spans"]})
    xray_ids = [t if t.startswith("1-") else f"1-{t[:8]}-{t[8:]}" for t in trace_ids]
    docs = read_back(moto, xray_ids, 25)
    assert {x["id"] for x in docs} == ids
    assert all(x["aws"]["xray"]["auto_instrumentation"] in (True, False) for x in docs)
    assert fake_otlp.requests() == []
    assert metrics(d)['xray_daemon_spans_received_total{source="udp"}'] == 25


def test_otlp_mode_sends_the_same_spans_to_v1_traces_and_none_to_put_trace_segments(
        segments_daemon, moto, fake_otlp, tmp_path):
    d = segments_daemon(XRAY_DAEMON_SPAN_UPLOAD="otlp")
    capture = tmp_path / "py_otel.json"
    out = run_capturing([sys.executable, PEERS / "py_otel_emit.py", "--endpoint",
                         f"http://{LOOPBACK}:{d.tcp_port}/v1/traces", "--capture", capture],
                        base_env(tmp_path), capture, "py_otel_emit.py")
    fake_otlp.wait_for_spans(7, timeout=15)
    assert {s.span_id for s in fake_otlp.spans()} == {s["span_id"] for s in out["spans"]}
    assert moto.documents(sorted({s["trace_id"] for s in out["spans"]})) == {}
