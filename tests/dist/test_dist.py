"""`make dist` (release/dist.py), the layer publishing script and the release workflow, offline.

release/dist.py is run as `make dist` runs it, on the static binaries given by
$XRAY_DAEMON_DIST_BIN_X86_64 (default `make static`'s) and, when set, $XRAY_DAEMON_DIST_BIN_ARM64.
`make test` (test-packaging) runs it on the static x86_64 debug build only; the tests marked
`arm64` need the arm64 binary. The tests read what it wrote as a user would: the names, the
`sha256sum -c` check, the OCI archive's index, manifests, config and layer (the files in the
image), and the chart archive rendered by Helm's engine.

extension/publish_layer.sh runs against a fake `aws` command that records its arguments, so
no AWS account is needed. The release workflow is checked with actionlint by `make lint`.
"""

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "xray-daemon"
IMAGE = "ghcr.io/xray-daemon/xray-daemon"
REVISION = "0123456789abcdef0123456789abcdef01234567"
CREATED = "2026-01-02T03:04:05Z"
OCI_ARCH = {"x86_64": "amd64", "arm64": "arm64"}


def cargo_version():
    return re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M).group(1)


VERSION = cargo_version()


def binaries():
    bins = {"x86_64": os.environ.get("XRAY_DAEMON_DIST_BIN_X86_64",
                                     "target/x86_64-unknown-linux-musl/release/xray-daemon")}
    if os.environ.get("XRAY_DAEMON_DIST_BIN_ARM64"):
        bins["arm64"] = os.environ["XRAY_DAEMON_DIST_BIN_ARM64"]
    bins = {arch: (Path(p) if Path(p).is_absolute() else ROOT / p) for arch, p in bins.items()}
    for arch, p in bins.items():
        assert p.is_file(), f"no {arch} binary at {p}: make static-test or make static"
    return bins


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    (out / "stale-file").write_text("from an earlier run")
    # copies: another build may replace a binary in target/ while the tests run
    bins = {}
    for arch, path in binaries().items():
        bins[arch] = tmp_path_factory.mktemp("bin") / f"xray-daemon-{arch}"
        shutil.copy2(path, bins[arch])
    p = subprocess.run([sys.executable, str(ROOT / "release" / "dist.py"), "--out", str(out), "--version", VERSION,
                        "--revision", REVISION, "--created", CREATED, "--image", IMAGE,
                        "--buildah-root", str(tmp_path_factory.mktemp("buildah")),
                        *[f"{arch}={path}" for arch, path in bins.items()]],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    return out, bins


def expected_names(arches):
    names = {"SHA256SUMS", f"xray-daemon-image-{VERSION}.oci.tar", f"xray-daemon-{VERSION}.tgz"}
    for arch in arches:
        names |= {f"xray-daemon-{VERSION}-linux-{arch}", f"xray-daemon-layer-{VERSION}-{arch}.zip"}
    return names


def test_dist_holds_the_release_files_and_nothing_else(dist):
    out, bins = dist
    assert {p.name for p in out.iterdir()} == expected_names(bins)


def test_sha256sums_lists_every_file_and_checks(dist):
    out, bins = dist
    lines = (out / "SHA256SUMS").read_text().splitlines()
    names = [re.fullmatch(r"[0-9a-f]{64}  (\S+)", line).group(1) for line in lines]
    assert names == sorted(expected_names(bins) - {"SHA256SUMS"}), lines
    p = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.count(": OK") == len(names), p.stdout + p.stderr
    # and it can fail
    victim = out / names[0]
    data = victim.read_bytes()
    try:
        victim.write_bytes(data + b"x")
        assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=out, capture_output=True).returncode == 1
    finally:
        victim.write_bytes(data)


def test_binaries_and_layers_hold_the_given_binaries(dist):
    out, bins = dist
    for arch, binary in bins.items():
        b = out / f"xray-daemon-{VERSION}-linux-{arch}"
        assert b.read_bytes() == binary.read_bytes() and b.stat().st_mode & 0o777 == 0o755
        with zipfile.ZipFile(out / f"xray-daemon-layer-{VERSION}-{arch}.zip") as z:
            assert z.read("extensions/xray-daemon") == binary.read_bytes()
            assert (z.getinfo("extensions/xray-daemon").external_attr >> 16) & 0o777 == 0o755


class Oci:
    """An OCI image layout in a tar: blobs by digest."""

    def __init__(self, path):
        self.tar = tarfile.open(path)

    def json(self, name):
        return json.load(self.tar.extractfile(name))

    def blob(self, digest):
        data = self.tar.extractfile("blobs/" + digest.replace(":", "/")).read()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest, f"blob {digest} does not match its digest"
        return data


