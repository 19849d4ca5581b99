"""A minimal Lambda Runtime API (Extensions + Telemetry) for one extension boot, on loopback.

Used by the layer tests (`tests/layer`) and the cold-start benchmark (`benches/lambda_cold_start.py`);
the full fake with invocations, freezes and error codes is `tests/it/fake_lambda.rs`.

It answers register with an identifier, the Telemetry API subscription with 200 (or, with
`telemetry=202`, the Runtime Interface Emulator's 202 `Telemetry.NotSupported`), and the first
`/event/next` with SHUTDOWN (spindown, deadline 1.7 s away; with `hold`, a `threading.Event`, only
once it is set, so that a test can send the extension something first). Each call is recorded with the
CLOCK_MONOTONIC instant (`time.perf_counter()`) its first bytes were read.

It is an asyncio server on its own thread, not `http.server`: the benchmark times the extension
against it, and a thread per connection cost 8-14 ms per call on the 2-core test machine.
"""

import asyncio
import json
import threading
import time

EXTENSION_ID = "2b8e1b2c-6b5c-4a8e-9d3c-0f1e2d3c4b5a"
REGISTER = "/2020-01-01/extension/register"
NEXT = "/2020-01-01/extension/event/next"
TELEMETRY = "/2022-07-01/telemetry"
REASONS = {200: "OK", 202: "Accepted", 404: "Not Found"}


class Call:
    def __init__(self, at, method, path, headers, body):
        self.at, self.method, self.path, self.headers, self.body = at, method, path, headers, body

    def header(self, name):
        return self.headers.get(name.lower())


class FakeRuntime:
    """`with FakeRuntime() as rt:` serves on `rt.address` (host:port, the AWS_LAMBDA_RUNTIME_API
    value) until the block ends; `rt.calls` lists the calls in arrival order."""

    def __init__(self, telemetry=200, hold=None):
        self.calls = []
        self.telemetry = telemetry
        self.hold = hold
        self.address = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def first(self, path):
        """The first call to `path`, or None."""
        return next((c for c in self.calls if c.path == path), None)

    def _answer(self, path):
        if path == REGISTER:
            body = {"functionName": "f", "functionVersion": "$LATEST", "handler": "h"}
            return 200, body, [("Lambda-Extension-Identifier", EXTENSION_ID)]
        if path == TELEMETRY and self.telemetry == 202:
            return 202, {"errorType": "Telemetry.NotSupported", "errorMessage": "Telemetry API is not supported"}, []
        if path == TELEMETRY:
            return 200, "OK", []
        if path == NEXT:
            deadline = int((time.time() + 1.7) * 1000)
            return 200, {"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": deadline}, []
        return 404, {"errorType": "NotFound", "errorMessage": path}, []

    async def _connection(self, reader, writer):
        try:
            while True:
                first = await reader.read(1)
                if not first:
                    return
                at = time.perf_counter()
                head = first + await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length") or 0)
                body = await reader.readexactly(length) if length else b""
                self.calls.append(Call(at, method, path, headers, body))
                if path == NEXT and self.hold is not None:
                    await asyncio.get_running_loop().run_in_executor(None, self.hold.wait, 30)
                status, payload, extra = self._answer(path)
                data = json.dumps(payload).encode()
                out = [f"HTTP/1.1 {status} {REASONS[status]}", "Content-Type: application/json",
                       f"Content-Length: {len(data)}"] + [f"{k}: {v}" for k, v in extra]
                writer.write(("\r\n".join(out) + "\r\n\r\n").encode() + data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    def _serve(self):
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._connection, "127.0.0.1", 0))
        self.address = "127.0.0.1:%d" % server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    def __enter__(self):
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc):
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
