#!/usr/bin/env bash
# Builds the release image localhost/clusterdns:dev (or $IMAGE) the way CoreDNS's release does:
# a static (musl) binary built here, then an image that only copies it in (deploy/Containerfile).
# Storage: buildah's vfs driver, no daemon, no registry, no pull (FROM scratch).
#
#   bash deploy/image.sh          # needs: rustup, musl-gcc (musl-tools), setcap (libcap2-bin),
#                                 # buildah, binutils; run as root
#   python3 deploy/check.py --image localhost/clusterdns:dev    # boot it as the kubelet would
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-localhost/clusterdns:dev}
TARGET=x86_64-unknown-linux-musl

rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"
# ring's C code needs a musl C compiler.
CC_x86_64_unknown_linux_musl=musl-gcc cargo build --release --locked --target "$TARGET"
bin=target/$TARGET/release/clusterdns
ldd "$bin" 2>&1 | grep -Eq "not a dynamic executable|statically linked" || { echo "$bin is not static"; exit 1; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx/clusterdns"
strip "$ctx/clusterdns"
# Binds :53 as uid 65532 with only NET_BIND_SERVICE (the Deployment's securityContext): the file
# capability, as CoreDNS's image sets it; the kubelet gives a non-root container no ambient caps.
setcap cap_net_bind_service=+ep "$ctx/clusterdns"
# System roots for `forward . tls://…` upstreams without a `tls CA` file (the API's CA comes from
# the service account or the kubeconfig; clusterdns does not need these for it).
bundle=/etc/ssl/certs/ca-certificates.crt
[ -s "$bundle" ] || { echo "$bundle missing (apt-get install ca-certificates)"; exit 1; }
cp "$bundle" "$ctx/ca-certificates.crt"
cp deploy/Containerfile "$ctx/Containerfile"

buildah --storage-driver vfs bud --isolation chroot --layers=false -f "$ctx/Containerfile" -t "$IMAGE" "$ctx"
buildah --storage-driver vfs images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$IMAGE"
