"""Markers of tests/layer. `make test` deselects `arm64` (no arm64 build in CI) and `release`
(the size limit holds for release builds only); `make layer` runs them all."""


def pytest_configure(config):
    config.addinivalue_line("markers", "arm64: needs the arm64 layer ($XRAY_DAEMON_LAYER_ARM64) and qemu-aarch64-static")
    config.addinivalue_line("markers", "release: needs a layer built from the release profile")
