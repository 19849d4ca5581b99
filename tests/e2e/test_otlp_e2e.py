"""OpenTelemetry spans through the daemon, with the real clients: AWS's OpenTelemetry distribution
(its UDP exporter, T1S datagrams, as in Lambda), the stock Python OTLP/HTTP exporter and the Node OTLP/HTTP
proto exporter on the daemon's TCP port, in XRAY_DAEMON_SPAN_UPLOAD=otlp mode. Spans go to tests/peers/fake_otlp.py, a fake of X-Ray's OTLP
endpoint that checks SigV4 and decodes with the Python opentelemetry-proto package; segments go to moto,
beside them. Every span must arrive exactly once, with its resource attributes."""
import json
import os
import socket
import shutil
import subprocess
import urllib.request
from collections import Counter

import pytest

from conftest import LOOPBACK, PEERS, ROOT, base_env, free_port, load_peer
from test_adot_udp import run_adot


def span_upload_env(fake_otlp):
    """The daemon's environment for sending spans to the fake OTLP endpoint: the one place the tests
    say how spans are uploaded (test_otlp_grpc_e2e.py's Lambda extension takes it too)."""
    return {"XRAY_DAEMON_OTLP_ENDPOINT": fake_otlp.endpoint, "XRAY_DAEMON_SPAN_UPLOAD": "otlp"}


@pytest.fixture
def otlp_daemon(daemon_factory, fake_otlp, moto):
    """A daemon sending segments to moto and spans to the fake OTLP endpoint (XRAY_DAEMON_SPAN_UPLOAD=otlp),
    signing with moto's key."""
    fake_otlp.set_credentials(moto.access_key, moto.secret_key)

    def start(extra_args=(), **env):
        return daemon_factory(extra_args=extra_args, env={**span_upload_env(fake_otlp), **env})
    return start


