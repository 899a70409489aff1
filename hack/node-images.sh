#!/usr/bin/env bash
# The real node's base images, built here (no registry) and imported into its containerd:
#   localhost/pause:jobtrace    the pod sandbox (hack/node/pause.c, static)
#   localhost/busybox:jobtrace  Debian's static busybox, for test Jobs that run shell commands
# Each image's OCI layout is cached in the tools cache, keyed by what it is built from.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
images=$CACHE/images
mkdir -p "$images"

cached() { # cached REF KEY: imports the cached layout of REF when it was built from KEY
  local file=$images/${1//[\/:]/_}.tar
  [ -f "$file" ] && [ "$(cat "$file.key" 2>/dev/null)" = "$2" ] || return 1
  node_import "${1%:*}" "$file"
  echo "node-images: $1 imported (cached)"
}
build() { # build REF KEY ROOTFS OPTION...: builds, imports and caches REF
  local ref=$1 key=$2 file=$images/${1//[\/:]/_}.tar
  shift 2
  "$REPO/hack/node-image.sh" "$ref" "$@" --save "$file"
  echo "$key" >"$file.key"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

key=$(sha256sum "$REPO/hack/node/pause.c" | cut -c1-16)
if ! cached localhost/pause:jobtrace "$key"; then
  gcc -static -Os -o "$work/pause" "$REPO/hack/node/pause.c"
  strip "$work/pause"
  mkdir -p "$work/pause-root"
  cp "$work/pause" "$work/pause-root/pause"
  build localhost/pause:jobtrace "$key" "$work/pause-root" --entrypoint /pause --user 65535:65535
fi

key=$(dpkg-query -W -f='${Version}' busybox-static)
if ! cached localhost/busybox:jobtrace "$key"; then
  r=$work/busybox-root
  mkdir -p "$r/bin" "$r/etc" "$r/tmp"
  cp /bin/busybox "$r/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$r/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$r/etc/group"
  chmod 1777 "$r/tmp"
  build localhost/busybox:jobtrace "$key" "$r" --env PATH=/bin --cmd /bin/sh
fi
