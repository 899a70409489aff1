#!/usr/bin/env bash
# jobtrace's image, built without a Docker engine and laid out as the Dockerfile's final stage
# lays it out (a test compares the two): the static binary from `make static` as /jobtrace, the
# license and Cargo.lock under /usr/share/doc/jobtrace/, user 65532:65532, ports 8443 and 8080,
# entrypoint /jobtrace, command `run`. Imported into the real node's containerd as
# localhost/jobtrace:<the chart's appVersion>, which the chart installs with
# image.repository=localhost/jobtrace; the image's OCI layout is kept in target/image/, which
# hack/node-up.sh imports again after a restart.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$REPO"
binary=${1:-target/static/jobtrace}
[ -x "$binary" ] || { echo "jobtrace-image: $binary is missing (make static)" >&2; exit 1; }
version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/jobtrace/Chart.yaml)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
install -D -m 0755 "$binary" "$root/jobtrace"
install -D -m 0644 LICENSE "$root/usr/share/doc/jobtrace/LICENSE"
install -D -m 0644 Cargo.lock "$root/usr/share/doc/jobtrace/Cargo.lock"
mkdir -p target/image
"$REPO/hack/node-image.sh" "localhost/jobtrace:$version" "$root" --user 65532:65532 \
  --port 8443/tcp --port 8080/tcp --entrypoint /jobtrace --cmd run \
  --save target/image/jobtrace.oci.tar
