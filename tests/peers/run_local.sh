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
# The moto peer needs target/venv (tests/e2e/setup.sh; run automatically when it is missing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ $# -lt 1 ]]; then
    echo "usage: $0 DAEMON_BIN [daemon args...]" >&2
    exit 2
fi
BIN="$1"
shift

if [[ -n "${AWS_ACCESS_KEY_ID:-}" || -f "${HOME:-/nonexistent}/.aws/credentials" ]]; then
    exec "$BIN" "$@"
fi

say() { printf '%s\n' "$*" >&2; }

VENV_PY="$ROOT/target/venv/bin/python"
if ! "$VENV_PY" -c 'import moto, boto3' >/dev/null 2>&1; then
    say "run_local: installing the test peers first (tests/e2e/setup.sh)"
    "$ROOT/tests/e2e/setup.sh" >&2
fi

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
)" || { say "run_local: moto failed to start, its log ($MOTO_LOG):"; cat "$MOTO_LOG" >&2; exit 1; }
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
say "run_local: moto (X-Ray API, SigV4 verified) on $MOTO_URL, pid $MOTO_PID, log $MOTO_LOG"
say "run_local: daemon $BIN on UDP $UDP, credentials: moto access key $AK"
say ""
say "# send one segment (one datagram: header, newline, document):"
say "python3 -c 'import socket,sys; socket.socket(socket.AF_INET,socket.SOCK_DGRAM).sendto(\"\\n\".join(sys.argv[1:3]).encode(),(sys.argv[3],int(sys.argv[4])))' '$HEADER' '$SEGMENT' $UDP_HOST $UDP_PORT"
say "# read it back (a partial batch is uploaded within ~1 s):"
say "AWS_ACCESS_KEY_ID=$AK AWS_SECRET_ACCESS_KEY=$SK AWS_REGION=us-east-1 ${P}target/venv/bin/python ${P}tests/peers/read_traces.py $MOTO_URL $TRACE_ID"
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
