"""Self-tests of tests/peers/fake_otlp.py, the fake X-Ray OTLP endpoint, so that the daemon tests built on
it can fail: real OTLP exporters (Python and Node) reach it and their spans arrive intact; bad signatures,
bodies and sizes are refused the way the endpoint documents; every scripted fault does what it says.
Loopback only; each test takes well under 5 s. Requests are signed with botocore (the fake's verifier is
hand-written, so the two must agree)."""
import base64
import datetime
import gzip
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
import zlib
from unittest import mock

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from google.protobuf import json_format
from google.rpc.status_pb2 import Status as RpcStatus
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest, ExportTraceServiceResponse)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from conftest import LOOPBACK, PEERS, REGION, ROOT, base_env, load_peer

fo = load_peer("fake_otlp")
CREDS = fo.Credentials()
NS = 1_000_000_000


# ---- helpers -------------------------------------------------------------------------------------

def sign(method, url, body, headers, creds=CREDS, region=REGION, service="xray", at=None):
    """headers + X-Amz-Date/Authorization (+ token) as botocore's SigV4Auth computes them."""
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    signer = SigV4Auth(BotoCredentials(creds.access_key, creds.secret_key, creds.session_token), service, region)
    if at is None:
        signer.add_auth(req)
    else:
        with mock.patch("botocore.auth.get_current_datetime", return_value=at):
            signer.add_auth(req)
    return dict(req.headers.items())


class BotocoreAuth(requests.auth.AuthBase):
    """SigV4 for a requests.Session (what the OTLP exporter posts with), over the body as sent."""

    def __call__(self, r):
        keep = {k: v for k, v in r.headers.items() if k.lower() in ("content-type", "content-encoding")}
        signed = sign(r.method, r.url, r.body, keep)
        for k in ("Authorization", "X-Amz-Date"):
            r.headers[k] = signed[k]
        return r


def post(fake, body, content_type=fo.PROTOBUF, encoding=None, signed=True, path=fo.PATH, method="POST", **kw):
    headers = {"Content-Type": content_type}
    if encoding:
        headers["Content-Encoding"] = encoding
    url = fake.base_url + path
    if signed:
        headers = sign(method, url, body, headers, **kw)
    with requests.Session() as s:
        return s.request(method, url, data=body, headers=headers, timeout=10)


def kv(key, value):
    return KeyValue(key=key, value={"string_value": value})


def make_request(names=("a",), times=None, pad=0, resource=None):
    """One resource, one scope, a span per name (random ids, times now unless given, `pad` bytes of
    attribute on each)."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(kv(k, v) for k, v in (resource or {"service.name": "selftest"}).items())
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = "selftest-scope", "0.1"
    now = time.time_ns()
    trace_id = os.urandom(16)
    for i, name in enumerate(names):
        sp = ss.spans.add(trace_id=trace_id, span_id=os.urandom(8), name=name, kind=1)
        sp.start_time_unix_nano = sp.end_time_unix_nano = times[i] if times else now
        if pad:
            sp.attributes.append(kv("pad", "p" * pad))
    return req


def set_pad(span, total, target):
    """Grow/shrink span's pad attribute until total() == target (varint lengths shift it a little)."""
    for _ in range(6):
        diff = target - total()
        if diff == 0:
            return
        attr = span.attributes[-1].value
        attr.string_value = "p" * (len(attr.string_value) + diff)
    assert total() == target


def response_of(r):
    assert r.headers["Content-Type"] == fo.PROTOBUF
    return ExportTraceServiceResponse.FromString(r.content)


def provider(exporter, resource):
    tp = TracerProvider(resource=Resource.create(resource))
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    return tp


# ---- real exporters --------------------------------------------------------------------------------

