#!/usr/bin/env bash
# Installs or builds what the client examples of examples/<language>/ need, one script per
# language in hack/clients/, each into target/clients/<language>/ with its downloads cached
# outside the checkout (the language's own cache). Usage: hack/clients.sh [LANGUAGE...]
set -euo pipefail
cd "$(dirname "$0")/.."
if (($# == 0)); then
  for script in hack/clients/*.sh; do
    script=${script##*/}
    set -- "$@" "${script%.sh}"
  done
fi
for language in "$@"; do
  start=$SECONDS
  echo "clients: $language" >&2
  bash "hack/clients/$language.sh"
  echo "clients: $language ready in $((SECONDS - start)) s" >&2
done
