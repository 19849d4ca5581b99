"""The Lambda layer zips (`extension/build_layer.py`), unpacked and run as Lambda would.

Zips: $XRAY_DAEMON_LAYER_X86_64 and $XRAY_DAEMON_LAYER_ARM64 (`make layer` builds both from the
static release binaries; `make test` builds the x86_64 one from a static debug build and
deselects the arm64 tests, `-m "not arm64"`, since a second cross build costs CI ~10 minutes).

Checks: the zip's entries and modes, the binary is a static ELF for its machine that needs no
glibc at all (so it runs on Amazon Linux 2's glibc 2.26 and AL2023 alike), `--version` runs
(arm64 under qemu-aarch64-static), the wrapper script points SDKs at the extension (the real
Python SDK included, on an IPv6 address) and runs other wrappers after it if asked to, and the unpacked x86_64 extension boots against a minimal Runtime API,
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


def stand_in_wrapper(path, trail, name, exports):
    """A stand-in for another layer's exec wrapper (ADOT's /opt/otel-instrument, Datadog's
    /opt/datadog_wrapper): appends to `trail` its name, the addresses ours exported, whether
    XRAY_DAEMON_EXEC_WRAPPER reached it and its arguments; exports its own variables; runs "$@"."""
    sets = "".join(f"export {k}={v}\n" for k, v in exports.items())
    path.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        {{
          echo "{name}: $AWS_XRAY_DAEMON_ADDRESS $_AWS_XRAY_DAEMON_ADDRESS $_AWS_XRAY_DAEMON_PORT"
          echo "{name}: ${{OTEL_STAND_IN-unset}} ${{XRAY_DAEMON_EXEC_WRAPPER-unset}}"
          printf '{name}: [%s]\\n' "$@"
        }} >> {trail}
        """) + sets + 'exec "$@"\n')
    path.chmod(0o755)
    return path


def test_wrapper_runs_the_next_wrappers_in_order_with_the_runtimes_command_line(tmp_path):
    """XRAY_DAEMON_EXEC_WRAPPER (e.g. ADOT's /opt/otel-instrument, then Datadog's wrapper) runs
    after ours, as Lambda runs a wrapper: each with the rest of the list and the runtime's command
    line, seeing the addresses ours exported and the variables the wrapper before it exported."""
    wrapper = unpack("x86_64", tmp_path) / "xray-daemon/wrapper"
    trail = tmp_path / "trail"
    otel = stand_in_wrapper(tmp_path / "otel-instrument", trail, "otel", {"OTEL_STAND_IN": "from-otel"})
    dd = stand_in_wrapper(tmp_path / "datadog_wrapper", trail, "dd", {"DD_STAND_IN": "from-dd"})
    env = {
        "PATH": os.environ["PATH"], "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000",
        "XRAY_DAEMON_UDP_ADDRESS": "127.0.0.1:2999", "XRAY_DAEMON_EXEC_WRAPPER": f"{otel} {dd}",
    }
    show = 'echo "$0|$1|$AWS_XRAY_DAEMON_ADDRESS|$OTEL_STAND_IN|$DD_STAND_IN|${XRAY_DAEMON_EXEC_WRAPPER-unset}"'
    runtime = ["sh", "-c", show, "a b", "*"]
    p = run([str(wrapper), *runtime], env=env)
    assert p.returncode == 0, p.stderr
    # The runtime runs last, with its arguments unchanged (a space, a glob), our address and both
    # wrappers' variables.
    assert p.stdout == "a b|*|127.0.0.1:2999|from-otel|from-dd|unset\n"
    assert trail.read_text().splitlines() == [
        # First ADOT's stand-in, with our addresses, and Datadog's and the runtime as its arguments.
        "otel: 127.0.0.1:2999 127.0.0.1 2999",
        # Not passed on: a wrapper that points back at ours cannot loop.
        "otel: unset unset",
        *[f"otel: [{arg}]" for arg in [str(dd), *runtime]],
        # Then Datadog's, with our addresses and ADOT's variable.
        "dd: 127.0.0.1:2999 127.0.0.1 2999",
        "dd: from-otel unset",
        *[f"dd: [{arg}]" for arg in runtime],
    ]

    # One wrapper, the usual case with ADOT.
    trail.unlink()
    p = run([str(wrapper), *runtime], env={**env, "XRAY_DAEMON_EXEC_WRAPPER": str(otel)})
    assert p.stdout == "a b|*|127.0.0.1:2999|from-otel||unset\n", p.stderr
    assert [line for line in trail.read_text().splitlines() if not line.startswith("otel: [")] == [
        "otel: 127.0.0.1:2999 127.0.0.1 2999", "otel: unset unset"]

    # Unset or empty: the runtime is run directly, as before.
    trail.unlink()
    for value in ("", None):
        other = {k: v for k, v in env.items() if k != "XRAY_DAEMON_EXEC_WRAPPER"}
        if value is not None:
            other["XRAY_DAEMON_EXEC_WRAPPER"] = value
        p = run([str(wrapper), *runtime], env=other)
        assert p.stdout == f"a b|*|127.0.0.1:2999|||{'unset' if value is None else ''}\n" and not trail.exists()


