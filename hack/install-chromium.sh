#!/usr/bin/env bash
# Installs Debian's Chromium (for the headless trace-UI test) when it is missing; prints its path.
# A browser build of its own can't be downloaded here: this is the distribution's package.
set -euo pipefail
chromium=${JOBTRACE_CHROMIUM:-/usr/bin/chromium}
if [[ ! -x $chromium ]]; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "install-chromium: installing Debian's chromium" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      chromium fonts-dejavu-core >/dev/null
  else
    echo "install-chromium: needs $chromium (Debian: apt-get install chromium, as root)" >&2
    exit 1
  fi
fi
"$chromium" --version >&2
echo "$chromium"
