"""Lambda extension cold start, against a fake Runtime API on loopback.

    python3 benches/lambda_cold_start.py BINARY [LAYER_ZIP] [--runs N]

Each run starts BINARY with `posix_spawn` (as Lambda starts it: argv[0] its path, the Lambda
environment variables), taking the CLOCK_MONOTONIC time just before the call. The fake
(`tests/peers/fake_runtime.py`, on the same clock) notes the arrival of `register` and of the first
`/event/next`. So "exec →" counts the clone and the kernel's exec, the runtime start-up, binding the
ports and the calls themselves. (`posix_spawn` shares the harness's memory until the exec, as
`vfork` does. A `fork` would copy the page tables of this Python process, and the exec would then
spend milliseconds tearing them down: time that belongs to the harness, not to the extension.) The
fake answers the Telemetry API subscription with 200, then SHUTDOWN on the first /next, and the run
ends when the process exits.

As a floor for this machine it also times the same spawn → exit of a static program that does
nothing (`BINARY --version`, which exits before the runtime starts). Prints markdown tables
(min, median, p90, max over the runs) and the binary and layer sizes.
"""
import argparse
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "peers"))
from fake_runtime import NEXT, REGISTER, FakeRuntime  # noqa: E402


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(argv, env):
    """posix_spawn(argv); returns (pid, the clock just before the call, stderr file)."""
    err = tempfile.TemporaryFile()
    actions = [(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0), (os.POSIX_SPAWN_DUP2, err.fileno(), 2)]
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    return pid, t0, err


def wait(pid, err, what):
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        err.seek(0)
        sys.exit(f"{what} failed (exit {code}): {err.read().decode(errors='replace')}")
    return time.perf_counter()


def one_run(binary, runtime):
    runtime.calls.clear()
    env = {
        "AWS_LAMBDA_RUNTIME_API": runtime.address, "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIDBENCH", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_SESSION_TOKEN": "token",
        "AWS_LAMBDA_FUNCTION_NAME": "bench", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "XRAY_DAEMON_UDP_ADDRESS": f"127.0.0.1:{free_udp_port()}", "XRAY_DAEMON_ENDPOINT": "http://127.0.0.1:9",
        "XRAY_DAEMON_LOG_LEVEL": "warn", "PATH": os.environ.get("PATH", ""),
    }
    pid, t0, err = spawn([binary], env)
    wait(pid, err, "run")
    register, first_next = runtime.first(REGISTER), runtime.first(NEXT)
    if not (register and first_next):
        sys.exit(f"run made the calls {[c.path for c in runtime.calls]}")
    return (register.at - t0) * 1000, (first_next.at - t0) * 1000


def floor_run(binary):
    pid, t0, err = spawn([binary, "--version"], {})
    return (wait(pid, err, "--version") - t0) * 1000


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
    binary = str(Path(a.binary).resolve())
    registered, first_next, floor = [], [], []
    with FakeRuntime() as runtime:
        one_run(binary, runtime)  # warm the page cache
        for _ in range(a.runs):
            r, n = one_run(binary, runtime)
            registered.append(r)
            first_next.append(n)
            floor.append(floor_run(binary))
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
    print(f"Lambda extension cold start, {a.runs} runs, fake Runtime API on loopback; {os.cpu_count()} cores ({cpu}), "
          f"load average {os.getloadavg()[0]:.1f}; binary {a.binary}\n")
    print("| exec → | min ms | median ms | p90 ms | max ms |")
    print("|---|---|---|---|---|")
    print(row("registered", registered))
    print(row("first /next", first_next))
    print(row("exit of `--version` (this machine's floor)", floor))
    print()
    print(f"| artefact | bytes | MB |\n|---|---|---|")
    size = Path(a.binary).stat().st_size
    print(f"| binary ({Path(a.binary).name}) | {size} | {size / 1e6:.2f} |")
    if a.layer:
        z = Path(a.layer).stat().st_size
        print(f"| layer zip ({Path(a.layer).name}) | {z} | {z / 1e6:.2f} |")


if __name__ == "__main__":
    main()
