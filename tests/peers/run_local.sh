#!/usr/bin/env bash
# Runs the daemon locally (what `make run` calls).
#
#   tests/peers/run_local.sh DAEMON_BIN [daemon args...]
#
# * AWS credentials configured (AWS_ACCESS_KEY_ID in the environment, or ~/.aws/credentials):
#   execs DAEMON_BIN with the given args, nothing else.
# * Otherwise: starts moto (X-Ray API, SigV4 verification on) on a free loopback port from 4566 up,
#   creates an access key in it, prints (to stderr) copy-paste commands to send a segment and read it
#   back, then runs DAEMON_BIN against moto on UDP ${XRAY_DAEMON_UDP_ADDRESS:-127.0.0.1:2000}
#   (-o is added unless given). moto is stopped when the daemon exits; SIGINT/SIGTERM/SIGHUP given to
#   this script are passed on to the daemon as SIGTERM, and the daemon's exit code is returned.
# moto comes from target/venv-run, installed there alone from tests/peers/requirements-run.txt the first
# time (or again when that file changes), or from the test venv target/venv when it already has it:
# never the other test peers. Each step prints one `make run:` line saying what it does and why.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ $# -lt 1 ]]; then
    echo "usage: $0 DAEMON_BIN [daemon args...]" >&2
    exit 2
fi
BIN="$1"
shift

say() { printf '%s\n' "$*" >&2; }
note() { say "make run: $*"; }
die() { note "$*"; exit 1; }

if [[ -n "${AWS_ACCESS_KEY_ID:-}" || -f "${HOME:-/nonexistent}/.aws/credentials" ]]; then
    note "AWS credentials found, the daemon sends to AWS X-Ray (nothing to install)"
    exec "$BIN" "$@"
fi
note "no AWS credentials, starting a local X-Ray API (moto)"

# --- moto: target/venv-run (requirements-run.txt), else the test venv, else install target/venv-run ----
RUN_REQS="$ROOT/tests/peers/requirements-run.txt"
RUN_VENV="$ROOT/target/venv-run"
RUN_STAMP="$RUN_VENV/.requirements-run.sha256"
# moto, its X-Ray extra (aws_xray_sdk), its server's Flask and boto3 in venv $1 (found, not imported: that takes seconds)
has_moto() {
    "$1/bin/python" -c 'import importlib.util as u, sys
sys.exit(not all(u.find_spec(m) for m in ("moto", "boto3", "flask", "flask_cors", "aws_xray_sdk")))' >/dev/null 2>&1
}
run_hash="$(sha256sum <"$RUN_REQS" | cut -d' ' -f1)"
if [[ -f "$RUN_STAMP" && "$(cat "$RUN_STAMP")" == "$run_hash" ]] && has_moto "$RUN_VENV"; then
    VENV="$RUN_VENV"
    note "moto already installed in target/venv-run"
elif has_moto "$ROOT/target/venv"; then
    VENV="$ROOT/target/venv"
    note "moto already installed in the test venv, target/venv"
else
    command -v python3 >/dev/null \
        || die "python3 is missing: install it (apt-get install python3 python3-venv), or configure AWS credentials to send to AWS X-Ray"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null \
        || die "moto needs Python 3.9 or newer, python3 is $(python3 --version 2>&1): install a newer python3 (with python3-venv)"
    note "installing moto alone into target/venv-run (tests/peers/requirements-run.txt), once: about half a minute"
    rm -rf "$RUN_VENV"
    mkdir -p "$ROOT/target"
    RUN_LOG="$ROOT/target/venv-run.log"
    if ! python3 -m venv "$RUN_VENV" >"$RUN_LOG" 2>&1 || ! "$RUN_VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        rm -rf "$RUN_VENV"
        die "python3 cannot create a virtualenv with pip (target/venv-run.log): install python3-venv (apt-get install python3-venv)"
    fi
    if ! "$RUN_VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$RUN_REQS" >"$RUN_LOG" 2>&1; then
        rm -rf "$RUN_VENV"
        die "pip could not install tests/peers/requirements-run.txt from PyPI ($(grep -m 1 '^ERROR' "$RUN_LOG" || tail -n 1 "$RUN_LOG")); its output: target/venv-run.log"
    fi
    has_moto "$RUN_VENV" || die "moto is not in target/venv-run after pip install (target/venv-run.log)"
    echo "$run_hash" >"$RUN_STAMP"
    VENV="$RUN_VENV"
fi
VENV_PY="$VENV/bin/python"

# --- moto on a free loopback port (4566, 4567, ... else any) ------------------------------------------
MOTO_PORT="$("$VENV_PY" - <<'PY'
import socket
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        return s.getsockname()[1]
    except OSError:
        return None
    finally:
        s.close()
print(next((p for p in range(4566, 4600) if free(p)), None) or free(0))
PY
)"
MOTO_URL="http://127.0.0.1:$MOTO_PORT"
MOTO_LOG="$(mktemp "${TMPDIR:-/tmp}/xray-run-local-moto.XXXXXX.log")"
INITIAL_NO_AUTH_ACTION_COUNT=3 "$VENV_PY" "$ROOT/tests/peers/moto_xray_plus.py" -H 127.0.0.1 -p "$MOTO_PORT" \
    >"$MOTO_LOG" 2>&1 &
