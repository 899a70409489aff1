#!/usr/bin/env bash
# Installs the packages of examples/node/ (npm ci into its node_modules/, downloads from npm's
# cache) and keeps the lock file it installed as target/clients/node/package-lock.json: nothing
# to do while that copy equals the checked-in lock file.
set -euo pipefail
cd "$(dirname "$0")/../.."
lock=examples/node/package-lock.json
stamp=target/clients/node/package-lock.json
if [[ -d examples/node/node_modules ]] && cmp -s "$lock" "$stamp"; then
  exit 0
fi
(cd examples/node && npm ci --no-audit --no-fund)
mkdir -p "$(dirname "$stamp")"
cp "$lock" "$stamp"