def test_oci_archive_is_one_multi_arch_image_with_the_labels(dist):
    out, bins = dist
    oci = Oci(out / f"xray-daemon-image-{VERSION}.oci.tar")
    (top,) = oci.json("index.json")["manifests"]
    assert top["annotations"]["org.opencontainers.image.ref.name"] == f"{IMAGE}:{VERSION}"
    assert top["mediaType"] == "application/vnd.oci.image.index.v1+json"
    index = json.loads(oci.blob(top["digest"]))
    platforms = {(m["platform"]["os"], m["platform"]["architecture"]): m for m in index["manifests"]}
    assert set(platforms) == {("linux", OCI_ARCH[a]) for a in bins}
    for arch, binary in bins.items():
        manifest = json.loads(oci.blob(platforms[("linux", OCI_ARCH[arch])]["digest"]))
        config = json.loads(oci.blob(manifest["config"]["digest"]))
        assert config["architecture"] == OCI_ARCH[arch] and config["os"] == "linux"
        labels = config["config"]["Labels"]
        assert labels["org.opencontainers.image.version"] == VERSION
        assert labels["org.opencontainers.image.revision"] == REVISION
        assert labels["org.opencontainers.image.created"] == CREATED
        for key in ("url", "documentation", "vendor", "source", "licenses"):
            assert labels.get(f"org.opencontainers.image.{key}"), (key, labels)
        assert config["config"]["Entrypoint"] == ["/xray-daemon"]
        assert "XRAY_DAEMON_TCP_ADDRESS=0.0.0.0:2000" in config["config"]["Env"]
        assert config["created"].startswith(CREATED[:-1]), config["created"]  # the commit's time, not now
        # the image's files: the binary given, as /xray-daemon
        files = {}
        for layer in manifest["layers"]:
            raw = oci.blob(layer["digest"])
            raw = gzip.decompress(raw) if layer["mediaType"].endswith("gzip") else raw
            with tarfile.open(fileobj=io.BytesIO(raw)) as t:
                files.update({m.name.lstrip("./"): t.extractfile(m).read() for m in t.getmembers() if m.isfile()})
        assert files["xray-daemon"] == binary.read_bytes()
        assert "etc/ssl/certs/ca-certificates.crt" in files


def test_chart_archive_renders_with_the_version(dist):
    import helm_python as helm

    out, _ = dist
    tgz = out / f"xray-daemon-{VERSION}.tgz"
    with tarfile.open(tgz) as t:
        names = t.getnames()
        meta = yaml.safe_load(t.extractfile("xray-daemon/Chart.yaml"))
    assert all(n.startswith("xray-daemon/") for n in names) and "xray-daemon/values.schema.json" in names
    assert (meta["version"], meta["appVersion"]) == (VERSION, VERSION)
    with helm.Chart.load_archive(tgz.read_bytes()) as chart:
        manifests = chart.render({"region": "us-east-1"}, name="xray-daemon", namespace="default")
    docs = [d for path, text in manifests.items() if path.endswith(".yaml") for d in yaml.safe_load_all(text) if d]
    (ds,) = [d for d in docs if d["kind"] == "DaemonSet"]
    assert ds["spec"]["template"]["spec"]["containers"][0]["image"] == f"{IMAGE}:{VERSION}"


def test_one_version_everywhere():
    """Cargo.toml's version is the chart's version and appVersion, the Dockerfile's default, the
    image the examples run; `--version` prints it (tests/docker) from CARGO_PKG_VERSION."""
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (meta["version"], meta["appVersion"]) == (VERSION, VERSION), "helm/xray-daemon/Chart.yaml"
    assert re.search(rf"^ARG VERSION={re.escape(VERSION)}$", (ROOT / "docker" / "Dockerfile").read_text(), re.M)
    main = (ROOT / "src" / "main.rs").read_text()
    assert 'println!("AWS X-Ray daemon version: {}", env!("CARGO_PKG_VERSION"));' in main
    assert f"{IMAGE}:{VERSION}" in (ROOT / "examples" / "ecs-task-definition.json").read_text()
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^IMAGE \?= " + re.escape(IMAGE) + "$", make, re.M)


# --- extension/publish_layer.sh ------------------------------------------------------------------

FAKE_AWS = r'''#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_AWS_LOG"], "a") as f:
    f.write(json.dumps(args) + "\n")
if os.environ.get("FAKE_AWS_FAIL"):
    sys.exit("An error occurred (AccessDeniedException)")
if args[:2] == ["lambda", "publish-layer-version"]:
    region, name = args[args.index("--region") + 1], args[args.index("--layer-name") + 1]
    print(f"arn:aws:lambda:{region}:123456789012:layer:{name}:7\t7")
'''


