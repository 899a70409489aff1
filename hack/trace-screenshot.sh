#!/usr/bin/env bash
# Saves the trace UI's page of one trace as a PNG, with headless Chromium (installed when missing),
# as the trace UI's end-to-end test does. docs/trace-ui.png is one of `make demo`'s traces.
# Usage: hack/trace-screenshot.sh TRACE_ID [FILE.png] (default target/trace-ui-TRACE_ID.png)
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
trace_id=${1:?usage: hack/trace-screenshot.sh TRACE_ID [FILE.png]}
out=${2:-$REPO/target/trace-ui-$trace_id.png}
chromium=$("$REPO/hack/install-chromium.sh" 2>/dev/null)
curl -sf "$TRACE_UI/traces" >/dev/null ||
  { echo "trace-screenshot: the trace UI is not up at $TRACE_UI (make cluster-up)" >&2; exit 1; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
# The background-networking flags keep Chromium from calling out of a machine with no network.
"$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size="${JOBTRACE_SCREENSHOT_SIZE:-2048,500}" \
  --virtual-time-budget=5000 --screenshot="$out" "$TRACE_UI/traces/$trace_id" 2>/dev/null
echo "$out"
