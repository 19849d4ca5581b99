#!/usr/bin/env python3
"""Writes everything a release publishes into one directory, and publishes nothing (`make dist`).

    python release/dist.py --out dist --version 0.1.0 --revision SHA --created 2026-01-02T03:04:05Z \\
        x86_64=target/x86_64-unknown-linux-musl/release/xray-daemon \\
        arm64=target/aarch64-unknown-linux-musl/release/xray-daemon

For each binary given (x86_64, arm64, or both), OUT gets:
    xray-daemon-VERSION-linux-ARCH           the static binary (0755)
    xray-daemon-layer-VERSION-ARCH.zip       the Lambda layer (extension/build_layer.py)
and once:
    xray-daemon-image-VERSION.oci.tar        the image for every arch given, one OCI archive with
                                             an index (buildah, from docker/Dockerfile's prebuilt
                                             path; no Docker engine), tagged IMAGE:VERSION
    xray-daemon-VERSION.tgz                  the Helm chart, packaged by Helm's own engine with
                                             version and appVersion set to VERSION
    SHA256SUMS                               `sha256sum -c` format, one line per file above

Run with the venv's python (Helm's engine is helm-python-sdk, from tests/chart/requirements.txt).
buildah keeps its images in a private storage directory (--buildah-root), removed at the end.
The image's timestamps are --created, so the same commit gives the same layers.
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "extension"))
import build_layer  # noqa: E402  (extension/build_layer.py)

# arch as the release names it: (Docker/OCI arch, Lambda architecture)
ARCHES = {"x86_64": ("amd64", "x86_64"), "arm64": ("arm64", "arm64")}
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def run(cmd, **kw):
    print("+ " + " ".join(map(str, cmd)), flush=True)
    subprocess.run(list(map(str, cmd)), check=True, **kw)


def binaries(specs):
    out = {}
    for spec in specs:
        arch, _, path = spec.partition("=")
        if arch not in ARCHES or not path:
            sys.exit(f"dist: expected ARCH=BINARY with ARCH one of {', '.join(ARCHES)}, got {spec!r}")
        if not Path(path).is_file():
            sys.exit(f"dist: no {arch} binary at {path} (make static)")
        out[arch] = Path(path)
    if not out:
        sys.exit("dist: no binary given")
    return out


def image(out, bins, version, revision, created, name, storage):
    """One OCI archive holding an index with an image per arch."""
    buildah = ["buildah", "--root", storage / "root", "--runroot", storage / "runroot", "--storage-driver", "vfs"]
    epoch = int(datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
    ctx = storage / "context"
    (ctx / "docker").mkdir(parents=True)
    for f in ("Dockerfile", "stage-rootfs.sh", "passwd", "group"):
        shutil.copy2(ROOT / "docker" / f, ctx / "docker" / f)
    manifest = f"localhost/xray-daemon-dist:{version}"
    try:
        run(buildah + ["manifest", "create", manifest], stdout=subprocess.DEVNULL)
        for arch, binary in bins.items():
            oci_arch = ARCHES[arch][0]
            run([ctx / "docker" / "stage-rootfs.sh", binary, CA_BUNDLE, ctx / "docker" / "out" / oci_arch])
            run(buildah + ["bud", "--isolation", "chroot", "--format", "oci", "--platform", f"linux/{oci_arch}",
                           "--timestamp", epoch, "--manifest", manifest, "--build-arg", "BINARIES=prebuilt",
                           "--build-arg", f"VERSION={version}", "--build-arg", f"REVISION={revision}",
                           "--build-arg", f"CREATED={created}", "-f", ctx / "docker" / "Dockerfile", ctx],
                stdout=subprocess.DEVNULL)
        archive = out / f"xray-daemon-image-{version}.oci.tar"
        run(buildah + ["manifest", "push", "--all", "--format", "oci", manifest,
                       f"oci-archive:{archive}:{name}:{version}"], stdout=subprocess.DEVNULL)
    finally:
        subprocess.run(buildah + ["rmi", "--all", "--force"], capture_output=True)
        shutil.rmtree(storage, ignore_errors=True)
    return archive


def chart(out, version):
    import helm_python as helm

    tgz = Path(helm.package(str(ROOT / "helm" / "xray-daemon"), destination=str(out), version=version,
                            app_version=version))
    print(f"{tgz}: the chart, version and appVersion {version}")
    return tgz


def sha256sums(out, files):
    lines = []
    for f in sorted(files, key=lambda p: p.name):
        lines.append(f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.name}\n")
    (out / "SHA256SUMS").write_text("".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "dist")
    p.add_argument("--version", required=True)
    p.add_argument("--revision", required=True, help="the commit (git rev-parse HEAD)")
    p.add_argument("--created", required=True, help="RFC 3339 time of the commit, UTC (…Z)")
    p.add_argument("--image", default="ghcr.io/xray-daemon/xray-daemon", help="the name the archive is tagged with")
    p.add_argument("--buildah-root", type=Path, help="buildah's storage (default: a temporary directory)")
    p.add_argument("binaries", nargs="+", metavar="ARCH=BINARY")
    a = p.parse_args()
    bins = binaries(a.binaries)
    a.out.mkdir(parents=True, exist_ok=True)
    for old in a.out.iterdir():  # only what this run writes is in OUT, and in SHA256SUMS
        if old.is_file():
            old.unlink()
    files = []
    for arch, binary in bins.items():
        dest = a.out / f"xray-daemon-{a.version}-linux-{arch}"
        shutil.copyfile(binary, dest)
        dest.chmod(0o755)
        files.append(dest)
        layer = a.out / f"xray-daemon-layer-{a.version}-{ARCHES[arch][1]}.zip"
        build_layer.main(binary, layer)
        files.append(layer)
    storage = a.buildah_root or Path(tempfile.mkdtemp(prefix="xray-daemon-dist-buildah-"))
    files.append(image(a.out, bins, a.version, a.revision, a.created, a.image, storage))
    files.append(chart(a.out, a.version))
    sha256sums(a.out, files)
    print(f"{a.out}: {', '.join(sorted(f.name for f in files))} and SHA256SUMS")


if __name__ == "__main__":
    main()
