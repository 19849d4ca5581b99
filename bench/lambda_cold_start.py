#!/usr/bin/env python3
"""Lambda extension cold start, against a fake Runtime API on loopback.

    python3 bench/lambda_cold_start.py BINARY [LAYER_ZIP] [--runs N]

For each run it starts BINARY as Lambda would (argv[0] /opt/extensions-style path, the Lambda
environment variables) and timestamps, on the fake's side, the arrival of `register` and of the
first `/event/next`, measured from just before the process is spawned (so fork/exec, the dynamic
loader if any, runtime start-up, binding the ports and building the AWS client all count). The
fake answers the Telemetry API subscription with 200, then SHUTDOWN on the first /next, and the
run ends when the process exits. Prints a markdown table (min, median, p90, max over the runs) and
the binary and layer sizes.
"""
import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ID = "2b8e1b2c-6b5c-4a8e-9d3c-0f1e2d3c4b5a"


class Fake(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    marks = {}

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
        now = time.perf_counter()
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path.endswith("/extension/register"):
            Fake.marks.setdefault("register", now)
            self.reply(200, {"functionName": "bench", "functionVersion": "$LATEST", "handler": "h"},
                       [("Lambda-Extension-Identifier", ID)])
        elif self.path.endswith("/telemetry"):
            Fake.marks.setdefault("subscribe", now)
            self.reply(200, "OK")
        elif self.path.endswith("/event/next"):
            Fake.marks.setdefault("next", now)
            self.reply(200, {"eventType": "SHUTDOWN", "shutdownReason": "spindown",
                             "deadlineMs": int((time.time() + 1.7) * 1000)})
        else:
            self.reply(404, {})

    do_GET = do_POST = do_PUT = handle_call


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_run(binary, api):
    Fake.marks = {}
    env = {
        "AWS_LAMBDA_RUNTIME_API": api, "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIDBENCH", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_SESSION_TOKEN": "token",
        "AWS_LAMBDA_FUNCTION_NAME": "bench", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "XRAY_DAEMON_UDP_ADDRESS": f"127.0.0.1:{free_udp_port()}", "XRAY_DAEMON_ENDPOINT": "http://127.0.0.1:9",
        "XRAY_DAEMON_LOG_LEVEL": "warn", "PATH": os.environ.get("PATH", ""),
    }
    t0 = time.perf_counter()
    p = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = p.communicate(timeout=30)
    if p.returncode != 0 or "next" not in Fake.marks:
        sys.exit(f"run failed (exit {p.returncode}): {err.decode(errors='replace')}")
    return (Fake.marks["register"] - t0) * 1000, (Fake.marks["next"] - t0) * 1000


def row(name, values):
    values = sorted(values)
    p90 = values[max(0, int(round(0.9 * len(values))) - 1)]
    return f"| {name} | {values[0]:.1f} | {statistics.median(values):.1f} | {p90:.1f} | {values[-1]:.1f} |"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("layer", nargs="?")
    ap.add_argument("--runs", type=int, default=30)
    a = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = f"127.0.0.1:{server.server_port}"
    one_run(a.binary, api)  # warm the page cache
    registered, first_next = [], []
    for _ in range(a.runs):
        r, n = one_run(a.binary, api)
        registered.append(r)
        first_next.append(n)
    server.shutdown()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
    print(f"Lambda extension cold start, {a.runs} runs, fake Runtime API on loopback; {os.cpu_count()} cores ({cpu}), "
          f"load average {os.getloadavg()[0]:.1f}; binary {a.binary}\n")
    print("| process start → | min ms | median ms | p90 ms | max ms |")
    print("|---|---|---|---|---|")
    print(row("registered", registered))
    print(row("first /next", first_next))
    print()
    print(f"| artefact | bytes | MB |\n|---|---|---|")
    size = Path(a.binary).stat().st_size
    print(f"| binary ({Path(a.binary).name}) | {size} | {size / 1e6:.2f} |")
    if a.layer:
        z = Path(a.layer).stat().st_size
        print(f"| layer zip ({Path(a.layer).name}) | {z} | {z / 1e6:.2f} |")


if __name__ == "__main__":
    main()