def publish(tmp_path, *args, fail=False):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "aws").write_text(FAKE_AWS)
    (bin_dir / "aws").chmod(0o755)
    log = tmp_path / "aws.log"
    log.write_text("")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_AWS_LOG": str(log)}
    if fail:
        env["FAKE_AWS_FAIL"] = "1"
    p = subprocess.run(["bash", str(ROOT / "extension" / "publish_layer.sh"), *args], capture_output=True, text=True,
                       env=env, timeout=60)
    return p, [json.loads(line) for line in log.read_text().splitlines()]


def option(call, name):
    return call[call.index(name) + 1]


def test_publish_layer_publishes_each_arch_in_each_region_and_prints_the_arns(tmp_path):
    zips = {arch: tmp_path / f"layer-{arch}.zip" for arch in ("x86_64", "arm64")}
    for z in zips.values():
        z.write_bytes(b"PK")
    p, calls = publish(tmp_path, "--public", "--version", VERSION, "--regions", "us-east-1 eu-west-1",
                       *[f"{a}={z}" for a, z in zips.items()])
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [f"arn:aws:lambda:{r}:123456789012:layer:xray-daemon-{a}:7"
                                     for r in ("us-east-1", "eu-west-1") for a in ("x86_64", "arm64")]
    published = [c for c in calls if c[1] == "publish-layer-version"]
    assert len(published) == 4
    for call in published:
        arch = option(call, "--layer-name").removeprefix("xray-daemon-")
        assert option(call, "--compatible-architectures") == arch
        assert option(call, "--zip-file") == f"fileb://{zips[arch]}"
        runtimes = call[call.index("--compatible-runtimes") + 1:call.index("--query")]
        assert "provided.al2023" in runtimes and "python3.12" in runtimes and len(runtimes) <= 15
        assert VERSION in option(call, "--description")
    granted = [c for c in calls if c[1] == "add-layer-version-permission"]
    assert len(granted) == 4
    assert all(option(c, "--principal") == "*" and option(c, "--version-number") == "7" for c in granted)


def test_publish_layer_is_private_unless_asked_and_stops_on_errors(tmp_path):
    z = tmp_path / "layer.zip"
    z.write_bytes(b"PK")
    p, calls = publish(tmp_path, "--version", VERSION, "--regions", "us-east-1", f"arm64={z}")
    assert p.returncode == 0 and len(calls) == 1 and calls[0][1] == "publish-layer-version", p.stderr
    p, calls = publish(tmp_path, "--version", VERSION, "--regions", "us-east-1 us-west-2", f"arm64={z}", fail=True)
    assert p.returncode != 0 and not p.stdout.strip() and len(calls) == 1, (p.stdout, calls)
    p, calls = publish(tmp_path, "--version", VERSION, f"arm64={z}")
    assert p.returncode == 2 and "--regions is required" in p.stderr and not calls


# --- .github/workflows/release.yml ---------------------------------------------------------------

def test_release_workflow_builds_what_the_issue_asks():
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    assert wf[True]["push"]["tags"] == ["v*"]  # YAML 1.1 reads the key `on` as True
    steps = [s for job in wf["jobs"].values() for s in job["steps"]]
    (build,) = [s for s in steps if s.get("uses", "").startswith("docker/build-push-action@")]
    w = build["with"]
    assert w["platforms"] == "linux/amd64,linux/arm64" and w["sbom"] is True and w["provenance"] == "mode=max"
    assert w["push"] is True and f"{IMAGE}:" in w["tags"]
    text = (ROOT / ".github" / "workflows" / "release.yml").read_text()
    for needle in ("make dist", "helm push", "oci://", "SHA256SUMS", "extension/publish_layer.sh",
                   "Cargo.toml"):
        assert needle in text, needle


def test_actionlint_accepts_the_workflows_and_really_lints(tmp_path):
    actionlint = Path(sys.executable).parent / "actionlint"
    assert actionlint.exists(), "pip install -r tests/docker/requirements.txt (make zig-tools)"
    p = subprocess.run([str(actionlint), "-oneline", *map(str, (ROOT / ".github" / "workflows").glob("*.yml"))],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
                   "      - run: echo \"${{ github.event.head_commit.message }}\"\n")
    p = subprocess.run([str(actionlint), "-oneline", str(bad)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "potentially untrusted" in p.stdout, p.stdout + p.stderr
