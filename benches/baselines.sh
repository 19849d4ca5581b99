#!/usr/bin/env bash
# Release binaries of the commits `make bench` measures this build against (its `ab` part).
#
#   benches/baselines.sh OUT_DIR COMMIT...
#
# Builds each commit's `xray-daemon` into OUT_DIR/COMMIT/xray-daemon unless it is there already:
# a detached git worktree of the commit, built with one CARGO_TARGET_DIR shared by all of them, so
# their dependencies compile once (the first time takes several minutes a commit on 2 cores; after
# that nothing). Prints the `label=path` list for XRAY_BENCH_AB on stdout; cargo's output goes to
# stderr.
set -euo pipefail
out=$1
shift
mkdir -p "$out"
out=$(cd "$out" && pwd)
pairs=()
for commit in "$@"; do
    bin="$out/$commit/xray-daemon"
    if [ ! -x "$bin" ]; then
        echo "benches/baselines.sh: building $commit's release binary into $bin (once)" >&2
        tree="$out/worktree-$commit"
        git worktree remove --force "$tree" 2>/dev/null || rm -rf "$tree"
        git worktree add --detach --force "$tree" "$commit" >&2
        (cd "$tree" && CARGO_TARGET_DIR="$out/target" cargo build --release --locked --bin xray-daemon) >&2
        mkdir -p "$out/$commit"
        cp "$out/target/release/xray-daemon" "$bin"
        git worktree remove --force "$tree"
    fi
    pairs+=("$commit=$bin")
done
(IFS=,; echo "${pairs[*]}")
