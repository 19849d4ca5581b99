"""Fixtures for the end-to-end tests: real moto (SigV4 verification on), the real daemon binary, real SDKs.

Everything binds and sends to 127.0.0.1 only; every wait is bounded. Set up with tests/e2e/setup.sh and
run with `target/venv/bin/python -m pytest tests/e2e -q`. The daemon binary is taken from
$XRAY_DAEMON_BIN (default target/debug/xray-daemon, relative to the repo root); it is never built here.
"""
import collections
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT / "tests" / "peers"
LOOPBACK = "127.0.0.1"
REGION = "us-east-1"
HEADER = '{"format":"json","version":1}'

LISTENING_RE = re.compile(r"Listening on UDP 127\.0\.0\.1:(\d+)\s*$")
TCP_RE = re.compile(r"(?:Starting proxy http server|Listening on TCP) (?:on )?127\.0\.0\.1:(\d+)\s*$")
SUCCESS_RE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \[Info\] Successfully sent batch of (\d+) segments \(\d+\.\d{3} seconds\)$")


def daemon_bin():
    p = Path(os.environ.get("XRAY_DAEMON_BIN", "target/debug/xray-daemon"))
    return p if p.is_absolute() else ROOT / p


def free_port(kind=socket.SOCK_STREAM):
    """A port that was free on 127.0.0.1 a moment ago (for peers that cannot bind port 0 themselves)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def base_env(home):
    """A clean environment: no real AWS configuration can leak into a peer or the daemon."""
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


class LoggedProcess:
    """A child process whose stdout+stderr lines are collected by a thread (and copied to a file)."""

    def __init__(self, name, argv, env, log_path, cwd=ROOT):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self._lines = []
        self._cond = threading.Condition()
        self._log_file = open(self.log_path, "w", encoding="utf-8")
        self.proc = subprocess.Popen(self.argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self._reader = threading.Thread(target=self._read, name=f"log-{name}", daemon=True)
        self._reader.start()

    def _read(self):
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self._log_file.write(line + "\n")
            self._log_file.flush()
            with self._cond:
                self._lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def pid(self):
        return self.proc.pid

    def lines(self):
        with self._cond:
            return list(self._lines)

    def text(self):
        return "\n".join(self.lines())

    def alive(self):
        return self.proc.poll() is None

    def wait_for_line(self, regex, timeout, start=0):
        """First line (from index `start`) matching `regex` (re.search) within `timeout` s, else None.
        Returns early (None) when the process has exited and all its output was read."""
        rx = re.compile(regex)
        deadline = time.monotonic() + timeout
        seen = start
        with self._cond:
            while True:
                for line in self._lines[seen:]:
                    m = rx.search(line)
                    if m:
                        return m
                seen = len(self._lines)
                left = deadline - time.monotonic()
                if left <= 0 or (not self.alive() and not self._reader.is_alive()):
                    return None
                self._cond.wait(min(left, 0.1))

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def wait(self, timeout):
        """Exit code, or None if still running after `timeout` s."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def _signal_group(self, sig):
        # Only while our child is unreaped: its pid (= the group id, start_new_session) cannot be reused.
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, grace=5.0):
        """SIGTERM to the child's process group (skipped when grace is 0), SIGKILL after `grace` s;
        always reaps the child and closes the log."""
        if grace > 0:
            self._signal_group(signal.SIGTERM)
            self.wait(grace)
        if self.alive():
            self._signal_group(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        if not self._log_file.closed:
            self._log_file.close()

    def kill(self):
        self.stop(grace=0)


# --------------------------------------------------------------------------------------------------
# moto

class Moto:
    def __init__(self, proc, port, access_key, secret_key, peer_log):
        self.proc = proc
        self.port = port
        self.endpoint = f"http://{LOOPBACK}:{port}"
        self.access_key = access_key
        self.secret_key = secret_key
        self.peer_log = peer_log
        self.xray = self.client()

    def client(self, secret_key=None):
        return boto3.client("xray", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=self.access_key,
                            aws_secret_access_key=secret_key or self.secret_key,
                            config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=10))

    def documents(self, trace_ids):
        """{trace_id: [Document, ...]} for the traces moto has (absent traces are left out)."""
        out = collections.defaultdict(list)
        ids = list(trace_ids)
        for i in range(0, len(ids), 5):
            kwargs = {"TraceIds": ids[i:i + 5]}
            for _ in range(50):  # bounded pagination
                resp = self.xray.batch_get_traces(**kwargs)
                for trace in resp.get("Traces", []):
                    for seg in trace.get("Segments", []):
                        out[trace["Id"]].append(seg["Document"])
                if not resp.get("NextToken"):
                    break
                kwargs["NextToken"] = resp["NextToken"]
        return dict(out)

    def wait_for_documents(self, expected, timeout):
        """Polls until every expected document (by trace id, with multiplicity) is stored, or timeout.
        Returns what moto holds for those traces at that point."""
        deadline = time.monotonic() + timeout
        while True:
            stored = self.documents(expected)
            complete = all(not (collections.Counter(docs) - collections.Counter(stored.get(tid, [])))
                           for tid, docs in expected.items())
            if complete or time.monotonic() > deadline:
                return stored
            time.sleep(0.2)