@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_python_exporter_spans_arrive_intact(fake_otlp, compression):
    session = requests.Session()
    session.auth = BotocoreAuth()
    exporter = OTLPSpanExporter(endpoint=fake_otlp.endpoint, compression=compression, session=session, timeout=5)
    memory = InMemorySpanExporter()
    tp = TracerProvider(resource=Resource.create({"service.name": "checkout", "cloud.region": "eu-west-1",
                                                  "k8s.pod.name": "pod-7"}))
    tp.add_span_processor(SimpleSpanProcessor(memory))
    tracer = tp.get_tracer("shop.scope", "3.2.1")
    with tracer.start_as_current_span("parent"):
        for i in range(2):
            with tracer.start_as_current_span(f"child-{i}") as s:
                s.set_attribute("item.count", i)
    finished = memory.get_finished_spans()
    assert exporter.export(finished) == SpanExportResult.SUCCESS

    spans = fake_otlp.wait_for_spans(3, timeout=3)
    by_name = {s.name: s for s in spans}
    assert sorted(by_name) == ["child-0", "child-1", "parent"]
    sdk = {s.name: s.context for s in finished}
    parent = by_name["parent"]
    for s in spans:
        assert s.trace_id == format(sdk[s.name].trace_id, "032x")
        assert s.span_id == format(sdk[s.name].span_id, "016x")
        assert (s.resource["service.name"], s.resource["cloud.region"], s.resource["k8s.pod.name"]) == \
            ("checkout", "eu-west-1", "pod-7")
        assert (s.scope_name, s.scope_version) == ("shop.scope", "3.2.1")
    assert parent.parent_span_id == ""
    assert by_name["child-1"].parent_span_id == parent.span_id
    assert by_name["child-1"].attributes == {"item.count": 1}

    [req] = fake_otlp.requests()
    assert (req.status, req.signature_ok, req.content_type, req.span_count) == (200, True, fo.PROTOBUF, 3)
    assert req.content_encoding == ("gzip" if compression is Compression.Gzip else "identity")
    assert req.header("user-agent").startswith("OTel-OTLP-Exporter-Python/")
    if compression is Compression.Gzip:
        assert req.decoded_bytes == len(gzip.decompress(req.body)) != req.wire_bytes


def test_python_exporter_retries_503_after_retry_after_but_not_429(fake_otlp):
    """What the stock Python exporter (1.44.0) does with the fake's faults: 5xx retried, 429 not."""
    session = requests.Session()
    session.auth = BotocoreAuth()
    exporter = OTLPSpanExporter(endpoint=fake_otlp.endpoint, session=session, timeout=4)
    tracer = provider(exporter, {"service.name": "retry"}).get_tracer("t")
    fake_otlp.push_fault(fo.Unavailable(retry_after=0))
    t0 = time.monotonic()
    with tracer.start_as_current_span("after-503"):
        pass
    assert [r.status for r in fake_otlp.requests()] == [503, 200]
    assert 0.7 < time.monotonic() - t0 < 3  # its own 1 s (+-20 %) backoff; Retry-After is ignored
    fake_otlp.push_fault(fo.Throttle(retry_after=1))
    with tracer.start_as_current_span("after-429"):
        pass
    assert [r.status for r in fake_otlp.requests()] == [503, 200, 429]
    assert [s.name for s in fake_otlp.spans()] == ["after-503"]


NODE_MODULES = ROOT / "target" / "node" / "node_modules"


