"""OpenTelemetry spans over OTLP/gRPC with the real clients: the stock Python exporter
(opentelemetry-exporter-otlp-proto-grpc, grpcio; tests/peers/py_otlp_grpc_emit.py) and Node's
(@opentelemetry/exporter-trace-otlp-grpc, @grpc/grpc-js; tests/peers/node_otlp_emit.js --protocol grpc).
They send to the sidecar's XRAY_DAEMON_OTLP_GRPC_ADDRESS, with gzip and without, and to the Lambda
extension's default endpoint, 127.0.0.1:4317, with no endpoint set anywhere. Spans go to tests/peers/fake_otlp.py
(through test_otlp_e2e.py's `otlp_daemon` and `span_upload_env`); each must arrive exactly once. A full buffer
answers UNAVAILABLE with a RetryInfo, and the client's own retries then deliver everything."""
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import LOOPBACK, PEERS, REGION, ROOT, LoggedProcess, base_env, daemon_bin, free_port, load_peer
from test_otlp_e2e import exactly_once, metrics, otlp_daemon, span_upload_env  # noqa: F401 (a fixture)

GRPC_RE = r"Starting OTLP/gRPC server on 127\.0\.0\.1:(\d+)"
NODE_MODULES = ROOT / "target" / "node" / "node_modules"


@pytest.fixture
def grpc_daemon(otlp_daemon):  # noqa: F811 (the imported fixture)
    """A sidecar taking OTLP/gRPC on a port of its own (`.grpc_port`), spans to the fake OTLP endpoint."""
    def start(extra_args=(), **env):
        d = otlp_daemon(extra_args, XRAY_DAEMON_OTLP_GRPC_ADDRESS=f"{LOOPBACK}:0", **env)
        m = d.wait_for_line(GRPC_RE, timeout=0)
        assert m, f"no OTLP/gRPC listener:\n{d.text()}"
        d.grpc_port = int(m.group(1))
        return d
    return start


