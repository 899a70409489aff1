#!/usr/bin/env bash
# The image the demo's Job and the real-node tests run: the client library's example Job program
# (`traced-task`, crates/jobtrace-context/examples/job.rs), linked statically, alone in an image
# as jobtrace's own is. Imported into the real node's containerd as localhost/traced-task:dev; its
# OCI layout is kept in target/image/, which hack/node-up.sh imports again after a restart.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$REPO"
target=$(rustc -vV | sed -n 's/^host: //p')
# As hack/build-static.sh: crt-static for the program, --target keeps build scripts dynamic.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --locked -p jobtrace-context --features opentelemetry --example traced-task \
  --target "$target"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
cp "target/$target/debug/examples/traced-task" "$root/traced-task"
mkdir -m 1777 "$root/tmp"
mkdir -p target/image
"$REPO/hack/node-image.sh" localhost/traced-task:dev "$root" --entrypoint /traced-task \
  --user 65532:65532 --save target/image/traced-task.oci.tar
