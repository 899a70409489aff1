#!/usr/bin/env bash
# The Python client examples (examples/python/): a venv in target/clients/python/venv with the
# pinned, hash-checked requirements (pip's cache keeps the downloads), rebuilt only when the
# requirements or the interpreter change; and redis-server from Debian for the queue example.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=hack/lib.sh
. hack/lib.sh

if ! command -v redis-server >/dev/null; then
  apt_lock
  apt-get update -qq
  # The package must not start a Redis server of its own (the test starts one): a policy-rc.d
  # that refuses, unless the machine has one already (container images do).
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi

dir=target/clients/python
requirements=examples/python/requirements.txt
stamp="$(sha256sum "$requirements" | cut -d' ' -f1) $(python3 --version)"
if [[ -x $dir/venv/bin/python && "$(cat "$dir/stamp" 2>/dev/null)" == "$stamp" ]]; then
  exit 0
fi
rm -rf "$dir"
python3 -m venv "$dir/venv"
"$dir/venv/bin/pip" install --quiet --disable-pip-version-check --require-hashes --no-deps \
  -r "$requirements"
echo "$stamp" >"$dir/stamp"
