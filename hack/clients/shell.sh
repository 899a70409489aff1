#!/usr/bin/env bash
# The shell example's tool: otel-cli, built from its module as pinned by examples/shell/tools
# (go.sum) into target/clients/shell/bin. The Go module and build caches are Go's own.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
out=$repo/target/clients/shell/bin
tools=$repo/examples/shell/tools
mkdir -p "$out"
if [[ -x $out/otel-cli && $out/otel-cli -nt $tools/go.sum && $out/otel-cli -nt $tools/go.mod ]]; then
  exit 0
fi
cd "$tools"
go build -trimpath -o "$out/otel-cli" github.com/equinix-labs/otel-cli
