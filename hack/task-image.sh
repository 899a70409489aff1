#!/usr/bin/env bash
# The image the demo's Job and the real-node tests run: the client library's example Job program
# (`traced-task`, crates/jobtrace-context/examples/job.rs) as `make examples` built it, with the
# shared libraries it links (the C library and its loader, at the paths the loader looks in), and
# nothing else. Imported into the real node's containerd as localhost/traced-task:dev; its OCI
# layout is kept in target/image/, which hack/node-up.sh imports again after a restart.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$REPO"
program=target/debug/examples/traced-task
[[ -x $program ]] || { echo "task-image: no $program: build the examples first (make examples)" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
cp "$program" "$root/traced-task"
# ldd names each library as `name => /path (address)`, and the loader as `/path (address)`.
libraries=$(ldd "$program" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
[[ -n $libraries ]] || { echo "task-image: ldd found no libraries in $program" >&2; exit 1; }
for library in $libraries; do
  mkdir -p "$root$(dirname "$library")"
  cp -L "$library" "$root$library"
done
mkdir -m 1777 "$root/tmp"
mkdir -p target/image
"$REPO/hack/node-image.sh" localhost/traced-task:dev "$root" --entrypoint /traced-task \
  --user 65532:65532 --save target/image/traced-task.oci.tar
