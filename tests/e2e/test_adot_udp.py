"""What AWS Distro for OpenTelemetry (Python 0.21.0) sends to the daemon's UDP port in Lambda: the facts the
daemon's T1S/T1U receiver relies on, checked on the real distro (tests/peers/adot_emit.py run under
`opentelemetry-instrument` from target/venv-adot) with a loopback UDP socket standing in for the daemon.
A version bump of ADOT that changes any of them fails here first."""
import base64
import json
import socket
import subprocess

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from conftest import LOOPBACK, PEERS, ROOT, base_env

ADOT_BIN = ROOT / "target" / "venv-adot" / "bin"
HEADER = b'{"format":"json","version":1}\n'
MAX_UDP_PAYLOAD = 65507  # IPv4: 65535 - 20 (IP) - 8 (UDP)


class UdpSink:
    """A UDP socket on 127.0.0.1:port; datagrams() reads what the kernel has queued for it (loopback
    delivery is done by the time the sender's sendto returns, and the sender has exited when we read)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((LOOPBACK, 0))
        self.port = self.sock.getsockname()[1]
        self._got = []

    @property
    def datagrams(self):
        self.sock.setblocking(False)
        for _ in range(10_000):
            try:
                self._got.append(self.sock.recv(70000))
            except BlockingIOError:
                break
        return list(self._got)

    def close(self):
        self.sock.close()


@pytest.fixture
def sink():
    s = UdpSink()
    yield s
    s.close()


def run_adot(tmp_path, address, *args, **env_extra):
    if not (ADOT_BIN / "opentelemetry-instrument").is_file():
        pytest.fail("target/venv-adot is missing: run tests/e2e/setup.sh")
    env = base_env(tmp_path)
    env.update({"AWS_LAMBDA_FUNCTION_NAME": "adot-fn", "AWS_REGION": "us-east-1", "OTEL_SERVICE_NAME": "adot-svc",
                "AWS_XRAY_DAEMON_ADDRESS": address, "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"})
    env.update(env_extra)
    r = subprocess.run([ADOT_BIN / "opentelemetry-instrument", ADOT_BIN / "python", PEERS / "adot_emit.py", *args],
                       env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1]), r.stderr


def parse(datagram):
    """(prefix, ExportTraceServiceRequest) of a T1S/T1U datagram, checking the exact layout."""
    assert datagram.startswith(HEADER)
    prefix, payload = datagram[len(HEADER):len(HEADER) + 3].decode(), datagram[len(HEADER) + 3:]
    assert prefix in ("T1S", "T1U")
    return prefix, ExportTraceServiceRequest.FromString(base64.b64decode(payload, validate=True))


def span_list(req):
    return [(sp, rs.resource) for rs in req.resource_spans for ss in rs.scope_spans for sp in ss.spans]


def test_lambda_sends_t1s_datagrams_of_at_most_10_spans(tmp_path, sink):
    out, _ = run_adot(tmp_path, f"{LOOPBACK}:{sink.port}", "--spans", "25")
    assert out["provider"] == "TracerProvider"
    parsed = [parse(d) for d in sink.datagrams]
    assert [(p, len(span_list(r))) for p, r in parsed] == [("T1S", 10), ("T1S", 10), ("T1S", 5)]
    got = {(sp.trace_id.hex(), sp.span_id.hex()) for _, r in parsed for sp, _ in span_list(r)}
    assert got == {(s["trace_id"], s["span_id"]) for s in out["spans"]}
    for _, r in parsed:
        for _, resource in span_list(r):
            attrs = {kv.key: kv.value.string_value for kv in resource.attributes}
            assert attrs["service.name"] == "adot-svc" and attrs["telemetry.sdk.language"] == "python"
    assert all(len(d) <= MAX_UDP_PAYLOAD for d in sink.datagrams)


def test_application_signals_send_unsampled_spans_as_t1u(tmp_path, sink):
    # Runtime metrics off: else ADOT also posts OTLP metrics to http://localhost:4316/v1/metrics and
    # retries that for ~8 s at exit.
    out, _ = run_adot(tmp_path, f"{LOOPBACK}:{sink.port}", "--spans", "12",
                      OTEL_AWS_APPLICATION_SIGNALS_ENABLED="true", OTEL_TRACES_SAMPLER="always_off",
                      OTEL_AWS_APPLICATION_SIGNALS_RUNTIME_ENABLED="false")
    assert not any(s["sampled"] for s in out["spans"])
    parsed = [parse(d) for d in sink.datagrams]
    assert [(p, len(span_list(r))) for p, r in parsed] == [("T1U", 10), ("T1U", 2)]


def test_a_batch_over_64k_is_dropped_not_split(tmp_path, sink):
    """The first batch (children 1-10, 9 of them with 6 KB) would be a ~75 KB datagram: sendto fails
    (EMSGSIZE) and those 10 spans are lost, logged only. The second batch (children 11-19 + root) goes."""
    out, _ = run_adot(tmp_path, f"{LOOPBACK}:{sink.port}", "--spans", "20", "--pad", "6000", "--pad-first", "9")
    [(prefix, req)] = [parse(d) for d in sink.datagrams]
    names = sorted(sp.name for sp, _ in span_list(req))
    assert (prefix, names) == ("T1S", sorted(["adot-0"] + [f"adot-{i}" for i in range(11, 20)]))
    assert len(out["spans"]) == 20


def test_tcp_udp_address_pair_turns_tracing_off(tmp_path, sink):
    """ADOT splits AWS_XRAY_DAEMON_ADDRESS on ':' and takes [0] as host, int([1]) as port: the X-Ray SDKs'
    `tcp:H:P udp:H:P` form makes its configurator raise, and the app runs with no tracing at all."""
    out, stderr = run_adot(tmp_path, f"tcp:{LOOPBACK}:{sink.port} udp:{LOOPBACK}:{sink.port}")
    assert out == {"provider": "ProxyTracerProvider", "spans": []}
    assert "Invalid endpoint: tcp:" in stderr and sink.datagrams == []
