#!/usr/bin/env bash
# Times `make run` as a new user meets it: how long from `make run` to the daemon's
# "Listening on UDP" line, and how much of that is the build and the moto install.
#
#   tests/peers/time_make_run.sh [DIR]
#
# DIR defaults to a fresh clone of this repository's HEAD in a temporary directory (empty target/).
# pip's cache is off (PIP_NO_CACHE_DIR), so moto is downloaded as on a new machine; cargo's registry
# (~/.cargo) is whatever this machine has. Every output line of `make run` is printed with the seconds
# since the start; the daemon is stopped with SIGINT once it listens (at most TIMEOUT seconds, default
# 3600). Prints the load average before and after, and the number of other rustc processes.
# Without AWS credentials in the environment or ~/.aws/credentials, so that moto is part of it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DIR="${1:-}"
TIMEOUT="${TIMEOUT:-3600}"
if [[ -z "$DIR" ]]; then
    DIR="$(mktemp -d "${TMPDIR:-/tmp}/xray-make-run.XXXXXX")"
    git clone -q "$ROOT" "$DIR"
    echo "time_make_run: fresh clone of $(git -C "$ROOT" rev-parse --short HEAD) in $DIR"
fi
export PIP_NO_CACHE_DIR=1
LOG="$(mktemp "${TMPDIR:-/tmp}/xray-make-run.XXXXXX.log")"
echo "time_make_run: before: $(uptime), $(pgrep -c rustc || true) rustc processes"

us() { local t="${EPOCHREALTIME/[.,]/}"; echo "$t"; }  # microseconds since the epoch (bash 5)
start="$(us)"
PIDFILE="$LOG.pid"
# make run in a session of its own (one SIGINT to its process group stops make, run_local.sh, moto and
# the daemon), each line stamped with the seconds since start
(
    cd "$DIR"
    # shellcheck disable=SC2016  # $$ and $1 are the inner shell's
    setsid bash -c 'echo $$ >"$1"; exec make run' _ "$PIDFILE" 2>&1 | while IFS= read -r line; do
        t=$(( $(us) - start ))
        printf '%5d.%d %s\n' $((t / 1000000)) $((t % 1000000 / 100000)) "$line"
    done >"$LOG"
) &
runner=$!

listening=""
deadline=$((SECONDS + TIMEOUT))
while ((SECONDS < deadline)) && kill -0 "$runner" 2>/dev/null; do
    if listening="$(grep -m 1 ' Listening on UDP ' "$LOG")"; then break; fi
    sleep 0.2
done
after="$(uptime), $(pgrep -c rustc || true) rustc processes"
if [[ -s "$PIDFILE" ]]; then kill -INT -- "-$(cat "$PIDFILE")" 2>/dev/null || true; fi
wait "$runner" || true
cat "$LOG"
echo "time_make_run: after: $after"

[[ -n "$listening" ]] || { echo "time_make_run: no 'Listening on UDP' line within $TIMEOUT s" >&2; exit 1; }
at() { grep -m 1 -e "$1" "$LOG" | awk '{ print $1 }'; }
built="$(at 'Finished .dev. profile')"
moto_from="$(at 'make run: no AWS credentials')"
moto_to="$(at 'make run: moto (X-Ray API')"
echo "time_make_run: build done at ${built:-?} s (cargo's Finished line)"
echo "time_make_run: moto installed if needed and started from ${moto_from:-?} s to ${moto_to:-?} s"
echo "time_make_run: total to 'Listening on UDP' $(awk '{ print $1 }' <<<"$listening") s"
rm -f "$LOG" "$PIDFILE"
