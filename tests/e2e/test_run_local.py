"""tests/peers/run_local.sh (what `make run` calls) without AWS credentials: it starts a verifying moto,
runs the daemon against it, and the commands it prints really send a segment and read it back."""
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import LOOPBACK, PEERS, ROOT, LoggedProcess, base_env, daemon_bin, free_port


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