def run_node_emit(url, *args):
    node = shutil.which("node")
    if not node or not (NODE_MODULES / "@opentelemetry" / "exporter-trace-otlp-proto").is_dir():
        pytest.fail("node or @opentelemetry/exporter-trace-otlp-proto in target/node is missing: "
                    "run tests/e2e/setup.sh")
    env = base_env(ROOT / "target")
    env["NODE_PATH"] = str(NODE_MODULES)
    r = subprocess.run([node, PEERS / "node_otlp_emit.js", "--url", url, *args], env=env, cwd=ROOT,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    return r.returncode, (json.loads(r.stdout) if r.stdout.strip() else None), r.stderr


def test_node_exporter_chunked_gzip_and_retry_after(fake_otlp):
    """The Node exporter (0.219.0) posts chunked bodies and waits out Retry-After on a 429."""
    fake_otlp.verify_signature = False  # it cannot sign; the daemon's receiver takes it unsigned
    fake_otlp.push_fault(fo.Throttle(retry_after=1))
    rc, out, err = run_node_emit(fake_otlp.endpoint, "--spans", "4", "--compression", "gzip",
                                 "--resource", "service.name=node-svc", "--resource", "team=obs")
    assert rc == 0, err
    spans = fake_otlp.wait_for_spans(4, timeout=2)
    assert {(s.trace_id, s.span_id, s.name) for s in spans} == \
        {(s["traceId"], s["spanId"], s["name"]) for s in out["spans"]}
    assert all(s.resource["service.name"] == "node-svc" and s.resource["team"] == "obs" for s in spans)
    first, second = fake_otlp.requests()
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 0.95
    assert second.chunked and second.header("content-length") is None and second.content_encoding == "gzip"
    assert second.signature_error == "missing Authorization header"


# ---- SigV4 -----------------------------------------------------------------------------------------

def test_botocore_signatures_verify_with_session_token_and_content_sha256(fake_otlp):
    fake_otlp.set_credentials("ASIAFAKE", "sekret", session_token="tok+en/=")
    body = make_request().SerializeToString()
    headers = sign("POST", fake_otlp.endpoint, body, {"Content-Type": fo.PROTOBUF},
                   creds=fo.Credentials("ASIAFAKE", "sekret", "tok+en/="))
    headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
    r = requests.post(fake_otlp.endpoint, data=body, headers=headers, timeout=5)
    assert r.status_code == 200, r.content
    assert response_of(r) == ExportTraceServiceResponse()


def tamper_body(fake):
    body = make_request().SerializeToString()
    headers = sign("POST", fake.endpoint, body, {"Content-Type": fo.PROTOBUF})
    return requests.post(fake.endpoint, data=body + b"\x00", headers=headers, timeout=5)


def drop_header(name):
    def go(fake):
        body = make_request().SerializeToString()
        headers = sign("POST", fake.endpoint, body, {"Content-Type": fo.PROTOBUF})
        del headers[name]
        return requests.post(fake.endpoint, data=body, headers=headers, timeout=5)
    return go


def signed_with(**kw):
    return lambda fake: post(fake, make_request().SerializeToString(), **kw)


@pytest.mark.parametrize("send, reason", [
    (signed_with(creds=fo.Credentials(fo.TEST_ACCESS_KEY, "wrong-secret")), "signature mismatch"),
    (tamper_body, "signature mismatch"),
    (signed_with(at=datetime.datetime.utcnow() - datetime.timedelta(minutes=20)), "Signature expired"),
    (signed_with(at=datetime.datetime.utcnow() + datetime.timedelta(minutes=20)), "Signature expired"),
    (drop_header("X-Amz-Date"), "missing X-Amz-Date"),
    (signed_with(signed=False), "missing Authorization"),
    (signed_with(region="us-west-2"), "region 'us-west-2'"),
    (signed_with(service="execute-api"), "service 'execute-api'"),
    (signed_with(creds=fo.Credentials("AKIDUNKNOWN", fo.TEST_SECRET_KEY)), "unknown access key"),
    (signed_with(creds=fo.Credentials(fo.TEST_ACCESS_KEY, fo.TEST_SECRET_KEY, "tok")), "unexpected X-Amz-Security"),
], ids=["wrong-secret", "changed-body", "old-date", "future-date", "no-date", "unsigned", "wrong-region",
        "wrong-service", "unknown-key", "stray-token"])
def test_bad_signatures_are_403_and_consume_no_fault(fake_otlp, send, reason):
    fake_otlp.push_fault(fo.Status(500))
    r = send(fake_otlp)
    assert r.status_code == 403
    assert reason in RpcStatus.FromString(r.content).message
    assert r.headers["x-amzn-ErrorType"] in ("InvalidSignatureException", "MissingAuthenticationTokenException")
    [req] = fake_otlp.requests()
    assert not req.signature_ok and reason in req.signature_error
    assert fake_otlp.spans() == [] and fake_otlp.pending_faults() == 1


def test_clock_skew_is_configurable(fake_otlp):
    fake_otlp.set_max_clock_skew(60)
    old = datetime.datetime.utcnow() - datetime.timedelta(seconds=90)
    assert post(fake_otlp, make_request().SerializeToString(), at=old).status_code == 403
    fake_otlp.set_max_clock_skew(None)
    assert post(fake_otlp, make_request().SerializeToString(), at=old - datetime.timedelta(days=3)).status_code == 200


# ---- routes and bodies -----------------------------------------------------------------------------

def test_only_post_v1_traces_is_served(fake_otlp):
    assert post(fake_otlp, b"", path="/v1/logs").status_code == 404
    assert post(fake_otlp, b"", path="/").status_code == 404
    r = post(fake_otlp, b"", method="GET")
    assert (r.status_code, r.headers["Allow"]) == (405, "POST")
    assert post(fake_otlp, b"", method="PUT").status_code == 405
    assert post(fake_otlp, b"").status_code == 200  # an empty request is a valid one with no spans


@pytest.mark.parametrize("body, ctype, encoding, status", [
    (b"\xff\xff\xff\xff", fo.PROTOBUF, None, 400),
    (b"{not json", fo.JSON, None, 400),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', fo.JSON, None, 400),
    (b"\x1f\x8b\x08\x00garbage", fo.PROTOBUF, "gzip", 400),
    (gzip.compress(b"x" * 100)[:-10], fo.PROTOBUF, "gzip", 400),
    (zlib.compress(b""), fo.PROTOBUF, "deflate", 415),
    (b"", "text/plain", None, 415),
], ids=["protobuf", "json", "json-id", "gzip", "truncated-gzip", "deflate", "content-type"])
def test_undecodable_bodies_are_refused(fake_otlp, body, ctype, encoding, status):
    r = post(fake_otlp, body, content_type=ctype, encoding=encoding)
    assert r.status_code == status, r.content
    [req] = fake_otlp.requests()
    assert req.signature_ok and req.status == status and req.error_message


def otlp_json(req):
    """OTLP JSON: lowerCamelCase, ids as hex strings."""
    d = json_format.MessageToDict(req)
    for rs in d["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for sp in ss["spans"]:
                for k in ("traceId", "spanId"):
                    sp[k] = base64.b64decode(sp[k]).hex()
    return json.dumps(d).encode()


def test_json_bodies_are_decoded_and_answered_in_json(fake_otlp):
    fake_otlp.push_fault(fo.PartialSuccess(1, "one refused"))
    req = make_request(names=("j1", "j2"), resource={"service.name": "json-svc"})
    r = post(fake_otlp, gzip.compress(otlp_json(req)), content_type=fo.JSON + "; charset=utf-8", encoding="gzip")
    assert r.status_code == 200 and r.headers["Content-Type"] == fo.JSON
    resp = json_format.Parse(r.content, ExportTraceServiceResponse())
    assert (resp.partial_success.rejected_spans, resp.partial_success.error_message) == (1, "one refused")
    [s] = fake_otlp.spans()
    sent = req.resource_spans[0].scope_spans[0].spans[1]
    assert (s.name, s.trace_id, s.span_id, s.resource) == ("j2", sent.trace_id.hex(), sent.span_id.hex(),
                                                            {"service.name": "json-svc"})
    r = post(fake_otlp, b"[]", content_type=fo.JSON)
    assert r.status_code == 400 and r.headers["Content-Type"] == fo.JSON
    assert "not an OTLP JSON" in json.loads(r.content)["message"]


def test_chunked_request_bodies_are_read(fake_otlp):
    body = make_request(names=("c1", "c2", "c3")).SerializeToString()
    headers = sign("POST", fake_otlp.endpoint, body, {"Content-Type": fo.PROTOBUF})
    pieces = iter([body[:7], body[7:50], body[50:]])
    r = requests.post(fake_otlp.endpoint, data=pieces, headers=headers, timeout=5)
    assert r.status_code == 200
    [req] = fake_otlp.requests()
    assert req.chunked and req.wire_bytes == len(body)
    assert sorted(s.name for s in fake_otlp.spans()) == ["c1", "c2", "c3"]


# ---- limits ----------------------------------------------------------------------------------------

def test_span_count_limit(fake_otlp):
    assert post(fake_otlp, make_request(names=["s"] * 10_000).SerializeToString()).status_code == 200
    r = post(fake_otlp, make_request(names=["s"] * 10_001).SerializeToString())
    assert r.status_code == 400 and "10001 spans" in RpcStatus.FromString(r.content).message
    assert len(fake_otlp.spans()) == 10_000


def test_span_over_200kb_is_rejected_by_partial_success(fake_otlp):
    req = make_request(names=("at-limit", "over-limit", "small"), pad=10)
    spans = req.resource_spans[0].scope_spans[0].spans
    set_pad(spans[0], spans[0].ByteSize, 200_000)
    set_pad(spans[1], spans[1].ByteSize, 200_001)
    r = post(fake_otlp, req.SerializeToString())
    resp = response_of(r)
    assert r.status_code == 200 and resp.partial_success.rejected_spans == 1
    assert "200001 bytes" in resp.partial_success.error_message
    assert sorted(s.name for s in fake_otlp.spans()) == ["at-limit", "small"]


def test_timestamps_outside_14_days_back_2_hours_ahead_are_rejected(fake_otlp):
    now = time.time_ns()
    margin = 120 * NS
    times = [now - 14 * 86400 * NS - margin, now - 14 * 86400 * NS + margin,
             now + 2 * 3600 * NS + margin, now + 2 * 3600 * NS - margin]
    req = make_request(names=("too-old", "old", "too-new", "new"), times=times)
    req.resource_spans[0].scope_spans[0].spans[1].end_time_unix_nano = now  # end checked too: fine here
    resp = response_of(post(fake_otlp, req.SerializeToString()))
    assert resp.partial_success.rejected_spans == 2
    assert "14 days back or 2 hours ahead" in resp.partial_success.error_message
    assert sorted(s.name for s in fake_otlp.spans()) == ["new", "old"]


def request_of_size(target):
    req = make_request(names=[f"big{i}" for i in range(27)], pad=185_000)  # each under 200 KB
    last = req.resource_spans[0].scope_spans[0].spans[-1]
    set_pad(last, req.ByteSize, target)
    return req.SerializeToString()


@pytest.mark.parametrize("encoding", [None, "gzip"])
def test_5mb_uncompressed_limit(fake_otlp, encoding):
    enc = gzip.compress if encoding else bytes
    assert post(fake_otlp, enc(request_of_size(5_000_000)), encoding=encoding).status_code == 200
    r = post(fake_otlp, enc(request_of_size(5_000_001)), encoding=encoding)
    assert r.status_code == 413, r.content
    assert len(fake_otlp.spans()) == 27
    assert [q.decoded_bytes for q in fake_otlp.requests()] == [5_000_000, None if encoding else 5_000_001]


def bomb_members(member_bytes, members):
    return gzip.compress(b"\0" * member_bytes, compresslevel=9) * members


def bomb_single(total):
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"\0" * (1 << 20)
    return b"".join(c.compress(zeros) for _ in range(total >> 20)) + c.flush()


@pytest.mark.parametrize("make", [lambda: bomb_members(10 << 20, 100), lambda: bomb_single(256 << 20)],
                         ids=["1GiB-in-100-members", "256MiB-one-member"])
def test_gzip_bomb_is_413_quickly_with_bounded_memory(fake_otlp, make):
    bomb = make()
    tracemalloc.start()
    try:
        t0 = time.monotonic()
        r = post(fake_otlp, bomb, encoding="gzip")
        elapsed = time.monotonic() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 413, r.content
    assert elapsed < 2.0
    assert peak < 3 * fake_otlp.limits.max_request_bytes, f"peak {peak} B while inflating"
    assert fake_otlp.spans() == []


def test_oversized_wire_body_is_413_without_being_kept(fake_otlp):
    body = os.urandom(8 << 20)
    r = post(fake_otlp, body)
    assert r.status_code == 413
    [req] = fake_otlp.requests()
    assert req.wire_bytes == len(body) and len(req.body) == fake_otlp.limits.max_request_bytes + fo.INFLATE_STEP
    assert req.signature_ok  # the whole body was hashed, though not kept
    assert post(fake_otlp, make_request().SerializeToString()).status_code == 200


# ---- faults ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fault, status, retry_after, error_type", [
    (fo.Throttle(retry_after=2), 429, "2", "ThrottlingException"),
    (fo.Unavailable(retry_after="Wed, 21 Oct 2015 07:28:00 GMT"), 503, "Wed, 21 Oct 2015 07:28:00 GMT",
     "ServiceUnavailableException"),
    (fo.Status(400, "bad batch"), 400, None, "InjectedFault"),
    (fo.Status(500, "boom"), 500, None, "InjectedFault"),
], ids=["429", "503", "400", "500"])
def test_status_faults(fake_otlp, fault, status, retry_after, error_type):
    fake_otlp.push_fault(fault)
    r = post(fake_otlp, make_request(names=("lost",)).SerializeToString())
    assert (r.status_code, r.headers.get("Retry-After"), r.headers["x-amzn-ErrorType"]) == \
        (status, retry_after, error_type)
    assert RpcStatus.FromString(r.content).message == fault.message
    assert fake_otlp.spans() == [] and fake_otlp.requests()[0].fault == fault
    assert post(fake_otlp, make_request(names=("kept",)).SerializeToString()).status_code == 200
    assert [s.name for s in fake_otlp.spans()] == ["kept"]


