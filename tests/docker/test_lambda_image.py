"""The extension in a container-image Lambda function, as docs/lambda.md tells users to add it:

    COPY --from=<the daemon's image> /xray-daemon /opt/extensions/xray-daemon
    COPY extension/wrapper /opt/xray-daemon/wrapper

buildah builds the daemon's image (as test_image.py does) and then a function image FROM scratch
with those two lines and a CA bundle where Amazon Linux keeps it (Lambda's base images cannot be
pulled here; of them the extension needs only the CA bundle: without one it does not start). The extension is then started from the function image's file system, at the path
Lambda starts it from, against the minimal Runtime API of tests/peers/fake_runtime.py and a fake
X-Ray endpoint on loopback: it registers, takes a segment over UDP, and at SHUTDOWN uploads it
and exits 0.
"""

import json
from pathlib import Path
import socket
import stat
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from test_image import LOOPBACK, ROOT, Buildah, build_image, free_port

sys.path.insert(0, str(ROOT / "tests" / "peers"))
from fake_runtime import NEXT, REGISTER, TELEMETRY, FakeRuntime  # noqa: E402

FUNCTION_DOCKERFILE = """\
FROM {daemon} AS xray
FROM scratch
# Stands in for Lambda's base image, which keeps its CA bundle here (Amazon Linux).
COPY --from=xray /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt
# The two lines of docs/lambda.md.
COPY --from=xray /xray-daemon /opt/extensions/xray-daemon
COPY extension/wrapper /opt/xray-daemon/wrapper
"""
FUNCTION_TREE = [
    "etc", "etc/pki", "etc/pki/tls", "etc/pki/tls/certs", "etc/pki/tls/certs/ca-bundle.crt",
    "opt", "opt/extensions", "opt/extensions/xray-daemon", "opt/xray-daemon", "opt/xray-daemon/wrapper",
]


@pytest.fixture(scope="module")
def buildah(tmp_path_factory):
    b = Buildah(tmp_path_factory.mktemp("buildah-lambda"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def function_image(buildah, tmp_path_factory):
    daemon = build_image(buildah, "amd64", tmp_path_factory.mktemp("ctx-daemon"))
    ctx = tmp_path_factory.mktemp("ctx-function")
    (ctx / "extension").mkdir()
    (ctx / "extension" / "wrapper").write_bytes((ROOT / "extension" / "wrapper").read_bytes())
    (ctx / "extension" / "wrapper").chmod(0o755)
    (ctx / "Dockerfile").write_text(FUNCTION_DOCKERFILE.format(daemon=daemon.tag))
    tag = "localhost/xray-daemon-test-function:amd64"
    buildah("bud", "--isolation", "chroot", "--pull=never", "--format", "docker", "--platform", "linux/amd64",
            "-f", ctx / "Dockerfile", "-t", tag, ctx, timeout=300)
    return tag, daemon


class FakeXRay:
    """PutTraceSegments on loopback: records each request's segment documents, accepts them all."""

    def __init__(self):
        self.documents = []
        self.arrived = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/TraceSegments":
                    outer.documents += [json.loads(d) for d in body["TraceSegmentDocuments"]]
                    outer.arrived.set()
                data = b'{"UnprocessedTraceSegments":[]}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.url = f"http://{LOOPBACK}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_function_image_holds_the_extension_where_lambda_starts_it(buildah, function_image):
    tag, daemon = function_image
    cid = buildah.container(tag)
    root = Path(buildah("mount", cid).stdout.strip())
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    assert files == FUNCTION_TREE, files
    for path in ("opt/extensions/xray-daemon", "opt/xray-daemon/wrapper"):
        mode = (root / path).stat().st_mode
        assert stat.S_ISREG(mode) and stat.S_IMODE(mode) & 0o111 == 0o111, (path, oct(mode))
    assert (root / "opt/extensions/xray-daemon").read_bytes() == daemon.binary.read_bytes()


def test_extension_from_the_function_image_registers_and_uploads_at_shutdown(buildah, function_image, tmp_path):
    tag, _ = function_image
    cid = buildah.container(tag)
    port = free_port()
    xray = FakeXRay()
    hold = threading.Event()
    try:
        with FakeRuntime(telemetry=202, hold=hold) as runtime:
            env = [
                f"AWS_LAMBDA_RUNTIME_API={runtime.address}", "AWS_REGION=us-east-1",
                "AWS_ACCESS_KEY_ID=AKIDIMAGETEST", "AWS_SECRET_ACCESS_KEY=image-test", "AWS_SESSION_TOKEN=token",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128", "AWS_EC2_METADATA_DISABLED=true",
                f"XRAY_DAEMON_UDP_ADDRESS={LOOPBACK}:{port}", f"XRAY_DAEMON_ENDPOINT={xray.url}",
            ]
            envs = [a for kv in env for a in ("--env", kv)]
            log = tmp_path / "extension.log"
            with log.open("wb") as out:
                # Lambda starts /opt/extensions/<file> with that path as argv[0].
                proc = buildah.popen("run", "--isolation", "chroot", "--network", "host", *envs, cid, "--",
                                     "/opt/extensions/xray-daemon", stdout=out)
            try:
                # Registered, and waiting for its first event: the UDP port is bound before it registers.
                deadline = time.monotonic() + 30
                while runtime.first(NEXT) is None:
                    assert proc.poll() is None, log.read_text()
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.05)
                now = time.time()
                doc = {"name": "image-function", "id": "70de5b6f19ff9a0c",
                       "trace_id": f"1-{int(now):08x}-{'b' * 24}", "start_time": now - 0.1, "end_time": now}
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.sendto(b'{"format":"json","version":1}\n' + json.dumps(doc).encode(), (LOOPBACK, port))
                hold.set()  # now SHUTDOWN
                assert proc.wait(30) == 0, log.read_text()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
        out = log.read_text()
        assert [c.path for c in runtime.calls] == [REGISTER, TELEMETRY, NEXT], [c.path for c in runtime.calls]
        assert runtime.calls[0].header("Lambda-Extension-Name") == "xray-daemon"
        assert json.loads(runtime.calls[0].body) == {"events": ["INVOKE", "SHUTDOWN"]}
        assert xray.documents == [doc], out
        assert "Got SHUTDOWN (spindown)" in out and "Shutdown finished" in out, out
    finally:
        xray.close()