def python_peer(tmp_path, *args, wait=True):
    """tests/peers/py_otlp_grpc_emit.py with a clean environment (no OTEL_* variable): the finished process, or
    with wait=False the running one."""
    argv = [sys.executable, PEERS / "py_otlp_grpc_emit.py", *map(str, args)]
    proc = subprocess.Popen(argv, env=base_env(tmp_path), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    if wait:
        proc.out, proc.err = proc.communicate(timeout=60)
    return proc


def python_spans(proc):
    assert proc.returncode == 0, f"py_otlp_grpc_emit.py failed (rc {proc.returncode}):\n{proc.out}\n{proc.err}"
    out = json.loads(proc.out.splitlines()[-1])
    assert set(out["results"]) == {"SUCCESS"}, out["results"]
    return {s["span_id"] for s in out["spans"]}


def node_peer(tmp_path, *args):
    """tests/peers/node_otlp_emit.js --protocol grpc with a clean environment: the span ids it exported."""
    node = shutil.which("node")
    if not node or not (NODE_MODULES / "@opentelemetry" / "exporter-trace-otlp-grpc").is_dir():
        pytest.fail("node or @opentelemetry/exporter-trace-otlp-grpc is missing: run tests/e2e/setup.sh")
    env = base_env(tmp_path)
    env["NODE_PATH"] = str(NODE_MODULES)
    r = subprocess.run([node, PEERS / "node_otlp_emit.js", "--protocol", "grpc", *map(str, args)],
                       env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"node_otlp_emit.js failed (rc {r.returncode}):\n{r.stdout}\n{r.stderr}"
    out = json.loads(r.stdout.splitlines()[-1])
    assert [x["code"] for x in out["results"]] == ["SUCCESS"] * len(out["results"]), out["results"]
    return {s["spanId"] for s in out["spans"]}


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_python_grpc_exporter_to_the_sidecar(grpc_daemon, fake_otlp, tmp_path, compression):
    d = grpc_daemon()
    ids = python_spans(python_peer(tmp_path, "--endpoint", f"http://{LOOPBACK}:{d.grpc_port}", "--spans", 30,
                                   "--batch-size", 10, "--compression", compression,
                                   "--resource", "service.name=py-grpc"))
    assert len(ids) == 30
    fake_otlp.wait_for_spans(30, timeout=15)
    exactly_once(fake_otlp, ids)
    assert {s.resource["service.name"] for s in fake_otlp.spans()} == {"py-grpc"}
    assert metrics(d)['xray_daemon_spans_received_total{source="grpc"}'] == 30
    # Counted once X-Ray's answer is read, a moment after the fake has the spans.
    assert d.wait_for_line(r"Successfully sent batch of \d+ spans", timeout=5), d.text()


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_node_grpc_exporter_to_the_sidecar(grpc_daemon, fake_otlp, tmp_path, compression):
    d = grpc_daemon()
    ids = node_peer(tmp_path, "--url", f"http://{LOOPBACK}:{d.grpc_port}", "--spans", 40,
                    "--compression", compression, "--resource", "service.name=node-grpc")
    assert len(ids) == 40
    fake_otlp.wait_for_spans(40, timeout=15)
    exactly_once(fake_otlp, ids)
    assert {s.resource["service.name"] for s in fake_otlp.spans()} == {"node-grpc"}
    assert metrics(d)['xray_daemon_spans_received_total{source="grpc"}'] == 40


def test_a_full_buffer_pushes_the_exporter_back_and_its_own_retries_deliver_everything(grpc_daemon, fake_otlp,
                                                                                        tmp_path):
    """X-Ray is down, so the 3 MB buffer fills: the daemon answers UNAVAILABLE with a RetryInfo of 1 s and
    drops nothing. X-Ray comes back; the exporter, retrying on its own, delivers every span once."""
    fake = load_peer("fake_otlp")
    fake_otlp.set_mode(fake.Unavailable(retry_after=1))
    d = grpc_daemon(("-m", "3"))
    # 40 spans of 100 KB, 4 a request: 4 MB in 10 requests, more than the buffer holds.
    peer = python_peer(tmp_path, "--endpoint", f"http://{LOOPBACK}:{d.grpc_port}", "--spans", 40, "--batch-size", 4,
                       "--pad", 100_000, "--compression", "gzip", "--timeout", 30, wait=False)
    deadline = time.monotonic() + 30
    while metrics(d)["xray_daemon_otlp_grpc_refused_total"] < 1:
        assert peer.poll() is None, f"the exporter ended before a refusal:\n{peer.communicate()}"
        assert time.monotonic() < deadline, "the buffer never filled"
        time.sleep(0.2)
    fake_otlp.set_mode(None)
    peer.out, peer.err = peer.communicate(timeout=60)
    ids = python_spans(peer)
    # The exporter waited what the RetryInfo said (its backoff would be 1, 2, 4, ... s, with jitter).
    assert re.search(r"UNAVAILABLE encountered while exporting traces .* retrying in 1\.00s", peer.err), peer.err
    fake_otlp.wait_for_spans(40, timeout=30)
    exactly_once(fake_otlp, ids)
    m = metrics(d)
    assert m["xray_daemon_otlp_grpc_refused_total"] >= 1
    assert m['xray_daemon_spans_received_total{source="grpc"}'] == 40
    assert m["xray_daemon_spans_spillover_total"] == 0


def port_free(port):
    """Whether nothing listens on the port (connections of earlier tests waiting out TIME_WAIT do not
    count: the daemon binds with SO_REUSEADDR, as Rust's standard library does)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
            return True
        except OSError:
            return False


def test_lambda_extension_takes_both_exporters_at_the_default_endpoint(fake_otlp, tmp_path):
    """The extension under the Runtime API fake, with no OTLP setting on either side: it listens on
    127.0.0.1:4317 (and 4318), and the Python and Node exporters, with no endpoint set, deliver there.
    The spans are sent at SHUTDOWN. (These are the SDKs' default ports: if another process on this machine
    holds one, the test is skipped and says so.)"""
    taken = [p for p in (4317, 4318) if not port_free(p)]
    if taken:
        pytest.skip(f"port {taken[0]} is taken by another process on this machine")
    sys.path.insert(0, str(PEERS))
    from fake_runtime import NEXT, FakeRuntime
    keys = load_peer("fake_otlp")
    hold = threading.Event()
    with FakeRuntime(hold=hold) as runtime:
        env = base_env(tmp_path)
        env.update({
            "AWS_LAMBDA_RUNTIME_API": runtime.address, "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": keys.TEST_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": keys.TEST_SECRET_KEY,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128", "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "XRAY_DAEMON_UDP_ADDRESS": f"{LOOPBACK}:{free_port(socket.SOCK_DGRAM)}",
            "XRAY_DAEMON_ENDPOINT": "http://127.0.0.1:9", "XRAY_DAEMON_LOG_LEVEL": "debug",
            **span_upload_env(fake_otlp),
        })
        ext = LoggedProcess("extension", [daemon_bin()], env, tmp_path / "extension.log")
        try:
            assert ext.wait_for_line(r"Starting OTLP/gRPC server on 127\.0\.0\.1:4317\b", timeout=10), ext.text()
            assert ext.wait_for_line(r"Starting OTLP/HTTP server on 127\.0\.0\.1:4318\b", timeout=0), ext.text()
            deadline = time.monotonic() + 10
            while not runtime.first(NEXT):
                assert time.monotonic() < deadline, f"no /next:\n{ext.text()}"
                time.sleep(0.05)
            ids = python_spans(python_peer(tmp_path, "--spans", 20, "--compression", "gzip"))
            ids |= node_peer(tmp_path, "--spans", 15)
            hold.set()  # SHUTDOWN
            assert ext.wait(10) == 0, ext.text()
        finally:
            hold.set()
            ext.stop()
            print(ext.text())
    assert len(ids) == 35
    fake_otlp.wait_for_spans(35, timeout=5)
    exactly_once(fake_otlp, ids)
    assert "[Warn]" not in ext.text()
