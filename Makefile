# xray-daemon: the two commands a newcomer needs are `make run` and `make test`.
# Everything they need is installed by the targets themselves (Python peers in target/venv,
# the Node SDK in target/node).

CARGO ?= cargo
BIN_DEBUG := target/debug/xray-daemon
BIN_RELEASE := target/release/xray-daemon
VENV := target/venv
PYTEST_ARGS ?= -q

.PHONY: all build release run test test-rust test-e2e test-chart peers bench bench-micro fmt lint clean

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

## test: unit + integration tests, end-to-end tests against moto and the official SDKs, Helm chart
test: test-rust test-e2e test-chart

test-rust:
	$(CARGO) test --all-targets

test-e2e: build peers
	XRAY_DAEMON_BIN=$(BIN_DEBUG) $(VENV)/bin/python -m pytest tests/e2e $(PYTEST_ARGS)

test-chart: peers
	$(VENV)/bin/python -m pytest tests/chart $(PYTEST_ARGS)

## bench: load test of the release binary (CPU, RSS, delivery per rate; table in target/bench/results.md),
## then the criterion micro-benchmarks of the hot path. About 10 minutes; not part of `make test`.
bench: release
	$(CARGO) run --release --example load -- --bench
	$(MAKE) bench-micro

bench-micro:
	$(CARGO) bench --bench hot_path -- --warm-up-time 1 --measurement-time 3

fmt:
	$(CARGO) fmt

lint:
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean
