#!/usr/bin/env python3
"""Builds a Lambda layer zip around one xray-daemon binary.

    python3 extension/build_layer.py BINARY OUT.zip

The zip holds, at its root (Lambda unpacks layers into /opt):
    extensions/xray-daemon   the binary, mode 0755: Lambda starts every file in /opt/extensions
    xray-daemon/wrapper      optional AWS_LAMBDA_EXEC_WRAPPER script, mode 0755
    xray-daemon/LICENSE      Apache-2.0
Entries have fixed timestamps and order, so the same binary always gives the same zip.
"""
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EPOCH = (1980, 1, 1, 0, 0, 0)


def add(z, name, data, mode):
    info = zipfile.ZipInfo(name, date_time=EPOCH)
    info.external_attr = (0o100000 | mode) << 16  # a regular file with these permission bits
    info.create_system = 3  # Unix, so unzip and Lambda honour the mode
    info.compress_type = zipfile.ZIP_DEFLATED
    z.writestr(info, data, compresslevel=9)


def main(binary, out):
    binary, out = Path(binary), Path(out)
    if not binary.is_file():
        sys.exit(f"build_layer: no binary at {binary}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w") as z:
        add(z, "extensions/xray-daemon", binary.read_bytes(), 0o755)
        add(z, "xray-daemon/wrapper", (ROOT / "extension" / "wrapper").read_bytes(), 0o755)
        add(z, "xray-daemon/LICENSE", (ROOT / "LICENSE").read_bytes(), 0o644)
    tmp.replace(out)
    print(f"{out}: {out.stat().st_size} bytes ({binary.stat().st_size} bytes unzipped binary)")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