def test_partial_success_fault_rejects_the_first_n(fake_otlp):
    fake_otlp.push_fault(fo.PartialSuccess(2, "quota"))
    r = post(fake_otlp, make_request(names=("p0", "p1", "p2", "p3", "p4")).SerializeToString())
    resp = response_of(r)
    assert (resp.partial_success.rejected_spans, resp.partial_success.error_message) == (2, "quota")
    assert [s.name for s in fake_otlp.spans()] == ["p2", "p3", "p4"]
    assert (fake_otlp.requests()[0].accepted_spans, fake_otlp.requests()[0].rejected_spans) == (3, 2)


def test_delay_fault_answers_late_and_accepts(fake_otlp):
    fake_otlp.push_fault(fo.Delay(0.5))
    t0 = time.monotonic()
    assert post(fake_otlp, make_request(names=("late",)).SerializeToString()).status_code == 200
    assert time.monotonic() - t0 >= 0.5
    assert [s.name for s in fake_otlp.spans()] == ["late"]


def test_delay_fault_gives_up_on_a_client_timeout_but_still_accepts(fake_otlp):
    fake_otlp.push_fault(fo.Delay(1.0))
    body = make_request(names=("slow",)).SerializeToString()
    headers = sign("POST", fake_otlp.endpoint, body, {"Content-Type": fo.PROTOBUF})
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(fake_otlp.endpoint, data=body, headers=headers, timeout=0.3)
    assert [s.name for s in fake_otlp.wait_for_spans(1, timeout=3)] == ["slow"]