def _load_bootstrap():
    spec = importlib.util.spec_from_file_location("moto_bootstrap_key", PEERS / "moto_bootstrap_key.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.bootstrap


@pytest.fixture(scope="session", autouse=True)
def moto_process(tmp_path_factory):
    """Starts moto_xray_plus.py (SigV4 verification on: INITIAL_NO_AUTH_ACTION_COUNT=3) on a free
    loopback port at session start without waiting for it, so it boots while the first tests run."""
    tmp = tmp_path_factory.mktemp("moto")
    port = free_port()
    env = base_env(tmp)
    env.update({"INITIAL_NO_AUTH_ACTION_COUNT": "3", "PEER_LOG": str(tmp / "peer.jsonl"),
                "PYTHONUNBUFFERED": "1"})
    proc = LoggedProcess("moto", [sys.executable, PEERS / "moto_xray_plus.py", "-H", LOOPBACK, "-p", port],
                         env, tmp / "moto.log")
    proc.port = port
    proc.peer_log = tmp / "peer.jsonl"
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def moto(moto_process):
    """The session's moto, answering, with an access key made by moto_bootstrap_key.py (which spends
    the 3 unauthenticated calls) and the X-Ray backend warmed up."""
    proc, port = moto_process, moto_process.port
    deadline = time.monotonic() + 40
    while True:
        try:
            urllib.request.urlopen(f"http://{LOOPBACK}:{port}/moto-api/", timeout=2).read()
            break
        except OSError:
            if not proc.alive():
                pytest.fail(f"moto exited during start-up (rc {proc.proc.returncode}):\n{proc.text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"moto did not answer on port {port} within 40 s:\n{proc.text()}")
            time.sleep(0.1)
    access_key, secret_key = _load_bootstrap()(f"http://{LOOPBACK}:{port}")
    m = Moto(proc, port, access_key, secret_key, proc.peer_log)
    # The first X-Ray call takes ~1.4 s (lazy import); do it before any daemon uploads.
    m.xray.batch_get_traces(TraceIds=["1-00000000-000000000000000000000000"])
    return m


# --------------------------------------------------------------------------------------------------
# the fake X-Ray OTLP endpoint (moto does not serve /v1/traces)

def load_peer(name):
    """tests/peers/NAME.py as a module, registered in sys.modules (its dataclasses need that)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, PEERS / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        try:
            spec.loader.exec_module(mod)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


@pytest.fixture
def fake_otlp():
    """A started FakeOtlp (tests/peers/fake_otlp.py) on 127.0.0.1:0, region REGION, accepting the
    module's TEST_ACCESS_KEY/TEST_SECRET_KEY (`fake_otlp.set_credentials(moto.access_key,
    moto.secret_key)` for a daemon that signs with moto's key). Point the daemon at it with
    XRAY_DAEMON_OTLP_ENDPOINT=fake_otlp.endpoint. Stopped at teardown; its requests are printed."""
    fake = load_peer("fake_otlp").FakeOtlp(region=REGION)
    try:
        yield fake
    finally:
        fake.stop()
        for r in fake.requests():
            print(f"fake_otlp #{r.index}: {r.method} {r.path} {r.content_type} {r.content_encoding} "
                  f"{r.wire_bytes} B -> {r.status} fault={r.fault} accepted={r.accepted_spans} "
                  f"rejected={r.rejected_spans} sig={r.signature_error or 'ok'} {r.error_message[:200]}")


# --------------------------------------------------------------------------------------------------
# the daemon under test

class Daemon(LoggedProcess):
    udp_port = None
    tcp_port = None

    @property
    def udp_address(self):
        return f"{LOOPBACK}:{self.udp_port}"

    def send(self, datagram):
        if isinstance(datagram, str):
            datagram = datagram.encode("utf-8")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(datagram, (LOOPBACK, self.udp_port))

    def success_counts(self):
        """N of every `Successfully sent batch of N segments (S.SSS seconds)` line (full-line match)."""
        return [int(m.group(1)) for m in map(SUCCESS_RE.match, self.lines()) if m]

    def terminate(self, timeout):
        """SIGTERM and wait up to `timeout` s; returns the exit code or None if it did not exit."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)


@pytest.fixture
def daemon_factory(moto, tmp_path):
    """start(secret_key=None, extra_args=(), env=None) -> Daemon, running against `moto`, bound to free
    loopback ports (127.0.0.1:0), its Listening line parsed. Every daemon is killed at teardown and its
    log printed (pytest shows it for failing tests)."""
    started = []
    binary = daemon_bin()

    def start(secret_key=None, extra_args=(), env=None):
        if not binary.is_file() or not os.access(binary, os.X_OK):
            pytest.fail(f"daemon binary {binary} does not exist or is not executable: build it first "
                        f"(make / cargo build), or point XRAY_DAEMON_BIN at it")
        n = len(started)
        home = tmp_path / f"daemon{n}-home"
        home.mkdir()
        e = base_env(home)
        e.update({
            "AWS_ENDPOINT_URL_XRAY": moto.endpoint,
            "AWS_ACCESS_KEY_ID": moto.access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key or moto.secret_key,
            "AWS_REGION": REGION,
            "XRAY_DAEMON_TELEMETRY": "false",
            "RUST_BACKTRACE": "1",
        })
        e.update(env or {})
        argv = [binary, "-o", "-n", REGION, "-b", f"{LOOPBACK}:0", "-t", f"{LOOPBACK}:0", "-l", "debug",
                *extra_args]
        d = Daemon(f"daemon{n}", argv, e, tmp_path / f"daemon{n}.log")
        started.append(d)
        m = d.wait_for_line(LISTENING_RE, timeout=10)
        if not m:
            state = "is still running" if d.alive() else f"exited with {d.proc.returncode}"
            pytest.fail(f"daemon printed no 'Listening on UDP 127.0.0.1:PORT' line within 10 s and {state}; "
                        f"log:\n{d.text()}")
        d.udp_port = int(m.group(1))
        t = d.wait_for_line(TCP_RE, timeout=0)
        d.tcp_port = int(t.group(1)) if t else None
        return d

    yield start

    for d in started:
        d.kill()
        print(f"----- {d.name} ({' '.join(d.argv)}) rc={d.proc.returncode} -----")
        print(d.text())


# --------------------------------------------------------------------------------------------------
# SDK emitters

def sdk_env(tmp_path, udp_port):
    env = base_env(tmp_path)
    env.update({"AWS_XRAY_DAEMON_ADDRESS": f"{LOOPBACK}:{udp_port}",
                "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR"})
    return env


def run_capturing(argv, env, capture, name, timeout=60):
    r = subprocess.run([str(a) for a in argv], env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{name} failed (rc {r.returncode}):\n{r.stdout}\n{r.stderr}"
    assert capture.is_file(), f"{name} wrote no capture file:\n{r.stdout}\n{r.stderr}"
    return json.loads(capture.read_text(encoding="utf-8"))


@pytest.fixture
def emit_python(tmp_path):
    """emit_python(udp_port) -> capture dict from tests/peers/py_emit.py (aws-xray-sdk)."""
    def run(udp_port):
        capture = tmp_path / "py_capture.json"
        return run_capturing([sys.executable, PEERS / "py_emit.py", "--capture", capture],
                             sdk_env(tmp_path, udp_port), capture, "py_emit.py")
    return run


NODE_SDK_VERSION = "3.12.0"


@pytest.fixture
def emit_node(tmp_path):
    """emit_node(udp_port) -> capture dict from tests/peers/node_emit.js (aws-xray-sdk-core)."""
    node_modules = ROOT / "target" / "node" / "node_modules"
    pkg = node_modules / "aws-xray-sdk-core" / "package.json"

    def run(udp_port):
        import shutil
        node = shutil.which("node")
        if not node:
            pytest.fail("node is not installed: the Node SDK test needs node >= 20 (and tests/e2e/setup.sh)")
        if not pkg.is_file():
            pytest.fail(f"{pkg} is missing: run tests/e2e/setup.sh to install aws-xray-sdk-core "
                        f"{NODE_SDK_VERSION} into target/node")
        version = json.loads(pkg.read_text())["version"]
        if version != NODE_SDK_VERSION:
            pytest.fail(f"target/node has aws-xray-sdk-core {version}, expected {NODE_SDK_VERSION}: "
                        f"run tests/e2e/setup.sh")
        capture = tmp_path / "node_capture.json"
        env = sdk_env(tmp_path, udp_port)
        env["NODE_PATH"] = str(node_modules)
        return run_capturing([node, PEERS / "node_emit.js", "--capture", capture], env, capture, "node_emit.js")
    return run
