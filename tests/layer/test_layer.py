"""The Lambda layer zips (`extension/build_layer.py`), unpacked and run as Lambda would.

Zips: $XRAY_DAEMON_LAYER_X86_64 and $XRAY_DAEMON_LAYER_ARM64 (`make layer` builds both from the
static release binaries; `make test` builds the x86_64 one from a static debug build and
deselects the arm64 tests, `-m "not arm64"`, since a second cross build costs CI ~10 minutes).

Checks: the zip's entries and modes, the binary is a static ELF for its machine that needs no
glibc at all (so it runs on Amazon Linux 2's glibc 2.26 and AL2023 alike), `--version` runs
(arm64 under qemu-aarch64-static), the wrapper script points SDKs at the extension and runs a
second wrapper if asked to, and the unpacked x86_64 extension boots against a minimal Runtime API,
takes a SHUTDOWN, exits 0.
"""

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "peers"))
from fake_runtime import NEXT, REGISTER, TELEMETRY, FakeRuntime  # noqa: E402

VERSION = re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M).group(1)
ARCHES = {
    "x86_64": ("XRAY_DAEMON_LAYER_X86_64", "Advanced Micro Devices X86-64"),
    "arm64": ("XRAY_DAEMON_LAYER_ARM64", "AArch64"),
}
ENTRIES = {"extensions/xray-daemon": 0o755, "xray-daemon/wrapper": 0o755, "xray-daemon/LICENSE": 0o644}
MAX_ZIP = 4 * 1024 * 1024


def layer_zip(arch):
    var = ARCHES[arch][0]
    path = os.environ.get(var) or str(ROOT / f"target/layer/xray-daemon-layer-{arch}.zip")
    p = Path(path)
    assert p.is_file(), f"no layer zip at {p} (${var}): run `make layer`"
    return p


def unpack(arch, tmp_path):
    with zipfile.ZipFile(layer_zip(arch)) as z:
        z.extractall(tmp_path)
        for info in z.infolist():  # zipfile does not restore modes; Lambda does
            os.chmod(tmp_path / info.filename, (info.external_attr >> 16) & 0o777)
    return tmp_path


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)


def readelf(*args):
    p = run(["readelf", "-W", *args])
    assert p.returncode == 0, p.stderr
    return p.stdout


arch_params = [pytest.param("x86_64"), pytest.param("arm64", marks=pytest.mark.arm64)]


@pytest.mark.parametrize("arch", arch_params)
def test_zip_holds_the_extension_the_wrapper_and_the_license(arch):
    with zipfile.ZipFile(layer_zip(arch)) as z:
        infos = {i.filename: i for i in z.infolist()}
        assert set(infos) == set(ENTRIES), sorted(infos)
        for name, mode in ENTRIES.items():
            bits = infos[name].external_attr >> 16
            assert stat.S_ISREG(bits) and stat.S_IMODE(bits) == mode, f"{name}: {oct(bits)}"
        assert z.testzip() is None


@pytest.mark.parametrize("arch", arch_params)
def test_binary_is_static_and_needs_no_glibc(arch, tmp_path):
    binary = unpack(arch, tmp_path) / "extensions/xray-daemon"
    header = readelf("-h", str(binary))
    assert re.search(rf"Machine:\s+{re.escape(ARCHES[arch][1])}\s*$", header, re.M), header
    program = readelf("-l", str(binary))
    assert "INTERP" not in program, f"dynamically linked:\n{program}"
    assert "(NEEDED)" not in readelf("-d", str(binary))
    versions = readelf("-V", str(binary)) + readelf("--dyn-syms", str(binary))
    glibc = sorted(set(re.findall(r"GLIBC_([0-9.]+)", versions)), key=lambda v: [int(x) for x in v.split(".")])
    assert not glibc, f"references glibc symbols up to GLIBC_{glibc[-1]}"


@pytest.mark.parametrize("arch", arch_params)
def test_unpacked_binary_runs(arch, tmp_path):
    binary = unpack(arch, tmp_path) / "extensions/xray-daemon"
    cmd = [str(binary), "--version"]
    if arch == "arm64":
        qemu = shutil.which("qemu-aarch64-static")
        assert qemu, "apt-get install -y qemu-user-static (make layer does it)"
        cmd = [qemu, *cmd]
    p = run(cmd)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith(f"AWS X-Ray daemon version: {VERSION}\n"), p.stdout


@pytest.mark.release
@pytest.mark.parametrize("arch", arch_params)
def test_release_layer_is_small(arch):
    size = layer_zip(arch).stat().st_size
    assert size <= MAX_ZIP, f"{layer_zip(arch)} is {size} bytes, more than {MAX_ZIP}"


