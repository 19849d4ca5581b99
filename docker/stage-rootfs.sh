#!/bin/sh
# The image's whole file system as a directory, so that the Dockerfile's final stage is one COPY
# whichever way the binary was built (in the Dockerfile's build stage, or by `make static`):
#
#   docker/stage-rootfs.sh BINARY CA_BUNDLE OUT_DIR
#
#   OUT_DIR/xray-daemon                         the static binary (0755)
#   OUT_DIR/xray -> /xray-daemon                upstream's entrypoint path (public.ecr.aws image)
#   OUT_DIR/usr/bin/xray -> /xray-daemon        upstream's Docker Hub / package path
#   OUT_DIR/etc/passwd, OUT_DIR/etc/group       user and group xray, uid/gid 10001
#   OUT_DIR/etc/ssl/certs/ca-certificates.crt   CA bundle for TLS to AWS
#
# The links are absolute: they resolve inside the image, not on the build host.
set -eu
[ "$#" -eq 3 ] || { echo "usage: $0 BINARY CA_BUNDLE OUT_DIR" >&2; exit 2; }
bin=$1 ca=$2 out=$3
here=$(cd "$(dirname "$0")" && pwd)
[ -f "$bin" ] || { echo "$0: no binary at $bin (run make static)" >&2; exit 1; }
[ -s "$ca" ] || { echo "$0: no CA bundle at $ca" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out/usr/bin" "$out/etc/ssl/certs"
cp "$bin" "$out/xray-daemon"
chmod 0755 "$out/xray-daemon"
ln -s /xray-daemon "$out/xray"
ln -s /xray-daemon "$out/usr/bin/xray"
cp "$here/passwd" "$here/group" "$out/etc/"
cp "$ca" "$out/etc/ssl/certs/ca-certificates.crt"
chmod 0644 "$out/etc/passwd" "$out/etc/group" "$out/etc/ssl/certs/ca-certificates.crt"
chmod 0755 "$out" "$out/usr" "$out/usr/bin" "$out/etc" "$out/etc/ssl" "$out/etc/ssl/certs"
