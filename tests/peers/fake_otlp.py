"""A fake of X-Ray's OTLP traces endpoint (POST /v1/traces) for the end-to-end tests.

moto does not serve /v1/traces, so the daemon's OTLP uploads are pointed here
(XRAY_DAEMON_OTLP_ENDPOINT). Like tests/it/fake_xray.rs, but in Python for the pytest tests:

* Listens on 127.0.0.1:0 only: a threaded HTTP/1.1 server (keep-alive; Content-Length or chunked
  request bodies, as the Node OTLP exporter sends). Only `POST /v1/traces` is served: another path is
  404, another method on it 405.
* Verifies SigV4 itself (service `xray`, the configured region, the accepted credentials) with the
  hand-written HMAC verifier below, independent of botocore (which the Python clients sign with) and of
  aws-sigv4 (which the daemon signs with). A failed check is a 403 with the reason. `X-Amz-Date` is
  required and may differ from the local clock by at most `max_clock_skew` (15 min, as AWS).
* Decodes `application/x-protobuf` and `application/json` (OTLP JSON: hex ids) bodies, `gzip` or
  identity, with the `opentelemetry-proto` messages. The gzip inflate is bounded: it stops once the
  output passes the size limit, so no bomb makes it allocate more than that (plus one 64 KiB step).
* Enforces the endpoint's documented limits (`Limits`; the stricter decimal reading of "5 MB" and
  "200 KB"): a body over 5,000,000 bytes uncompressed is 413; more than 10,000 spans is 400; a span
  whose serialized `Span` message is over 200,000 bytes, or whose start or end time is more than 14 days
  back or 2 hours ahead, is rejected through `partial_success` and not recorded.
* Scripted `Fault`s: a FIFO queue consumed one per request, plus a sticky mode used when the queue is
  empty. Order of checks for every request: route (404/405) -> signature (403) -> body (415/413/400)
  -> limits -> fault -> answer. Requests rejected before the fault step do not consume a fault.
* Records every request (`RecordedRequest`) and every accepted span (`RecordedSpan`), with waiters.
* Answers success with a serialized `ExportTraceServiceResponse` in the request's content type; errors
  carry a `google.rpc.Status` (as OTLP/HTTP specifies) in that content type, plus `x-amzn-ErrorType`.

In-process (pytest; the `fake_otlp` fixture in tests/e2e/conftest.py does this):
    fake = FakeOtlp(region="us-east-1", credentials=[Credentials(AK, SK)])   # started, on 127.0.0.1:0
    fake.endpoint                      # http://127.0.0.1:PORT/v1/traces
    fake.push_fault(Throttle(retry_after=1), PartialSuccess(2, "too old"))
    spans = fake.wait_for_spans(3, timeout=5)
    fake.stop()
As a script (for other harnesses): `python fake_otlp.py [--region R] [--access-key AK --secret-key SK]
[--port N] [--log FILE]` prints `fake_otlp listening on http://127.0.0.1:PORT/v1/traces` and serves until
SIGTERM/SIGINT; --log appends one JSON line per request (with its accepted spans).

This file is over 500 lines: it is one fake service (routing, SigV4, decoding, limits, faults, recording)
that the tests read as a whole.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import dataclasses
import datetime
import hashlib
import hmac
import http.server
import json
import signal
import socket
import sys
import threading
import time
import urllib.parse
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest, ExportTraceServiceResponse)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

LOOPBACK = "127.0.0.1"
PATH = "/v1/traces"
SERVICE = "xray"
ALGORITHM = "AWS4-HMAC-SHA256"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
TEST_ACCESS_KEY = "AKIDFAKEOTLPTEST0001"
TEST_SECRET_KEY = "fake+otlp/test/secret/key/0000000000000000"
DEFAULT_MAX_CLOCK_SKEW = 15 * 60.0
INFLATE_STEP = 64 * 1024
# Wire bytes read and thrown away (hashed, not kept) past the limit before a 413; beyond this the
# connection is closed without reading on.
MAX_DISCARD = 64 * 1024 * 1024
NS_PER_S = 1_000_000_000
# google.rpc.Code of the Status in an error answer, by HTTP status.
GRPC_CODES = {400: 3, 403: 7, 404: 5, 405: 12, 413: 8, 415: 3, 429: 8, 500: 13, 502: 14, 503: 14, 504: 14}


@dataclass(frozen=True)
class Limits:
    max_request_bytes: int = 5_000_000      # uncompressed body
    max_spans: int = 10_000                 # per request
    max_span_bytes: int = 200_000           # serialized Span message
    max_future_s: float = 2 * 3600.0        # span times ahead of the clock
    max_past_s: float = 14 * 86400.0        # span times behind the clock


@dataclass(frozen=True)
class Credentials:
    access_key: str = TEST_ACCESS_KEY
    secret_key: str = TEST_SECRET_KEY
    session_token: Optional[str] = None


# ---- scripted faults -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Status:
    """Answer `code` with `message` (and `Retry-After: retry_after` if given); nothing is accepted."""
    code: int
    message: str = "injected"
    retry_after: Union[int, str, None] = None


def Throttle(retry_after: Union[int, str, None] = 1, message: str = "Rate exceeded") -> Status:
    return Status(429, message, retry_after)


def Unavailable(retry_after: Union[int, str, None] = 1, message: str = "Service unavailable") -> Status:
    return Status(503, message, retry_after)


@dataclass(frozen=True)
class PartialSuccess:
    """Accept, but reject the first `rejected` spans (in request order) with `message`."""
    rejected: int
    message: str = "injected partial success"


@dataclass(frozen=True)
class Delay:
    """Wait `seconds` (cut short by stop()), then answer normally; the spans are accepted after the
    wait even if the client gave up meanwhile (the server did process them), not if the fake stopped."""
    seconds: float


@dataclass(frozen=True)
class Disconnect:
    """Close the connection without an answer; nothing is accepted."""


Fault = Union[Status, PartialSuccess, Delay, Disconnect]


# ---- records -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RecordedSpan:
    trace_id: str                  # 32 lower-case hex digits
    span_id: str                   # 16 hex digits
    parent_span_id: str            # "" for a root span
    name: str
    kind: int
    start_time_unix_nano: int
    end_time_unix_nano: int
    attributes: dict
    resource: dict                 # resource attributes
    scope_name: str
    scope_version: str
    request_index: int             # index into FakeOtlp.requests()
    size: int                      # serialized Span bytes


@dataclass
class RecordedRequest:
    index: int
    method: str
    path: str                      # as received (still percent-encoded)
    query: str
    headers: list                  # [(lower-case name, value)], arrival order
    wire_bytes: int                # body bytes as sent (after de-chunking, before inflate)
    body: bytes                    # body as sent, kept up to the limit + 64 KiB
    chunked: bool
    content_type: str              # media type without parameters, lower case
    content_encoding: str          # "identity" when absent
    decoded_bytes: Optional[int] = None   # uncompressed size, when the body was inflated/decoded
    signature_ok: bool = False
    signature_error: Optional[str] = None
    span_count: Optional[int] = None      # spans in the decoded request
    accepted_spans: int = 0
    rejected_spans: int = 0
    error_message: str = ""        # partial_success.error_message or the error answered
    status: int = 0                # set as the answer is sent; 0 while pending or if none was sent
    fault: Optional[Fault] = None
    at: float = field(default_factory=time.monotonic)

    def header(self, name: str) -> Optional[str]:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)


class OtlpError(Exception):
    def __init__(self, status: int, message: str, error_type: str = "ValidationException", **headers):
        super().__init__(message)
        self.status, self.message, self.error_type, self.headers = status, message, error_type, headers


# ---- SigV4 (hand-written, independent of botocore and aws-sigv4) ---------------------------------

def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    k = _hmac(("AWS4" + secret).encode("utf-8"), date)
    return _hmac(_hmac(_hmac(k, region), service), "aws4_request")


def _uri_encode(b: bytes, keep_slash: bool) -> str:
    safe = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~" + (b"/" if keep_slash else b"")
    return "".join(chr(c) if c in safe else "%%%02X" % c for c in b)


def canonical_request(method: str, path: str, query: str, headers: list, signed: list, payload_hash: str) -> str:
    uri = _uri_encode(path.encode("utf-8"), True) if path else "/"   # non-S3: the received path encoded again
    pairs = sorted((_uri_encode(urllib.parse.unquote_to_bytes(k), False),
                    _uri_encode(urllib.parse.unquote_to_bytes(v), False))
                   for k, _, v in (p.partition("=") for p in query.split("&") if p))
    lines = []
    for name in signed:
        values = [" ".join(v.split()) for k, v in headers if k == name]
        if not values:
            raise ValueError(f"signed header {name!r} is not in the request")
        lines.append(f"{name}:{','.join(values)}\n")
    return "\n".join([method, uri, "&".join(f"{k}={v}" for k, v in pairs), "".join(lines), ";".join(signed),
                      payload_hash])


def verify_sigv4(method, path, query, headers, body_sha256, accepted, region, max_skew, now=None):
    """None if the request is signed by one of `accepted` for (region, xray), else the reason."""
    def first(name):
        return next((v for k, v in headers if k == name), None)
    auth = first("authorization")
    if auth is None:
        return "missing Authorization header"
    if not auth.startswith(ALGORITHM + " "):
        return f"Authorization is not {ALGORITHM}"
    parts = {}
    for comp in auth[len(ALGORITHM) + 1:].split(","):
        k, sep, v = comp.strip().partition("=")
        if not sep or k not in ("Credential", "SignedHeaders", "Signature"):
            return f"malformed Authorization component {comp.strip()!r}"
        parts[k] = v
    if len(parts) != 3:
        return "Authorization needs Credential, SignedHeaders and Signature"
    scope = parts["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        return f"malformed credential scope {parts['Credential']!r}"
    access_key, date, scope_region, service = scope[:4]
    amz_date = first("x-amz-date")
    if amz_date is None:
        return "missing X-Amz-Date header"
    try:
        signed_at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return f"malformed X-Amz-Date {amz_date!r}"
    if max_skew is not None:
        skew = abs((now if now is not None else time.time()) - signed_at.timestamp())
        if skew > max_skew:
            return f"Signature expired: X-Amz-Date {amz_date} is {skew:.0f} s from the server clock"
    if date != amz_date[:8]:
        return f"credential scope date {date} does not match X-Amz-Date {amz_date}"
    if scope_region != region:
        return f"credential scope region {scope_region!r}, expected {region!r}"
    if service != SERVICE:
        return f"credential scope service {service!r}, expected {SERVICE!r}"
    creds = next((c for c in accepted if c.access_key == access_key), None)
    if creds is None:
        return f"unknown access key {access_key!r}"
    signed = parts["SignedHeaders"].split(";")
    for required in ("host", "x-amz-date"):
        if required not in signed:
            return f"{required} is not a signed header"
    token = first("x-amz-security-token")
    if token != creds.session_token:
        return "X-Amz-Security-Token missing or wrong" if creds.session_token else "unexpected X-Amz-Security-Token"
    if token is not None and "x-amz-security-token" not in signed:
        return "x-amz-security-token is not a signed header"
    declared = first("x-amz-content-sha256")
    if declared is not None and declared != body_sha256:
        return f"X-Amz-Content-Sha256 {declared!r} does not match the body"
    try:
        creq = canonical_request(method, path, query, headers, signed, body_sha256)
    except ValueError as e:
        return str(e)
    sts = "\n".join([ALGORITHM, amz_date, "/".join(scope[1:]), hashlib.sha256(creq.encode("utf-8")).hexdigest()])
    want = hmac.new(signing_key(creds.secret_key, date, region, SERVICE), sts.encode("utf-8"),
                    hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, parts["Signature"]):
        return ("signature mismatch: the request signature we calculated does not match the signature "
                f"you provided; canonical request was:\n{creq}")
    return None


# ---- body decoding -------------------------------------------------------------------------------

def inflate_gzip(data: bytes, limit: int) -> bytes:
    """gzip (any number of members) -> bytes, raising OtlpError 413 as soon as the output passes
    `limit` (at most limit + INFLATE_STEP bytes are ever held) and 400 if it is not gzip."""
    out, size = [], 0
    while data:
        d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        buf = data
        while buf and not d.eof:
            try:
                chunk = d.decompress(buf, INFLATE_STEP)
            except zlib.error as e:
                raise OtlpError(400, f"body is not valid gzip: {e}")
            size += len(chunk)
            if size > limit:
                raise OtlpError(413, f"uncompressed body is over {limit} bytes")
            out.append(chunk)
            buf = d.unconsumed_tail
        if not d.eof:
            raise OtlpError(400, "body is truncated gzip")
        data = d.unused_data
    return b"".join(out)


def _hex_to_b64(obj: dict, key: str):
    v = obj.get(key)
    if isinstance(v, str) and v:
        try:
            obj[key] = base64.b64encode(bytes.fromhex(v)).decode("ascii")
        except ValueError:
            raise OtlpError(400, f"{key} {v!r} is not hex (OTLP JSON ids are hex strings)")


def decode_request(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    msg = ExportTraceServiceRequest()
    if content_type == PROTOBUF:
        try:
            msg.ParseFromString(body)
        except DecodeError as e:
            raise OtlpError(400, f"body is not an ExportTraceServiceRequest: {e}")
        return msg
    try:
        obj = json.loads(body)
        for rs in obj.get("resourceSpans", obj.get("resource_spans", [])):
            for ss in rs.get("scopeSpans", rs.get("scope_spans", [])):
                for sp in ss.get("spans", []):
                    for k in ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id"):
                        _hex_to_b64(sp, k)
                    for link in sp.get("links", []):
                        for k in ("traceId", "trace_id", "spanId", "span_id"):
                            _hex_to_b64(link, k)
        json_format.ParseDict(obj, msg, ignore_unknown_fields=True)
    except OtlpError:
        raise
    except (ValueError, TypeError, AttributeError, json_format.ParseError) as e:
        raise OtlpError(400, f"body is not an OTLP JSON ExportTraceServiceRequest: {e}")
    return msg


def encode_message(msg, content_type: str) -> bytes:
    if content_type == JSON:
        return json_format.MessageToJson(msg, indent=None).encode("utf-8")
    return msg.SerializeToString()


def any_value(v: AnyValue):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


def attributes(kvs) -> dict:
    return {kv.key: any_value(kv.value) for kv in kvs}


# ---- the server ----------------------------------------------------------------------------------

class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: "FakeOtlp"

    def log_message(self, fmt, *args):  # quiet; everything is recorded
        pass

    def setup(self):
        super().setup()
        self.fake._track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.fake._track(self.connection, False)

    def do_POST(self):
        self.fake._serve(self)

    do_GET = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_POST

    def do_HEAD(self):
        self.fake._serve(self, head=True)

    def read_body(self, keep: int):
        """(sha256 hex, wire length, kept bytes, chunked, complete). Reads Content-Length or chunked
        bodies, hashing all and keeping at most `keep` bytes; stops after keep + MAX_DISCARD bytes."""
        h, kept, n = hashlib.sha256(), [], 0
        budget = keep + MAX_DISCARD

        def take(size):
            nonlocal n
            while size > 0:
                piece = self.rfile.read(min(size, INFLATE_STEP))
                if not piece:
                    raise ConnectionError("client closed the connection mid-body")
                h.update(piece)
                if n < keep:
                    kept.append(piece[:keep - n])
                n += len(piece)
                size -= len(piece)
                if n > budget:
                    return False
            return True

        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise OtlpError(400, f"malformed chunk size line {line[:40]!r}")
                if size == 0:
                    while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return h.hexdigest(), n, b"".join(kept), True, True
                if not take(size):
                    return h.hexdigest(), n, b"".join(kept), True, False
                self.rfile.readline(8)  # CRLF after the chunk
        length = self.headers.get("Content-Length")
        if length is None:
            return h.hexdigest(), 0, b"", False, True
        try:
            length = int(length)
        except ValueError:
            raise OtlpError(400, f"malformed Content-Length {length!r}")
        complete = take(length)
        return h.hexdigest(), n, b"".join(kept), False, complete


class FakeOtlp:
    """The fake endpoint, started on construction (127.0.0.1:`port`, default any free port)."""

    def __init__(self, region: str = "us-east-1", credentials=None, limits: Limits = Limits(),
                 max_clock_skew: Optional[float] = DEFAULT_MAX_CLOCK_SKEW, port: int = 0,
                 clock: Callable[[], float] = time.time, on_request: Optional[Callable] = None,
                 verify_signature: bool = True):
        self.region = region
        self.verify_signature = verify_signature  # False: check and record, but serve unsigned requests
        self.limits = limits
        self.clock = clock
        self.on_request = on_request
        self._creds = list(credentials) if credentials is not None else [Credentials()]
        self._max_skew = max_clock_skew
        self._cond = threading.Condition()
        self._faults: list = []
        self._mode: Optional[Fault] = None
        self._requests: list = []
        self._spans: list = []
        self._conns: set = set()
        self._stopped = threading.Event()
        self._server = None
        self._thread = None
        self._port = port
        self.restart()

    # ---- lifecycle -------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

    @property
    def endpoint(self) -> str:
        """http://127.0.0.1:PORT/v1/traces"""
        return f"http://{LOOPBACK}:{self._port}{PATH}"

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self._port}"

    def is_running(self) -> bool:
        return self._server is not None

    def restart(self):
        """Bind (the same port again after stop()) and serve. No-op while running."""
        if self._server is not None:
            return
        handler = type("Handler", (_Handler,), {"fake": self})
        self._stopped.clear()
        self._server = _Server((LOOPBACK, self._port), handler)
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fake-otlp-{self._port}", daemon=True)
        self._thread.start()

    def stop(self):
        """Close the listener (later connects are refused), cut Delay waits short and drop every open
        connection. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopped.set()
        server.shutdown()
        server.server_close()
        with self._cond:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def _track(self, conn, add):
        with self._cond:
            (self._conns.add if add else self._conns.discard)(conn)

    # ---- configuration ---------------------------------------------------------------------------
    def set_credentials(self, access_key: str, secret_key: str, session_token: Optional[str] = None):
        """Accept only this credential set (rotation)."""
        with self._cond:
            self._creds = [Credentials(access_key, secret_key, session_token)]

    def add_credentials(self, access_key: str, secret_key: str, session_token: Optional[str] = None):
        with self._cond:
            self._creds.append(Credentials(access_key, secret_key, session_token))

    def set_max_clock_skew(self, seconds: Optional[float]):
        """Tolerated X-Amz-Date skew; None disables the check."""
        with self._cond:
            self._max_skew = seconds

    def push_fault(self, *faults: Fault):
        """Queue faults for the next requests, one each, in order."""
        with self._cond:
            self._faults.extend(faults)

    def set_mode(self, fault: Optional[Fault]):
        """Sticky fault for every request once the queue is empty; None = healthy."""
        with self._cond:
            self._mode = fault

    def pending_faults(self) -> int:
        with self._cond:
            return len(self._faults)

    def reset(self):
        """Forget faults, mode, requests and spans (credentials and limits stay)."""
        with self._cond:
            self._faults.clear()
            self._mode = None
            self._requests.clear()
            self._spans.clear()

    # ---- recordings ------------------------------------------------------------------------------
    def requests(self) -> list:
        with self._cond:
            return list(self._requests)

    def spans(self) -> list:
        with self._cond:
            return list(self._spans)

    def wait_for(self, predicate: Callable[["FakeOtlp"], Any], timeout: float, what: str = "condition"):
        """predicate(self)'s first truthy value within `timeout` s, else TimeoutError with a summary."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate(self)
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"fake OTLP: no {what} within {timeout} s; {self._summary()}")
                self._cond.wait(min(left, 0.1))

    def wait_for_spans(self, n: int, timeout: float) -> list:
        """All accepted spans once there are at least `n`."""
        return self.wait_for(lambda f: len(f._spans) >= n and list(f._spans), timeout, f"{n} spans")

    def wait_for_requests(self, n: int, timeout: float) -> list:
        """All requests once at least `n` have been answered (or dropped)."""
        def done(f):
            finished = [r for r in f._requests if r.status or r.fault == Disconnect()]
            return len(finished) >= n and list(f._requests)
        return self.wait_for(done, timeout, f"{n} answered requests")

    def _summary(self) -> str:
        reqs = ", ".join(f"#{r.index} {r.method} {r.path} -> {r.status} "
                         f"({r.accepted_spans} accepted, {r.rejected_spans} rejected"
                         f"{', ' + r.error_message[:80] if r.error_message else ''})" for r in self._requests)
        return f"{len(self._spans)} spans accepted; requests: [{reqs}]"

    # ---- request handling ------------------------------------------------------------------------
    def _serve(self, h: _Handler, head: bool = False):
        path, _, query = h.path.partition("?")
        headers = [(k.lower(), v) for k, v in h.headers.items()]
        ctype = (h.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        cenc = (h.headers.get("Content-Encoding") or "identity").strip().lower()
        reply_type = JSON if ctype == JSON else PROTOBUF
        with self._cond:
            rec = RecordedRequest(index=len(self._requests), method=h.command, path=path, query=query,
                                  headers=headers, wire_bytes=0, body=b"", chunked=False, content_type=ctype,
                                  content_encoding=cenc)
            self._requests.append(rec)
            creds, skew = list(self._creds), self._max_skew
        try:
            try:
                digest, rec.wire_bytes, rec.body, rec.chunked, complete = h.read_body(
                    self.limits.max_request_bytes + INFLATE_STEP)
            except ConnectionError:
                h.close_connection = True
                return self._changed()
            if not complete:
                h.close_connection = True  # the rest of the body is still on the wire
            if path != PATH:
                raise OtlpError(404, f"no route for {path}", "UnknownOperationException")
            if h.command != "POST":
                raise OtlpError(405, f"{h.command} not allowed on {PATH}", "MethodNotAllowed", Allow="POST")
            reason = verify_sigv4(h.command, path, query, headers, digest, creds, self.region, skew, self.clock())
            rec.signature_ok, rec.signature_error = reason is None, reason
            if reason is not None and self.verify_signature:
                kind = "MissingAuthenticationTokenException" if "missing Authorization" in reason else \
                    "InvalidSignatureException"
                raise OtlpError(403, reason, kind)
            if not complete or rec.wire_bytes > self.limits.max_request_bytes + INFLATE_STEP:
                raise OtlpError(413, f"body is over {self.limits.max_request_bytes} bytes", "PayloadTooLarge")
            if ctype not in (PROTOBUF, JSON):
                raise OtlpError(415, f"Content-Type {ctype!r} is not {PROTOBUF} or {JSON}", "UnsupportedMediaType")
            if cenc == "gzip":
                raw = inflate_gzip(rec.body, self.limits.max_request_bytes)
            elif cenc == "identity":
                raw = rec.body
            else:
                raise OtlpError(415, f"Content-Encoding {cenc!r} is not gzip or identity", "UnsupportedMediaType")
            rec.decoded_bytes = len(raw)
            if len(raw) > self.limits.max_request_bytes:
                raise OtlpError(413, f"uncompressed body is over {self.limits.max_request_bytes} bytes",
                                "PayloadTooLarge")
            req = decode_request(raw, ctype)
            del raw
            self._process(h, rec, req, reply_type, head)
        except OtlpError as e:
            self._answer_error(h, rec, e, reply_type, head)
        except (ConnectionError, OSError):
            h.close_connection = True
        self._changed()
        if self.on_request is not None:
            self.on_request(rec, [s for s in self.spans() if s.request_index == rec.index])

    def _process(self, h, rec, req, reply_type, head):
        flat = [(rs, ss, sp) for rs in req.resource_spans for ss in rs.scope_spans for sp in ss.spans]
        rec.span_count = len(flat)
        if len(flat) > self.limits.max_spans:
            raise OtlpError(400, f"{len(flat)} spans in one request; at most {self.limits.max_spans}")
        now_ns = int(self.clock() * NS_PER_S)
        lo, hi = now_ns - int(self.limits.max_past_s * NS_PER_S), now_ns + int(self.limits.max_future_s * NS_PER_S)
        rejected, reasons = set(), []
        for i, (_, _, sp) in enumerate(flat):
            size = sp.ByteSize()
            if size > self.limits.max_span_bytes:
                rejected.add(i)
                reasons.append(f"span {sp.span_id.hex()} is {size} bytes, over {self.limits.max_span_bytes}")
            elif not all(lo <= t <= hi for t in (sp.start_time_unix_nano, sp.end_time_unix_nano)):
                rejected.add(i)
                reasons.append(f"span {sp.span_id.hex()} has a timestamp more than "
                               f"{self.limits.max_past_s / 86400:g} days back or "
                               f"{self.limits.max_future_s / 3600:g} hours ahead")
        with self._cond:
            fault = self._faults.pop(0) if self._faults else self._mode
        rec.fault = fault
        if isinstance(fault, Delay):
            if self._stopped.wait(fault.seconds):
                h.close_connection = True
                return
        elif isinstance(fault, Disconnect):
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        elif isinstance(fault, Status):
            extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            kind = {429: "ThrottlingException", 503: "ServiceUnavailableException"}.get(fault.code, "InjectedFault")
            raise OtlpError(fault.code, fault.message, kind, **extra)
        elif isinstance(fault, PartialSuccess):
            extra = [i for i in range(len(flat)) if i not in rejected][:fault.rejected]
            rejected.update(extra)
            reasons.insert(0, fault.message)
        resp = ExportTraceServiceResponse()
        if rejected:
            resp.partial_success.rejected_spans = len(rejected)
            resp.partial_success.error_message = "; ".join(reasons)[:2000]
        accepted = []
        for i, (rs, ss, sp) in enumerate(flat):
            if i not in rejected:
                accepted.append(RecordedSpan(
                    trace_id=sp.trace_id.hex(), span_id=sp.span_id.hex(), parent_span_id=sp.parent_span_id.hex(),
                    name=sp.name, kind=sp.kind, start_time_unix_nano=sp.start_time_unix_nano,
                    end_time_unix_nano=sp.end_time_unix_nano, attributes=attributes(sp.attributes),
                    resource=attributes(rs.resource.attributes), scope_name=ss.scope.name,
                    scope_version=ss.scope.version, request_index=rec.index, size=sp.ByteSize()))
        rec.accepted_spans, rec.rejected_spans = len(accepted), len(rejected)
        rec.error_message = resp.partial_success.error_message
        self._send(h, rec, 200, encode_message(resp, reply_type), reply_type, head, accepted=accepted)

    def _answer_error(self, h, rec, e: OtlpError, reply_type, head):
        rec.error_message = e.message
        code = GRPC_CODES.get(e.status, 2)  # 2 = UNKNOWN
        body = encode_message(status_pb2.Status(code=code, message=e.message), reply_type)
        self._send(h, rec, e.status, body, reply_type, head, {"x-amzn-ErrorType": e.error_type, **e.headers})

    def _send(self, h, rec, status, body, ctype, head, headers=None, accepted=()):
        with self._cond:  # recorded before the answer goes out: a waiter sees spans and status together
            rec.status = status
            self._spans.extend(accepted)
            self._cond.notify_all()
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        if h.close_connection:
            h.send_header("Connection", "close")
        h.end_headers()
        if not head:
            h.wfile.write(body)
        h.wfile.flush()

    def _changed(self):
        with self._cond:
            self._cond.notify_all()


# ---- script mode ---------------------------------------------------------------------------------

def _record_json(rec: RecordedRequest, spans: list) -> str:
    d = {k: v for k, v in dataclasses.asdict(rec).items() if k not in ("body", "fault")}
    d["fault"] = repr(rec.fault) if rec.fault is not None else None
    d["spans"] = [dataclasses.asdict(s) for s in spans]
    return json.dumps(d, default=lambda o: base64.b64encode(o).decode() if isinstance(o, bytes) else str(o))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Fake X-Ray OTLP traces endpoint on 127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--access-key", default=TEST_ACCESS_KEY)
    ap.add_argument("--secret-key", default=TEST_SECRET_KEY)
    ap.add_argument("--session-token")
    ap.add_argument("--log", help="append one JSON line per request to this file")
    ap.add_argument("--no-verify", action="store_true", help="serve unsigned requests (signature still recorded)")
    args = ap.parse_args(argv)
    lock = threading.Lock()

    def log(rec, spans):
        if args.log:
            with lock, open(args.log, "a", encoding="utf-8") as f:
                f.write(_record_json(rec, spans) + "\n")

    fake = FakeOtlp(region=args.region, port=args.port, on_request=log, verify_signature=not args.no_verify,
                    credentials=[Credentials(args.access_key, args.secret_key, args.session_token)])
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    print(f"fake_otlp listening on {fake.endpoint}", flush=True)
    done.wait()
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
