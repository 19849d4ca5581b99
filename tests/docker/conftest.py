"""Markers of tests/docker. `make test` deselects the `arm64` tests (-m "not arm64"): CI builds
only the x86_64 static binary; `make test-release` runs them all on `make static`'s release
binaries."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "arm64: needs the arm64 static binary ($XRAY_DAEMON_IMAGE_BIN_ARM64) and qemu-aarch64-static")