def metrics(daemon):
    with urllib.request.urlopen(f"http://{LOOPBACK}:{daemon.tcp_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def exactly_once(fake, expected_ids):
    counts = Counter(s.span_id for s in fake.spans())
    assert set(counts) == set(expected_ids), f"missing {set(expected_ids) - set(counts)}, extra {set(counts) - set(expected_ids)}"
    assert all(n == 1 for n in counts.values()), f"sent more than once: {[i for i, n in counts.items() if n > 1]}"


def test_adot_udp_spans_reach_xray_once_with_their_resource_beside_segments(otlp_daemon, fake_otlp, moto, tmp_path):
    d = otlp_daemon()
    out, _ = run_adot(tmp_path, d.udp_address, "--spans", "25")
    ids = {s["span_id"] for s in out["spans"]}
    assert len(ids) == 25
    # Segments keep flowing beside the spans.
    trace = "1-5759e988-bd862e3fe1be46a994272793"
    doc = json.dumps({"trace_id": trace, "id": "70de5b6f19ff9a0a", "name": "beside", "start_time": 1.0, "end_time": 2.0})
    d.send('{"format":"json","version":1}\n' + doc)
    fake_otlp.wait_for_spans(25, timeout=15)
    stored = moto.wait_for_documents({trace: [doc]}, timeout=15)
    assert stored.get(trace) == [doc], "the segment sent beside the spans reached X-Ray byte for byte"
    exactly_once(fake_otlp, ids)
    for span in fake_otlp.spans():
        assert span.resource["service.name"] == "adot-svc"
        assert span.resource["telemetry.sdk.language"] == "python"
    assert all(r.signature_ok for r in fake_otlp.requests())
    assert all(r.content_encoding == "gzip" for r in fake_otlp.requests())
    d.wait_for_line(r"Successfully sent batch of \d+ spans", timeout=5)
    m = metrics(d)
    assert m['xray_daemon_spans_received_total{source="udp"}'] == 25
    assert m["xray_daemon_spans_sent_total"] == 25
    assert m['xray_daemon_otlp_datagrams_total{kind="sampled_spans"}'] == 3  # 10 + 10 + 5


def test_unsampled_spans_are_counted_not_uploaded(otlp_daemon, fake_otlp, tmp_path):
    d = otlp_daemon()
    out, _ = run_adot(tmp_path, d.udp_address, "--spans", "12",
                      OTEL_AWS_APPLICATION_SIGNALS_ENABLED="true", OTEL_TRACES_SAMPLER="always_off",
                      OTEL_AWS_APPLICATION_SIGNALS_RUNTIME_ENABLED="false")
    assert not any(s["sampled"] for s in out["spans"])
    d.wait_for_line(r"OTLP datagram \(UnsampledSpans", timeout=5)
    m = metrics(d)
    assert m['xray_daemon_otlp_datagrams_total{kind="unsampled_spans"}'] == 2
    assert m['xray_daemon_spans_received_total{source="udp"}'] == 0
    assert fake_otlp.requests() == []


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_python_otlp_http_exporter_on_the_tcp_port(otlp_daemon, fake_otlp, compression):
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    d = otlp_daemon()
    exporter = OTLPSpanExporter(endpoint=f"http://{LOOPBACK}:{d.tcp_port}/v1/traces",
                                compression=Compression.Gzip if compression == "gzip" else Compression.NoCompression)
    provider = TracerProvider(resource=Resource.create({"service.name": "py-otel", "deployment.environment": "e2e"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("e2e")
    ids = set()
    for i in range(30):
        with tracer.start_as_current_span(f"py-{i}") as span:
            ids.add(format(span.get_span_context().span_id, "016x"))
    provider.shutdown()
    fake_otlp.wait_for_spans(30, timeout=15)
    exactly_once(fake_otlp, ids)
    assert {s.resource["deployment.environment"] for s in fake_otlp.spans()} == {"e2e"}
    assert metrics(d)['xray_daemon_spans_received_total{source="http"}'] == 30


def test_node_otlp_proto_exporter_on_the_tcp_port(otlp_daemon, fake_otlp, tmp_path):
    node = shutil.which("node")
    modules = ROOT / "target" / "node" / "node_modules"
    if not node or not (modules / "@opentelemetry" / "exporter-trace-otlp-proto").is_dir():
        pytest.fail("node or @opentelemetry/exporter-trace-otlp-proto is missing: run tests/e2e/setup.sh")
    d = otlp_daemon()
    env = base_env(tmp_path)
    env["NODE_PATH"] = str(modules)
    r = subprocess.run([node, PEERS / "node_otlp_emit.js", "--url", f"http://{LOOPBACK}:{d.tcp_port}/v1/traces",
                        "--spans", "40", "--compression", "gzip", "--resource", "service.name=node-otel"],
                       env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.splitlines()[-1])
    assert [r["code"] for r in out["results"]] == ["SUCCESS"]
    ids = {s["spanId"] for s in out["spans"]}
    assert len(ids) == 40
    fake_otlp.wait_for_spans(40, timeout=15)
    exactly_once(fake_otlp, ids)
    assert {s.resource["service.name"] for s in fake_otlp.spans()} == {"node-otel"}


def test_throttling_is_retried_after_retry_after_and_partial_success_is_counted(otlp_daemon, fake_otlp, tmp_path):
    fake = load_peer("fake_otlp")
    fake_otlp.push_fault(fake.Throttle(retry_after=1), fake.PartialSuccess(3, "spans too old"))
    d = otlp_daemon()
    out, _ = run_adot(tmp_path, d.udp_address, "--spans", "8")
    fake_otlp.wait_for_requests(2, timeout=15)
    first, second = fake_otlp.requests()[:2]
    assert first.status == 429 and second.status == 200
    assert second.at - first.at >= 1.0, "Retry-After: 1 is honoured"
    d.wait_for_line(r"X-Ray refused 3 spans of a batch: spans too old", timeout=5)
    m = metrics(d)
    assert m['xray_daemon_spans_rejected_total{reason="xray"}'] == 3
    assert m["xray_daemon_spans_sent_total"] == 5
    assert m['xray_daemon_backend_errors_total{api="otlp",class="throttled"}'] == 1


def test_the_layer_wrappers_address_works_for_adot_with_the_proxy_on(otlp_daemon, fake_otlp, tmp_path):
    """The Lambda layer's wrapper (extension/wrapper) with XRAY_DAEMON_LAMBDA_PROXY=true writes an
    AWS_XRAY_DAEMON_ADDRESS that ADOT's UDP exporter can use when UDP and TCP share an address."""
    port = free_port(socket.SOCK_DGRAM)
    address = f"{LOOPBACK}:{port}"
    env = {"PATH": os.environ["PATH"], "XRAY_DAEMON_LAMBDA_PROXY": "true",
           "XRAY_DAEMON_UDP_ADDRESS": address, "XRAY_DAEMON_TCP_ADDRESS": address}
    r = subprocess.run(["sh", ROOT / "extension" / "wrapper", "env"], env=env, capture_output=True, text=True, timeout=10)
    wrapped = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    assert wrapped["AWS_XRAY_DAEMON_ADDRESS"] == address
    otlp_daemon(extra_args=("-b", address, "-t", address))
    out, _ = run_adot(tmp_path, wrapped["AWS_XRAY_DAEMON_ADDRESS"], "--spans", "3")
    assert out["provider"] != "ProxyTracerProvider", "ADOT kept tracing on"
    fake_otlp.wait_for_spans(3, timeout=15)
    exactly_once(fake_otlp, {s["span_id"] for s in out["spans"]})