def test_disconnect_fault_closes_without_answer(fake_otlp):
    fake_otlp.push_fault(fo.Disconnect())
    with pytest.raises(requests.exceptions.ConnectionError):
        post(fake_otlp, make_request().SerializeToString())
    [req] = fake_otlp.wait_for_requests(1, timeout=2)
    assert req.status == 0 and req.fault == fo.Disconnect()
    assert fake_otlp.spans() == []
    assert post(fake_otlp, make_request().SerializeToString()).status_code == 200


def test_fifo_then_sticky_mode(fake_otlp):
    fake_otlp.push_fault(fo.Status(500), fo.Throttle())
    fake_otlp.set_mode(fo.Unavailable(retry_after=None))
    statuses = [post(fake_otlp, make_request().SerializeToString()).status_code for _ in range(4)]
    assert statuses == [500, 429, 503, 503]
    fake_otlp.set_mode(None)
    assert post(fake_otlp, make_request().SerializeToString()).status_code == 200
    assert fake_otlp.pending_faults() == 0 and len(fake_otlp.spans()) == 1


def test_wait_for_spans_times_out_with_a_summary(fake_otlp):
    fake_otlp.push_fault(fo.Status(500, "nope"))
    post(fake_otlp, make_request().SerializeToString())
    with pytest.raises(TimeoutError, match=r"no 1 spans within 0.2 s; 0 spans accepted; .*-> 500 .*nope"):
        fake_otlp.wait_for_spans(1, timeout=0.2)


