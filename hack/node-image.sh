#!/usr/bin/env bash
# Builds an OCI image from a directory and imports it into the real node's containerd, without a
# registry: umoci lays the directory out as one layer (every file owned by root, as a
# Dockerfile's COPY leaves it), the image's configuration comes from the flags, and `ctr image
# import` makes it REF for the kubelet. Pods use it with `imagePullPolicy: Never` (or
# IfNotPresent: the tag is never `latest`).
# Usage: hack/node-image.sh REF ROOTFS [--user U] [--entrypoint ARG]... [--cmd ARG]...
#        [--env K=V]... [--port P/tcp]... [--workdir DIR] [--save FILE]
#   REF is localhost/NAME:TAG. --save also keeps the image's OCI layout as a tar in FILE.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
ref=${1:?usage: node-image.sh REF ROOTFS [options]}
rootfs=${2:?usage: node-image.sh REF ROOTFS [options]}
shift 2
case $ref in
  localhost/*:*) ;;
  *) echo "node-image: REF must be localhost/NAME:TAG, not $ref" >&2; exit 2 ;;
esac
name=${ref%:*} tag=${ref##*:}
config=(--architecture amd64 --os linux)
save=
while [ $# -gt 0 ]; do
  case $1 in
    --user) config+=(--config.user "$2") ;;
    --entrypoint) config+=(--config.entrypoint "$2") ;;
    --cmd) config+=(--config.cmd "$2") ;;
    --env) config+=(--config.env "$2") ;;
    --port) config+=(--config.exposedports "$2") ;;
    --workdir) config+=(--config.workingdir "$2") ;;
    --save) save=$2 ;;
    *) echo "node-image: unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done
debian_install node-image umoci
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umoci init --layout "$work/oci"
umoci new --image "$work/oci:$tag"
umoci unpack --image "$work/oci:$tag" "$work/bundle" >/dev/null
cp -a "$rootfs/." "$work/bundle/rootfs/"
chown -R 0:0 "$work/bundle/rootfs"
umoci repack --image "$work/oci:$tag" "$work/bundle"
umoci config --image "$work/oci:$tag" "${config[@]}"
umoci gc --layout "$work/oci"
tar -C "$work/oci" -cf "$work/image.tar" .
[ -z "$save" ] || cp "$work/image.tar" "$save"
node_import "$name" "$work/image.tar"
echo "node-image: $ref imported"
