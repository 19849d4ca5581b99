"""A minimal Lambda Runtime API (Extensions + Telemetry) for one extension boot, on loopback.

Used by the layer tests (`tests/layer`) and the cold-start benchmark (`bench/lambda_cold_start.py`);
the full fake with invocations, freezes and error codes is `tests/it/fake_lambda.rs`.

It answers register with an identifier, the Telemetry API subscription with 200 (or, with
`telemetry=202`, the Runtime Interface Emulator's 202 `Telemetry.NotSupported`), and the first
`/event/next` with SHUTDOWN (spindown, deadline 1.7 s away). Each call is recorded with the
CLOCK_MONOTONIC instant (`time.perf_counter()`) its headers were read.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EXTENSION_ID = "2b8e1b2c-6b5c-4a8e-9d3c-0f1e2d3c4b5a"
REGISTER = "/2020-01-01/extension/register"
NEXT = "/2020-01-01/extension/event/next"
TELEMETRY = "/2022-07-01/telemetry"


class Call:
    def __init__(self, at, method, path, headers, body):
        self.at, self.method, self.path, self.headers, self.body = at, method, path, headers, body

    def header(self, name):
        return {k.lower(): v for k, v in self.headers.items()}.get(name.lower())


class FakeRuntime:
    """`with FakeRuntime() as rt:` serves on `rt.address` (host:port, the AWS_LAMBDA_RUNTIME_API
    value) until the block ends; `rt.calls` lists the calls in arrival order."""

    def __init__(self, telemetry=200):
        self.calls = []
        self.telemetry = telemetry
        runtime = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, status, body, headers=()):
                data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def handle_call(self):
                at = time.perf_counter()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                runtime.calls.append(Call(at, self.command, self.path, dict(self.headers), body))
                if self.path == REGISTER:
                    self.reply(200, {"functionName": "f", "functionVersion": "$LATEST", "handler": "h"},
                               [("Lambda-Extension-Identifier", EXTENSION_ID)])
                elif self.path == TELEMETRY and runtime.telemetry == 202:
                    self.reply(202, {"errorType": "Telemetry.NotSupported",
                                     "errorMessage": "Telemetry API is not supported"})
                elif self.path == TELEMETRY:
                    self.reply(200, "OK")
                elif self.path == NEXT:
                    deadline = int((time.time() + 1.7) * 1000)
                    self.reply(200, {"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": deadline})
                else:
                    self.reply(404, {"errorType": "NotFound", "errorMessage": self.path})

            do_GET = do_POST = do_PUT = handle_call

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_port}"

    def first(self, path):
        """The first call to `path`, or None."""
        return next((c for c in self.calls if c.path == path), None)

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
