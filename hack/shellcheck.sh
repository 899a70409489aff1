#!/usr/bin/env bash
# Lints the project's shell scripts with shellcheck (hack/, the client examples' scripts, .ci/run).
# Debian's shellcheck is installed when missing (as root, with apt-get).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v shellcheck >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "shellcheck: installing Debian's shellcheck" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck >/dev/null
  else
    echo "shellcheck: not found (Debian: apt-get install shellcheck, as root)" >&2
    exit 1
  fi
fi
shellcheck --version | sed -n 's/^version: /shellcheck /p'
scripts=(hack/*.sh hack/clients/*.sh examples/shell/*.sh .ci/run)
# -x follows the files the scripts source (hack/lib.sh, hack/versions.env).
shellcheck -x "${scripts[@]}"
echo "shellcheck: ${#scripts[@]} scripts, no findings"
