"""Centralized sampling through the daemon's TCP port, with the official Python SDK's pollers.

The SDK calls POST /GetSamplingRules and POST /SamplingTargets unsigned on the daemon; the daemon
signs them and forwards them to moto (moto_xray_plus.py adds those two operations to moto, which
checks every signature). Also: /metrics parses with the official Prometheus parser and its numbers
match the traffic of the same test.
"""
import json
import sys
import time
import tomllib
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from conftest import LOOPBACK, PEERS, ROOT, run_capturing, sdk_env

VERSION = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]


def peer_log(moto, since):
    if not moto.peer_log.is_file():
        return []
    lines = moto.peer_log.read_text(encoding="utf-8").splitlines()[since:]
    return [json.loads(line) for line in lines if line.strip()]


def peer_log_len(moto):
    return len(moto.peer_log.read_text(encoding="utf-8").splitlines()) if moto.peer_log.is_file() else 0


def test_python_sdk_gets_rules_and_targets_through_the_daemon(moto, daemon_factory, tmp_path):
    d = daemon_factory()
    assert d.tcp_port, f"no 'Starting proxy http server on' line:\n{d.text()}"
    since = peer_log_len(moto)
    env = sdk_env(tmp_path, d.udp_port)
    env["AWS_XRAY_DAEMON_ADDRESS"] = f"tcp:{LOOPBACK}:{d.tcp_port} udp:{LOOPBACK}:{d.udp_port}"
    capture = tmp_path / "sampling_capture.json"
    # 12 s: the rule poller fires at once, the target poller after ~10 s.
    out = run_capturing([sys.executable, PEERS / "py_emit.py", "--capture", capture, "12"], env, capture,
                        "py_emit.py (sampling)", timeout=90)

    calls = peer_log(moto, since)
    ops = [c["op"] for c in calls]
    assert "GetSamplingRules" in ops and "GetSamplingTargets" in ops, f"moto saw {ops}\n{d.text()}"
    for c in calls:
        headers = {k.lower(): v for k, v in c["headers"].items()}
        assert headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={moto.access_key}/")
        assert headers["host"] == f"{LOOPBACK}:{moto.port}"
        # The SDK's own invocation headers are not passed on (nor signed).
        assert "amz-sdk-invocation-id" not in headers
    targets = [c for c in calls if c["op"] == "GetSamplingTargets"]
    body = json.loads(targets[0]["body"])
    assert body["SamplingStatisticsDocuments"][0]["RuleName"] == "Default"

    # The SDK took the rule moto served (FixedRate 0.05), so the whole round trip worked.
    rules = {r["name"]: r for r in out["sampling_rules"]}
    assert "Default" in rules and rules["Default"]["rate"] == 0.05, out["sampling_rules"]

    families = metrics(d.tcp_port)
    forwarded = sample(families, "xray_daemon_proxy_requests", outcome="forwarded")
    assert forwarded == len(calls), (forwarded, ops)


def test_metrics_parse_and_match_the_traffic(moto, daemon_factory, emit_python):
    d = daemon_factory()
    out = emit_python(d.udp_port)
    sent = len(out["datagrams"])
    d.send("no newline, rejected")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and sum(d.success_counts()) < sent:
        time.sleep(0.1)
    families = metrics(d.tcp_port)
    assert sample(families, "xray_daemon_udp_datagrams_received") == sent + 1
    assert sample(families, "xray_daemon_segments_received") == sent
    assert sample(families, "xray_daemon_segments_sent") == sent
    assert sample(families, "xray_daemon_segments_rejected", reason="missing_newline") == 1
    assert sample(families, "xray_daemon_segments_rejected", reason="xray") == 0
    assert sample(families, "xray_daemon_segments_spillover") == 0
    duration = "xray_daemon_backend_request_duration_seconds"
    assert sample(families, duration, suffix="_count", api="put_trace_segments") >= 1
    assert families["xray_daemon_buffer_bytes"].type == "gauge"
    assert families[duration].type == "histogram"
    errors = [s for s in families["xray_daemon_backend_errors"].samples if s.name.endswith("_total")]
    assert len(errors) == 4 * 6 and all(s.value == 0 for s in errors), errors
    assert sample(families, "xray_daemon_build_info", suffix="", version=VERSION) == 1
    for name in ("process_resident_memory_bytes", "process_open_fds", "process_max_fds", "process_start_time_seconds"):
        assert sample(families, name, suffix="") > 0, name
    assert sample(families, "process_cpu_seconds") > 0


def metrics(port):
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(families, family, suffix="_total", **labels):
    """The value of the one sample of `family` named family+suffix with these labels."""
    name = family + suffix
    fam = families[family]
    values = [s.value for s in fam.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(values) == 1, (name, labels, fam.samples)
    return values[0]