MOTO_PID=$!
DPID=""
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    if [[ -n "$DPID" ]]; then kill -TERM "$DPID" 2>/dev/null || true; fi
    kill -TERM "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
}
trap cleanup EXIT

# wait for moto (bounded), create the key (uses the 3 unauthenticated calls), warm up the X-Ray backend
KEY_ENV="$(PYTHONPATH="$ROOT/tests/peers" "$VENV_PY" - "$MOTO_URL" "$MOTO_PID" <<'PY'
import os, sys, time, urllib.request
import boto3                                   # imported while moto boots
from moto_bootstrap_key import bootstrap
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.time() + 30
while True:
    try:
        urllib.request.urlopen(url + "/moto-api/", timeout=1).read()
        break
    except Exception:
        try:
            os.kill(pid, 0)
        except OSError:
            sys.exit("moto exited during start-up")
        if time.time() > deadline:
            sys.exit("moto did not answer within 30 s")
        time.sleep(0.1)
ak, sk = bootstrap(url)
boto3.client("xray", endpoint_url=url, region_name="us-east-1", aws_access_key_id=ak,
             aws_secret_access_key=sk).batch_get_traces(TraceIds=["1-00000000-000000000000000000000000"])
print(f"{ak} {sk}")
PY
)" || { note "moto failed to start, its log ($MOTO_LOG):"; cat "$MOTO_LOG" >&2; exit 1; }
read -r AK SK <<<"$KEY_ENV"

# --- daemon environment: only moto, never a real AWS account -----------------------------------------
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_ROLE_ARN AWS_WEB_IDENTITY_TOKEN_FILE \
      AWS_CONTAINER_CREDENTIALS_RELATIVE_URI AWS_CONTAINER_CREDENTIALS_FULL_URI AWS_ENDPOINT_URL 2>/dev/null || true
export AWS_ACCESS_KEY_ID="$AK" AWS_SECRET_ACCESS_KEY="$SK" AWS_REGION=us-east-1
export AWS_ENDPOINT_URL_XRAY="$MOTO_URL"
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true
export XRAY_DAEMON_UDP_ADDRESS="${XRAY_DAEMON_UDP_ADDRESS:-127.0.0.1:2000}"

UDP="$XRAY_DAEMON_UDP_ADDRESS"
local_mode=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[$i]}" in
        -b|--bind|-bind) UDP="${args[$((i + 1))]:-$UDP}" ;;
        -b=*|--bind=*|-bind=*) UDP="${args[$i]#*=}" ;;
        -o|-o=*|--local-mode|--local-mode=*|-local-mode|-local-mode=*) local_mode=1 ;;
    esac
done
[[ -n "$local_mode" ]] || args=(-o "${args[@]}")
UDP_HOST="${UDP%:*}"
UDP_PORT="${UDP##*:}"
case "$UDP_HOST" in 0.0.0.0|""|"[::]") UDP_HOST=127.0.0.1 ;; esac

# --- copy-paste commands -----------------------------------------------------------------------------
NOW="$(date +%s)"
TRACE_ID="1-$(printf %08x "$NOW")-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
SEG_ID="$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
HEADER='{"format":"json","version":1}'
SEGMENT="{\"trace_id\":\"$TRACE_ID\",\"id\":\"$SEG_ID\",\"name\":\"run-local\",\"start_time\":$NOW.000,\"end_time\":$NOW.100}"
if [[ "$PWD" == "$ROOT" ]]; then P=""; else P="$ROOT/"; fi
say ""
note "moto (X-Ray API, SigV4 verified) on $MOTO_URL, pid $MOTO_PID, log $MOTO_LOG"
note "daemon $BIN on UDP $UDP, credentials: moto access key $AK"
say ""
say "# send one segment (one datagram: header, newline, document):"
say "python3 -c 'import socket,sys; socket.socket(socket.AF_INET,socket.SOCK_DGRAM).sendto(\"\\n\".join(sys.argv[1:3]).encode(),(sys.argv[3],int(sys.argv[4])))' '$HEADER' '$SEGMENT' $UDP_HOST $UDP_PORT"
say "# read it back (a partial batch is uploaded within ~1 s):"
say "AWS_ACCESS_KEY_ID=$AK AWS_SECRET_ACCESS_KEY=$SK AWS_REGION=us-east-1 ${P}${VENV#"$ROOT/"}/bin/python ${P}tests/peers/read_traces.py $MOTO_URL $TRACE_ID"
say ""

# --- run the daemon; moto goes when it goes ----------------------------------------------------------
"$BIN" "${args[@]}" &
DPID=$!
trap 'kill -TERM "$DPID" 2>/dev/null || true' INT TERM HUP
set +e
rc=0
while :; do
    wait "$DPID"
    rc=$?
    kill -0 "$DPID" 2>/dev/null || break   # still running: wait was interrupted by a forwarded signal
done
if ((rc > 128)); then                      # a signal may have cut the last wait short: get the real status
    wait "$DPID" 2>/dev/null
    r2=$?
    ((r2 != 127)) && rc=$r2
fi
DPID=""
exit "$rc"
