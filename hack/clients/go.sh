#!/usr/bin/env bash
# Builds the Go client examples of examples/go/ (creator, creator-auto, job) into
# target/clients/go/bin/. Modules and compiled packages stay in Go's own caches (GOMODCACHE,
# GOCACHE), so a second run only checks that the binaries are up to date.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root/examples/go"
# No VCS stamp: the binaries would otherwise be relinked after every commit.
go build -trimpath -buildvcs=false -o "$root/target/clients/go/bin/" ./...