def test_a_next_wrapper_that_is_missing_stops_the_start_and_names_it(tmp_path):
    """A layer left off the function: the runtime does not start untraced; the log says which."""
    wrapper = unpack("x86_64", tmp_path) / "xray-daemon/wrapper"
    otel = stand_in_wrapper(tmp_path / "otel-instrument", tmp_path / "trail", "otel", {})
    ran = tmp_path / "ran"
    for listed in (f"{otel} /opt/datadog_wrapper", f"{otel} {tmp_path}"):
        env = {"PATH": os.environ["PATH"], "XRAY_DAEMON_EXEC_WRAPPER": listed}
        p = run([str(wrapper), "touch", str(ran)], env=env)
        missing = listed.split()[1]
        assert p.returncode == 127, p
        assert p.stderr == (f"xray-daemon wrapper: XRAY_DAEMON_EXEC_WRAPPER: {missing} is not an executable file "
                            "(is its layer added to the function?)\n")
        assert not ran.exists() and not (tmp_path / "trail").exists()


def wrapped_env(wrapper, udp, **extra):
    """The environment the runtime gets from our wrapper, and what the wrapper wrote to stderr."""
    env = {"PATH": os.environ["PATH"], "XRAY_DAEMON_UDP_ADDRESS": udp, **extra}
    p = run([str(wrapper), "env"], env=env)
    assert p.returncode == 0, p.stderr
    return dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line), p.stderr


def test_wrapper_gives_the_sdks_an_address_without_brackets(tmp_path):
    """The X-Ray SDKs split AWS_XRAY_DAEMON_ADDRESS on ':' and send over IPv4 only. A wildcard
    becomes 127.0.0.1 (the extension's [::] socket takes IPv4 too); any other IPv6 address loses
    its brackets, and a warning says the SDKs cannot use it."""
    wrapper = unpack("x86_64", tmp_path) / "xray-daemon/wrapper"
    for udp in ("[::]:2999", "[0:0:0:0:0:0:0:0]:2999", "0.0.0.0:2999"):
        got, stderr = wrapped_env(wrapper, udp)
        assert (got["AWS_XRAY_DAEMON_ADDRESS"], got["_AWS_XRAY_DAEMON_ADDRESS"], got["_AWS_XRAY_DAEMON_PORT"]) == (
            "127.0.0.1:2999", "127.0.0.1", "2999"), udp
        assert stderr == "", udp
    got, _ = wrapped_env(wrapper, "[::]:2999", XRAY_DAEMON_LAMBDA_PROXY="true", XRAY_DAEMON_TCP_ADDRESS="[::]:2001")
    assert got["AWS_XRAY_DAEMON_ADDRESS"] == "tcp:127.0.0.1:2001 udp:127.0.0.1:2999"
    got, _ = wrapped_env(wrapper, "[::]:2999", XRAY_DAEMON_LAMBDA_PROXY="true", XRAY_DAEMON_TCP_ADDRESS="[::]:2999")
    assert got["AWS_XRAY_DAEMON_ADDRESS"] == "127.0.0.1:2999"

    got, stderr = wrapped_env(wrapper, "[::1]:2999")
    assert (got["AWS_XRAY_DAEMON_ADDRESS"], got["_AWS_XRAY_DAEMON_ADDRESS"], got["_AWS_XRAY_DAEMON_PORT"]) == (
        "::1:2999", "::1", "2999")
    assert stderr == ("xray-daemon wrapper: XRAY_DAEMON_UDP_ADDRESS=[::1]:2999 is an IPv6 address: "
                      "AWS_XRAY_DAEMON_ADDRESS=::1:2999, which the X-Ray SDKs and ADOT cannot use (they send over "
                      "IPv4); use [::]:2999, which takes IPv4 too, or 127.0.0.1:2999\n")
    # The warning is true: the real Python SDK refuses the address when it is imported.
    sdk = run([sys.executable, "-c", "import aws_xray_sdk.core"], env={**got, "PATH": os.environ["PATH"]})
    assert sdk.returncode != 0 and "InvalidDaemonAddressException: Invalid daemon address ::1:2999" in sdk.stderr


def test_the_python_sdk_reaches_an_ipv6_wildcard_address_through_the_wrapper(tmp_path):
    """With XRAY_DAEMON_UDP_ADDRESS=[::]:P, the real Python X-Ray SDK, started through our wrapper
    in Lambda, parses the address it is given and its subsegments arrive at a dual-stack [::]:P
    socket, as the extension binds one."""
    wrapper = unpack("x86_64", tmp_path) / "xray-daemon/wrapper"
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", 0))
        port = sock.getsockname()[1]
        env = {
            "PATH": os.environ["PATH"], "XRAY_DAEMON_UDP_ADDRESS": f"[::]:{port}",
            "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000", "LAMBDA_TASK_ROOT": str(tmp_path),
            "_X_AMZN_TRACE_ID": "Root=1-6b070b79-0569466be525d635fc13733e;Parent=53995c3f42cd8ad8;Sampled=1",
        }
        capture = tmp_path / "capture.json"
        emit = [sys.executable, str(ROOT / "tests/peers/py_emit.py"), "--capture", str(capture)]
        p = run([str(wrapper), *emit], env=env)
        assert p.returncode == 0, p.stdout + p.stderr
        sent = json.loads(capture.read_text())
        assert sent["daemon_address"] == f"127.0.0.1:{port}"
        assert {(d["ip"], d["port"], d["error"]) for d in sent["datagrams"]} == {("127.0.0.1", port, None)}
        sock.settimeout(5)
        names = set()
        for _ in sent["datagrams"]:
            data, _ = sock.recvfrom(65535)
            header, body = data.split(b"\n", 1)
            assert json.loads(header) == {"format": "json", "version": 1}
            names.add(json.loads(body)["name"])
    assert names == {"lambda-sub-1", "lambda-sub-nested", "lambda-sub-2"}, names


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
