#!/usr/bin/env bash
# Installs Debian's Chromium (for the headless trace-UI test) when it is missing; prints its path.
# A browser build of its own can't be downloaded here: this is the distribution's package.
set -euo pipefail
chromium=${JOBTRACE_CHROMIUM:-/usr/bin/chromium}
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
[[ -x $chromium ]] || debian_install install-chromium chromium fonts-dejavu-core
"$chromium" --version >&2
echo "$chromium"