def test_wrapper_points_every_sdk_at_the_extension(tmp_path):
    wrapper = unpack("x86_64", tmp_path) / "xray-daemon/wrapper"

    def env_after(extra):
        env = {"PATH": os.environ["PATH"], "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000", **extra}
        p = run([str(wrapper), "env"], env=env)
        assert p.returncode == 0, p.stderr
        return dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line)

    got = env_after({})
    assert got["AWS_XRAY_DAEMON_ADDRESS"] == "127.0.0.1:2000"
    assert (got["_AWS_XRAY_DAEMON_ADDRESS"], got["_AWS_XRAY_DAEMON_PORT"]) == ("127.0.0.1", "2000")
    got = env_after({"XRAY_DAEMON_UDP_ADDRESS": "127.0.0.1:2999"})
    assert got["AWS_XRAY_DAEMON_ADDRESS"] == "127.0.0.1:2999" and got["_AWS_XRAY_DAEMON_PORT"] == "2999"
    got = env_after({"XRAY_DAEMON_LAMBDA_PROXY": "true", "XRAY_DAEMON_TCP_ADDRESS": "127.0.0.1:2001"})
    assert got["AWS_XRAY_DAEMON_ADDRESS"] == "tcp:127.0.0.1:2001 udp:127.0.0.1:2000"
    # With the proxy on the same address as UDP (the default), the plain form serves the X-Ray SDKs'
    # UDP and TCP alike, and AWS's OpenTelemetry distribution, which parses nothing else.
    got = env_after({"XRAY_DAEMON_LAMBDA_PROXY": "true"})
    assert got["AWS_XRAY_DAEMON_ADDRESS"] == "127.0.0.1:2000"
    # The runtime's own command line is run unchanged, with its arguments.
    p = run([str(wrapper), "sh", "-c", 'echo "$0|$1"', "a b", "c"], env={"PATH": os.environ["PATH"]})
    assert p.stdout == "a b|c\n"


def test_wrapper_runs_the_next_wrapper_with_the_addresses_and_the_runtimes_command_line(tmp_path):
    """XRAY_DAEMON_EXEC_WRAPPER (e.g. ADOT's /opt/otel-instrument) runs after ours, as Lambda runs
    a wrapper: with the runtime's command line, and with the addresses ours exported."""
    wrapper = unpack("x86_64", tmp_path) / "xray-daemon/wrapper"
    # A stand-in for /opt/otel-instrument: writes down what it sees, then runs the runtime.
    seen = tmp_path / "seen"
    next_wrapper = tmp_path / "otel-instrument"
    script = textwrap.dedent("""\
        #!/bin/sh
        {
          echo "$AWS_XRAY_DAEMON_ADDRESS $_AWS_XRAY_DAEMON_ADDRESS $_AWS_XRAY_DAEMON_PORT"
          echo "${XRAY_DAEMON_EXEC_WRAPPER-unset}"
          printf '[%s]\\n' "$@"
        } > SEEN
        exec "$@"
        """)
    next_wrapper.write_text(script.replace("SEEN", str(seen)))
    next_wrapper.chmod(0o755)
    env = {
        "PATH": os.environ["PATH"], "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000",
        "XRAY_DAEMON_UDP_ADDRESS": "127.0.0.1:2999", "XRAY_DAEMON_EXEC_WRAPPER": str(next_wrapper),
    }
    runtime = ["sh", "-c", 'echo "$0|$1|$AWS_XRAY_DAEMON_ADDRESS"', "a b", "*"]
    p = run([str(wrapper), *runtime], env=env)
    assert p.returncode == 0, p.stderr
    # The runtime runs last, with its arguments unchanged (a space, a glob) and our address.
    assert p.stdout == "a b|*|127.0.0.1:2999\n"
    lines = seen.read_text().splitlines()
    assert lines[0] == "127.0.0.1:2999 127.0.0.1 2999"
    # Not passed on: a wrapper that points back at ours cannot loop.
    assert lines[1] == "unset"
    assert lines[2:] == [f"[{arg}]" for arg in runtime]

    # Unset or empty: the runtime is run directly, as before.
    seen.unlink()
    for value in ("", None):
        other = {k: v for k, v in env.items() if k != "XRAY_DAEMON_EXEC_WRAPPER"}
        if value is not None:
            other["XRAY_DAEMON_EXEC_WRAPPER"] = value
        p = run([str(wrapper), *runtime], env=other)
        assert p.stdout == "a b|*|127.0.0.1:2999\n" and not seen.exists()


def test_unpacked_extension_boots_in_lambda_and_exits_0_at_shutdown(tmp_path):
    root = unpack("x86_64", tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # As the Runtime Interface Emulator does: 202 Telemetry.NotSupported to the subscription.
    with FakeRuntime(telemetry=202) as runtime:
        env = {
            "AWS_LAMBDA_RUNTIME_API": runtime.address,
            "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "AKIDLAYERTEST", "AWS_SECRET_ACCESS_KEY": "layer-test",
            "AWS_SESSION_TOKEN": "token", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "XRAY_DAEMON_UDP_ADDRESS": f"127.0.0.1:{port}", "AWS_EC2_METADATA_DISABLED": "true",
            "XRAY_DAEMON_ENDPOINT": "http://127.0.0.1:9",
        }
        # Lambda starts /opt/extensions/<file> with that path as argv[0].
        p = subprocess.run([str(root / "extensions/xray-daemon")], env=env, capture_output=True, text=True, timeout=20)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    paths = [c.path for c in runtime.calls]
    assert paths == [REGISTER, TELEMETRY, NEXT], paths
    assert runtime.calls[0].header("Lambda-Extension-Name") == "xray-daemon"
    assert json.loads(runtime.calls[0].body) == {"events": ["INVOKE", "SHUTDOWN"]}
    assert "Got SHUTDOWN (spindown)" in out and "Shutdown finished" in out, out
