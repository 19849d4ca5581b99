"""The container image (docker/Dockerfile), built and run here without a Docker engine.

No Docker engine runs on the test machine and no base image can be pulled, so the image is
assembled the way docker/Dockerfile's `prebuilt` path does it: docker/stage-rootfs.sh stages the
static binary that `make static` built (plus the links, /etc/passwd, /etc/group and the CA
bundle), and buildah builds the Dockerfile's final stage `FROM scratch` around it. The same final
stage is what `docker buildx build` produces from the Dockerfile's own build stage.

The tests then check what users of upstream's image depend on: uid 10001, 0.0.0.0:2000 by
default (from XRAY_DAEMON_UDP_ADDRESS and XRAY_DAEMON_TCP_ADDRESS, which upstream's -b/-t flags
still beat), the /xray and /usr/bin/xray paths, both ports, a health check without a shell that
finds the daemon however its address was given, static binaries for amd64 and arm64, and the OCI
labels with the version, commit and time. The daemon is run inside the image with
`buildah run --isolation chroot --network host` (podman cannot run containers on this machine),
bound to free loopback ports (0.0.0.0:2000 may be taken by another daemon).

buildah keeps its images in a private storage directory under pytest's tmp_path, removed at the
end. Binaries: $XRAY_DAEMON_IMAGE_BIN_AMD64 and $XRAY_DAEMON_IMAGE_BIN_ARM64, default
target/<arch>-unknown-linux-musl/release/xray-daemon (`make static`).

`make test-release` runs everything on `make static`'s release binaries, amd64 and arm64.
`make test` (test-packaging) runs the tests not marked `arm64` on a static x86_64 *debug* build
(target/x86_64-unknown-linux-musl/debug/xray-daemon): a cold static release build takes about
half an hour per arch on 2 cores, and a second arch ~10 minutes more, than CI can spend.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
LOOPBACK = "127.0.0.1"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

ENTRYPOINT = ["/xray-daemon"]
IMAGE_ENV = {"XRAY_DAEMON_UDP_ADDRESS": "0.0.0.0:2000", "XRAY_DAEMON_TCP_ADDRESS": "0.0.0.0:2000"}
HEALTHCHECK = ["CMD", "/xray-daemon", "health-check"]
UID = 10001
OCI_LABELS = {
    "org.opencontainers.image.title": "xray-daemon",
    "org.opencontainers.image.licenses": "Apache-2.0",
    "org.opencontainers.image.source": "https://github.com/xray-daemon/xray-daemon",
    "org.opencontainers.image.url": "https://github.com/xray-daemon/xray-daemon",
    "org.opencontainers.image.documentation": "https://github.com/xray-daemon/xray-daemon#readme",
    "org.opencontainers.image.vendor": "xray-daemon",
}
# What the tests build with, as `make dist` passes them (git rev-parse HEAD, the commit's time).
REVISION = "0123456789abcdef0123456789abcdef01234567"
CREATED = "2026-01-02T03:04:05Z"
# Every path in the image, and nothing else.
IMAGE_TREE = {
    "etc", "etc/group", "etc/passwd", "etc/ssl", "etc/ssl/certs", "etc/ssl/certs/ca-certificates.crt",
    "usr", "usr/bin", "usr/bin/xray", "xray", "xray-daemon",
}
ARCHES = {
    # docker arch: (env var with the binary, rust target, ELF machine as readelf names it)
    "amd64": ("XRAY_DAEMON_IMAGE_BIN_AMD64", "x86_64-unknown-linux-musl", "Advanced Micro Devices X86-64"),
    "arm64": ("XRAY_DAEMON_IMAGE_BIN_ARM64", "aarch64-unknown-linux-musl", "AArch64"),
}
TIMEOUT = 120  # any one buildah command


def cargo_version():
    m = re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M)
    assert m, "no version in Cargo.toml"
    return m.group(1)


VERSION = cargo_version()


def venv_tool(name):
    path = Path(sys.executable).parent / name
    assert path.exists(), f"{name} is not installed beside {sys.executable}: pip install -r tests/docker/requirements.txt"
    return str(path)


def host_tool(name, package):
    path = shutil.which(name)
    assert path, f"{name} is not installed: apt-get install -y {package} (make test-packaging does it)"
    return path


def image_binary(arch):
    var, target, _ = ARCHES[arch]
    p = Path(os.environ.get(var, f"target/{target}/release/xray-daemon"))
    p = p if p.is_absolute() else ROOT / p
    assert p.is_file(), f"no binary at {p} (${var}): run `make static`"
    return p


def run(cmd, timeout=TIMEOUT, check=True, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check:
        assert p.returncode == 0, f"{' '.join(map(str, cmd))} -> rc {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def free_port():
    """A port free on 127.0.0.1 for both TCP and UDP a moment ago (the daemon uses one for each)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind((LOOPBACK, 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind((LOOPBACK, port))
                except OSError:
                    continue
                return port
    raise AssertionError("no port free for both TCP and UDP on 127.0.0.1")


def readelf(*args):
    return run([host_tool("readelf", "binutils"), "-W", *args]).stdout


def assert_static_elf(path, machine):
    header = readelf("-h", str(path))
    assert re.search(rf"Machine:\s+{re.escape(machine)}\s*$", header, re.M), header
    program = readelf("-l", str(path))
    assert "INTERP" not in program and "program interpreter" not in program, f"{path} is dynamically linked:\n{program}"
    dynamic = readelf("-d", str(path))
    assert "(NEEDED)" not in dynamic, f"{path} needs shared libraries:\n{dynamic}"


class Buildah:
    """buildah with its own storage (vfs, no kernel features needed), rooted in a temp dir."""

    def __init__(self, base):
        self.exe = host_tool("buildah", "buildah")
        self.base = base
        self.globals = ["--root", str(base / "root"), "--runroot", str(base / "runroot"), "--storage-driver", "vfs"]
        self.containers = []

    def __call__(self, *args, timeout=TIMEOUT, check=True):
        return run([self.exe, *self.globals, *map(str, args)], timeout=timeout, check=check)

    def popen(self, *args, stdout):
        return subprocess.Popen([self.exe, *self.globals, *map(str, args)], stdout=stdout, stderr=subprocess.STDOUT)

    def container(self, image):
        cid = self("from", "--pull-never", image).stdout.strip().splitlines()[-1]
        self.containers.append(cid)
        return cid

    def run_in(self, cid, argv, env=(), timeout=60, check=False):
        envs = [a for kv in env for a in ("--env", kv)]
        return self("run", "--isolation", "chroot", "--network", "host", *envs, cid, "--", *argv,
                    timeout=timeout, check=check)

    def close(self):
        for cid in self.containers:
            self("umount", cid, check=False)
            self("rm", cid, check=False)
        self("rmi", "--all", "--force", check=False)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="module")
def buildah(tmp_path_factory):
    b = Buildah(tmp_path_factory.mktemp("buildah"))
    yield b
    b.close()


class Image:
    def __init__(self, tag, binary, tree):
        self.tag, self.binary, self.tree = tag, binary, tree  # binary: the file staged as /xray-daemon


def build_image(buildah, arch, ctx):
    """docker/Dockerfile's prebuilt path: stage the static binary with docker/stage-rootfs.sh,
    then build the final stage FROM scratch around it."""
    (ctx / "docker").mkdir(parents=True)
    for name in ("Dockerfile", "stage-rootfs.sh", "passwd", "group"):
        shutil.copy2(DOCKER / name, ctx / "docker" / name)
    binary, out = image_binary(arch), ctx / "docker" / "out" / arch
    assert_static_elf(binary, ARCHES[arch][2])
    run([str(ctx / "docker" / "stage-rootfs.sh"), str(binary), str(HOST_CA_BUNDLE), str(out)])
    tag = f"localhost/xray-daemon-test:{arch}"
    buildah("bud", "--isolation", "chroot", "--format", "docker", "--platform", f"linux/{arch}",
            "--build-arg", "BINARIES=prebuilt", "--build-arg", f"VERSION={VERSION}",
            "--build-arg", f"REVISION={REVISION}", "--build-arg", f"CREATED={CREATED}",
            "-f", ctx / "docker" / "Dockerfile", "-t", tag, ctx, timeout=300)
    return Image(tag, binary, set(IMAGE_TREE))


@pytest.fixture(scope="module")
def image_amd64(buildah, tmp_path_factory):
    return build_image(buildah, "amd64", tmp_path_factory.mktemp("ctx-amd64"))


@pytest.fixture(scope="module")
def image_arm64(buildah, tmp_path_factory):
    return build_image(buildah, "arm64", tmp_path_factory.mktemp("ctx-arm64"))


def inspect(buildah, image):
    return json.loads(buildah("inspect", "--type", "image", image).stdout)


# --- the Dockerfile -------------------------------------------------------------------------------

def test_hadolint_accepts_the_dockerfile():
    p = run([venv_tool("hadolint"), "--failure-threshold", "info", str(DOCKERFILE)], check=False)
    assert p.returncode == 0, f"hadolint {DOCKERFILE}:\n{p.stdout}{p.stderr}"


def test_hadolint_is_really_linting(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nADD x /x\n")
    p = run([venv_tool("hadolint"), "--failure-threshold", "info", str(bad)], check=False)
    assert p.returncode == 1 and "DL3006" in p.stdout and "DL3020" in p.stdout, p.stdout + p.stderr


def test_dockerfile_version_default_is_the_crate_version():
    m = re.search(r"^ARG VERSION=(\S+)$", DOCKERFILE.read_text(), re.M)
    assert m and m.group(1) == VERSION, f"docker/Dockerfile's ARG VERSION should be Cargo.toml's {VERSION}"


def test_both_stages_build_the_same_release_profile():
    """The build stage compiles with Cargo.toml's [profile.release], as `make static` does."""
    text = DOCKERFILE.read_text()
    assert "cargo zigbuild --locked --release --bin xray-daemon" in text
    assert not re.search(r"CARGO_PROFILE_|--profile|RUSTFLAGS", text), "the image must use the release profile as is"
    make = (ROOT / "Makefile").read_text()
    assert make.count("zigbuild --locked --release --bin xray-daemon --target") == 2


# --- the amd64 image ------------------------------------------------------------------------------

def check_config(info, arch):
    cfg = info["Docker"]["config"]
    assert info["Docker"]["architecture"] == arch and info["OCIv1"]["architecture"] == arch
    assert info["Docker"]["os"] == "linux"
    assert cfg["User"] in (f"{UID}:{UID}", str(UID))
    assert cfg["Entrypoint"] == ENTRYPOINT
    assert not cfg.get("Cmd")
    assert set(cfg["ExposedPorts"]) == {"2000/udp", "2000/tcp"}
    assert cfg["Healthcheck"]["Test"] == HEALTHCHECK
    assert cfg["Healthcheck"]["Interval"] > 0 and cfg["Healthcheck"]["Retries"] > 0
    labels = cfg["Labels"]
    for k, v in OCI_LABELS.items():
        assert labels.get(k) == v, (k, labels)
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.revision"] == REVISION
    assert labels["org.opencontainers.image.created"] == CREATED
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert {k: env.get(k) for k in IMAGE_ENV} == IMAGE_ENV, cfg["Env"]
    assert labels.get("org.opencontainers.image.description", "").strip()


def test_image_config(buildah, image_amd64):
    check_config(inspect(buildah, image_amd64.tag), "amd64")


def assert_links(root):
    """/xray and /usr/bin/xray are links to /xray-daemon (absolute: they resolve inside the image)."""
    for link in ("xray", "usr/bin/xray"):
        assert (root / link).is_symlink(), f"/{link} should be a link to /xray-daemon"
        assert os.readlink(root / link) == "/xray-daemon", f"/{link} -> {os.readlink(root / link)}"


def image_files(buildah, image):
    cid = buildah.container(image)
    return Path(buildah("mount", cid).stdout.strip())


def test_image_files(buildah, image_amd64):
    root = image_files(buildah, image_amd64.tag)
    tree = {str(p.relative_to(root)) for p in root.rglob("*")}
    assert tree == image_amd64.tree, f"unexpected image content: {sorted(tree ^ image_amd64.tree)}"

    passwd = (root / "etc/passwd").read_text().splitlines()
    assert f"xray:x:{UID}:{UID}:xray-daemon:/:/sbin/nologin" in passwd, passwd
    assert f"xray:x:{UID}:" in (root / "etc/group").read_text().splitlines()

    ca = (root / "etc/ssl/certs/ca-certificates.crt").read_text()
    assert ca.count("-----BEGIN CERTIFICATE-----") >= 50, "the CA bundle is (nearly) empty"

    binary = root / "xray-daemon"
    st = binary.lstat()
    assert binary.is_file() and not binary.is_symlink() and st.st_mode & 0o777 == 0o755 and st.st_uid == 0
    assert_links(root)
    assert hashlib.sha256(binary.read_bytes()).digest() == hashlib.sha256(image_amd64.binary.read_bytes()).digest()


def test_image_binary_is_static(buildah, image_amd64):
    root = image_files(buildah, image_amd64.tag)
    assert_static_elf(root / "xray-daemon", ARCHES["amd64"][2])


@pytest.mark.parametrize("path", ["/xray-daemon", "/xray", "/usr/bin/xray"])
def test_every_entrypoint_path_runs(buildah, image_amd64, path):
    cid = buildah.container(image_amd64.tag)
    p = buildah.run_in(cid, [path, "-v"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith(f"AWS X-Ray daemon version: {VERSION}\n"), p.stdout


def wait_for(log, pattern, proc, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if re.search(pattern, text, re.M):
            return text
        assert proc.poll() is None, f"the daemon exited with {proc.returncode}:\n{text}"
        time.sleep(0.1)
    raise AssertionError(f"no {pattern!r} within {seconds} s:\n{log.read_text(errors='replace')}")


def daemon_pid(marker):
    """The daemon's process on this host (chroot isolation shares the PID namespace), by the
    IMAGE_TEST_RUN variable it was started with."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
            environ = (d / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0] == b"/xray-daemon" and f"IMAGE_TEST_RUN={marker}".encode() in environ \
                and b"health-check" not in argv:
            return int(d.name)
    return None


DAEMON_ENV = ["AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY=dummy-secret",
              "AWS_EC2_METADATA_DISABLED=true", "XRAY_DAEMON_LOCAL_MODE=true",
              "XRAY_DAEMON_ENDPOINT=http://127.0.0.1:9", "XRAY_DAEMON_TELEMETRY=false",
              # nothing can be uploaded (port 9 refuses): don't wait the default 5 s for it at SIGTERM
              "XRAY_DAEMON_SHUTDOWN_TIMEOUT=1s"]


class Daemon:
    """The image's entrypoint plus `args`, run in a container of its own with `env` added to the
    image's; `port` is where it should listen (UDP and TCP)."""

    def __init__(self, buildah, image, tmp_path, args=(), env=(), files=None):
        self.buildah, self.port = buildah, free_port()
        self.info = inspect(buildah, image.tag)["Docker"]["config"]
        self.cid = buildah.container(image.tag)
        root = Path(buildah("mount", self.cid).stdout.strip())
        for path, text in (files or {}).items():  # into the container, readable by its user
            (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (root / path.lstrip("/")).write_text(text.format(port=self.port))
            (root / path.lstrip("/")).chmod(0o644)
        self.argv = self.info["Entrypoint"] + [a.format(port=self.port) for a in args]
        self.env = DAEMON_ENV + [e.format(port=self.port) for e in env] + [f"IMAGE_TEST_RUN={self.port}"]
        self.log = tmp_path / f"daemon-{self.port}.log"

    def __enter__(self):
        envs = [a for kv in self.env for a in ("--env", kv)]
        with self.log.open("wb") as out:
            self.proc = self.buildah.popen("run", "--isolation", "chroot", "--network", "host", *envs, self.cid,
                                           "--", *self.argv, stdout=out)
        try:
            self.text = wait_for(self.log, rf"Listening on UDP {LOOPBACK}:{self.port}\s*$", self.proc, 30)
            self.pid = daemon_pid(self.port)
            assert self.pid, "the daemon's process is not visible on the host"
        except BaseException:
            self.__exit__()
            raise
        return self

    def health_check(self, *args, env=()):
        """The image's health check command (plus `args`), in the daemon's container, as Docker
        runs it: with the image's variables, not the daemon's flags."""
        return self.buildah.run_in(self.cid, self.info["Healthcheck"]["Test"][1:] + list(args), env=env)

    def stop(self):
        os.kill(self.pid, signal.SIGTERM)
        assert self.proc.wait(timeout=20) == 0, self.log.read_text(errors="replace")
        return self.log.read_text(errors="replace")

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            pid = daemon_pid(self.port)
            if pid:
                os.kill(pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait(timeout=10)


def test_entrypoint_runs_and_health_check_works(buildah, image_amd64, tmp_path):
    """The image's own entrypoint, with upstream's flags beating the image's 0.0.0.0:2000
    variables, serves /health; the image's health check command says so."""
    with Daemon(buildah, image_amd64, tmp_path, args=["-b", f"{LOOPBACK}:{{port}}", "-t", f"{LOOPBACK}:{{port}}"]) as d:
        assert "0.0.0.0:2000" not in d.text, d.text

        # runs as the image's user
        uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)", Path(f"/proc/{d.pid}/status").read_text(), re.M)
        assert uids and uids.groups() == (str(UID), str(UID)), uids
        # found the image's CA bundle by itself (it refuses to start without one, see below)
        environ = Path(f"/proc/{d.pid}/environ").read_bytes().split(b"\0")
        assert not [e for e in environ if e.startswith((b"SSL_CERT_FILE=", b"SSL_CERT_DIR="))], environ
        assert "root CA" not in d.text, d.text

        # the health check exactly as the image declares it, and with an address of its own
        p = d.health_check()
        assert p.returncode == 0 and p.stdout.strip() == "healthy", p.stdout + p.stderr
        p = d.health_check(f"{LOOPBACK}:{d.port}")
        assert p.returncode == 0 and p.stdout.strip() == "healthy", p.stdout + p.stderr
        closed = free_port()
        p = d.health_check(f"{LOOPBACK}:{closed}")
        assert p.returncode == 1 and "unhealthy" in p.stderr, p.stdout + p.stderr

        # UDP in, TCP /metrics out: both ports work inside the image
        now = time.time()
        doc = {"name": "image-test", "id": "70de5b6f19ff9a0c", "trace_id": f"1-{int(now):08x}-{'a' * 24}",
               "start_time": now - 0.1, "end_time": now}
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b'{"format":"json","version":1}\n' + json.dumps(doc).encode(), (LOOPBACK, d.port))
        deadline = time.monotonic() + 10
        while True:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{d.port}/metrics", timeout=5) as r:
                metrics = r.read().decode()
            if re.search(r"^xray_daemon_segments_received_total 1$", metrics, re.M):
                break
            assert time.monotonic() < deadline, metrics
            time.sleep(0.2)

        assert "Shutdown finished" in d.stop()


CONFIG_FILE = "Version: 2\nSocket:\n  UDPAddress: 127.0.0.1:{port}\n  TCPAddress: 127.0.0.1:{port}\n"


@pytest.mark.parametrize("way", ["flags", "variables", "config file", "default config file"])
def test_health_check_finds_the_daemon_however_its_address_was_given(buildah, image_amd64, tmp_path, way):
    """`docker run IMAGE -t ...`, `-e XRAY_DAEMON_TCP_ADDRESS=...`, `-c FILE`, upstream's default
    file: the health check, run as Docker runs it (the image's variables, not the daemon's flags
    or `-e`), reads the daemon's settings and probes the port it is on; stopped, it fails."""
    addr = f"{LOOPBACK}:{{port}}"
    no_vars = ["XRAY_DAEMON_UDP_ADDRESS=", "XRAY_DAEMON_TCP_ADDRESS="]  # the file's Socket addresses apply
    args, env, files = {
        "flags": (["-b", addr, "-t", addr], [], None),
        "variables": ([], [f"XRAY_DAEMON_UDP_ADDRESS={addr}", f"XRAY_DAEMON_TCP_ADDRESS={addr}"], None),
        "config file": (["-c", "/config/xray.yaml"], no_vars, {"/config/xray.yaml": CONFIG_FILE}),
        "default config file": ([], no_vars, {"/etc/amazon/xray/cfg.yaml": CONFIG_FILE}),
    }[way]
    with Daemon(buildah, image_amd64, tmp_path, args=args, env=env, files=files) as d:
        p = d.health_check()
        assert p.returncode == 0 and p.stdout.strip() == "healthy", p.stdout + p.stderr
        # it probed the daemon's port, not the image's 0.0.0.0:2000: stopped, the daemon does not answer there
        os.kill(d.pid, signal.SIGSTOP)
        try:
            p = d.health_check()
        finally:
            os.kill(d.pid, signal.SIGCONT)
        assert p.returncode == 1 and f"no answer from {LOOPBACK}:{d.port}" in p.stderr, p.stdout + p.stderr
        assert f"from the daemon running as PID {d.pid})" in p.stderr, p.stderr
        d.stop()


def test_daemon_needs_the_images_ca_bundle(buildah, image_amd64):
    """Without CA certificates the daemon does not start: so the run above used the image's."""
    cid = buildah.container(image_amd64.tag)
    port = free_port()
    p = buildah.run_in(cid, ["/xray-daemon", "-b", f"{LOOPBACK}:{port}", "-t", f"{LOOPBACK}:{port}"],
                       env=["AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY=dummy",
                            "XRAY_DAEMON_LOCAL_MODE=true", "AWS_EC2_METADATA_DISABLED=true",
                            "SSL_CERT_FILE=/nonexistent", "SSL_CERT_DIR=/nonexistent"], timeout=30)
    # (exit 1 with a message, or a panic inside the AWS SDK's TLS set-up: either way it stops)
    out = p.stdout + p.stderr
    assert p.returncode != 0 and re.search(r"no (valid )?(native )?root (CA )?certificates", out, re.I), out
    assert not re.search(r"Listening on UDP", out), out


# --- the arm64 image ------------------------------------------------------------------------------

@pytest.mark.arm64
def test_arm64_image(buildah, image_arm64):
    check_config(inspect(buildah, image_arm64.tag), "arm64")
    root = image_files(buildah, image_arm64.tag)
    assert {str(p.relative_to(root)) for p in root.rglob("*")} == IMAGE_TREE
    assert_links(root)
    assert (root / "xray-daemon").read_bytes() == image_binary("arm64").read_bytes()
    assert_static_elf(root / "xray-daemon", ARCHES["arm64"][2])


@pytest.mark.arm64
def test_arm64_binary_runs_under_qemu():
    qemu = host_tool("qemu-aarch64-static", "qemu-user-static")
    p = run([qemu, str(image_binary("arm64")), "-v"], timeout=60)
    assert p.stdout.startswith(f"AWS X-Ray daemon version: {VERSION}\n"), p.stdout
