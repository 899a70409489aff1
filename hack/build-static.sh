#!/usr/bin/env bash
# Builds the statically linked release binary the image ships, into the directory given
# (target/static by default). The Dockerfile runs this very script; `make static` runs it here.
set -euo pipefail
out=${1:-target/static}
target=$(rustc -vV | sed -n 's/^host: //p')
# crt-static links glibc statically (its resolver reads /etc/resolv.conf and /etc/hosts without
# loading NSS modules, so DNS works in an empty image). --target keeps build scripts and
# proc-macros dynamic, as they must be.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --locked --bin jobtrace --target "$target"
mkdir -p "$out"
cp "target/$target/release/jobtrace" "$out/jobtrace"
if readelf --program-headers "$out/jobtrace" | grep -q 'program interpreter'; then
    echo "build-static: $out/jobtrace is dynamically linked" >&2
    exit 1
fi
if readelf --dynamic "$out/jobtrace" | grep -q NEEDED; then
    echo "build-static: $out/jobtrace needs shared libraries:" >&2
    readelf --dynamic "$out/jobtrace" | grep NEEDED >&2
    exit 1
fi
echo "build-static: $out/jobtrace ($(du -h "$out/jobtrace" | cut -f1), static)"
