#!/usr/bin/env bash
# Lints the project's shell scripts with shellcheck (hack/, the client examples' scripts, .ci/run).
# Debian's shellcheck is installed when missing (as root, with apt-get).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
. hack/lib.sh
command -v shellcheck >/dev/null || debian_install shellcheck shellcheck
shellcheck --version | sed -n 's/^version: /shellcheck /p'
scripts=(hack/*.sh hack/clients/*.sh examples/shell/*.sh .ci/run)
# -x follows the files the scripts source (hack/lib.sh, hack/versions.env).
shellcheck -x "${scripts[@]}"
echo "shellcheck: ${#scripts[@]} scripts, no findings"
