#!/usr/bin/env bash
# `make test-simd`: tests/simd/skip_plain.rs (src/aws/trace_segments_body.rs as a module, with the `bytes`
# crate from cargo's registry) compiled by rustc alone for each static target and linked by rust-lld
# (part of the Rust toolchain: no C toolchain, no cargo build), then run: natively on x86_64 (SSE2),
# under qemu-aarch64-static on arm64 (NEON). Seconds, where the crate's unit tests for arm64 would
# compile the whole AWS SDK for arm64 first. Needs the two rustup targets and qemu-user-static
# (the Makefile installs them).
#
# `run.sh clippy` (part of `make lint`) compiles the same with clippy's lints as errors instead,
# and runs nothing: `cargo clippy` sees only the x86_64 build, not the NEON code.
set -euo pipefail
mode=${1:-test}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="$ROOT/target/simd-test"
cd "$ROOT"

# Where cargo unpacked the locked version of `bytes` (cargo metadata fetches it if need be).
bytes_src=$(cargo metadata --format-version 1 --locked --filter-platform aarch64-unknown-linux-musl \
    | python3 -c 'import json, sys
[path] = [p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "bytes"]
print(path.rsplit("/", 1)[0])')

# The release profile's level for this crate (opt-level 3), with the debug assertions and overflow
# checks of a test build.
rustc_flags=(--edition 2021 -C opt-level=3 -C debug-assertions=yes -C overflow-checks=yes
    -C linker=rust-lld -C linker-flavor=ld.lld)

for target in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
    mkdir -p "$OUT/$target"
    rustc "${rustc_flags[@]}" --target "$target" --crate-type rlib --crate-name bytes --cap-lints allow \
        --cfg 'feature="default"' --cfg 'feature="std"' --out-dir "$OUT/$target" "$bytes_src/src/lib.rs"
    if [ "$mode" = clippy ]; then
        echo "clippy-driver -D warnings tests/simd/skip_plain.rs --target $target"
        clippy-driver "${rustc_flags[@]}" --target "$target" --extern bytes="$OUT/$target/libbytes.rlib" \
            --emit=metadata -o "$OUT/$target/skip_plain.rmeta" -D warnings tests/simd/skip_plain.rs
    else
        rustc "${rustc_flags[@]}" --target "$target" --extern bytes="$OUT/$target/libbytes.rlib" \
            -o "$OUT/$target/skip_plain" tests/simd/skip_plain.rs
    fi
done
[ "$mode" = clippy ] && exit 0

"$OUT/x86_64-unknown-linux-musl/skip_plain"
qemu-aarch64-static "$OUT/aarch64-unknown-linux-musl/skip_plain"