# ---- lifecycle and script mode -----------------------------------------------------------------------

def test_stop_refuses_connections_and_restart_binds_the_same_port(fake_otlp):
    port = fake_otlp.port
    fake_otlp.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((LOOPBACK, port), timeout=1).close()
    fake_otlp.restart()
    assert fake_otlp.port == port
    assert post(fake_otlp, make_request().SerializeToString()).status_code == 200


def test_script_mode_prints_its_port_and_logs_requests(tmp_path):
    log = tmp_path / "requests.jsonl"
    env = base_env(tmp_path)
    proc = subprocess.Popen([sys.executable, PEERS / "fake_otlp.py", "--region", REGION, "--log", log], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("fake_otlp listening on http://127.0.0.1:"), line
        url = line.split()[-1]

        class Remote:
            base_url = url[:-len(fo.PATH)]
            endpoint = url
        assert post(Remote, make_request(names=("scripted",)).SerializeToString()).status_code == 200
        deadline = time.monotonic() + 3  # the line is written just after the answer
        while not (log.is_file() and log.read_text().endswith("\n")) and time.monotonic() < deadline:
            time.sleep(0.02)
        [entry] = [json.loads(x) for x in log.read_text().splitlines()]
        assert (entry["status"], entry["signature_ok"], [s["name"] for s in entry["spans"]]) == \
            (200, True, ["scripted"])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
