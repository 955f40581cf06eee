#!/usr/bin/env bash
# Installs, from Debian, the plain tools the test scripts and tests use when
# they are missing: curl, git, python3 with venv, and procps (pgrep/ps).
# Usage: source .ci/base.sh
set -euo pipefail
base_missing=()
command -v curl >/dev/null || base_missing+=(curl)
command -v git >/dev/null || base_missing+=(git)
command -v ps >/dev/null || base_missing+=(procps)
if ! command -v python3 >/dev/null; then
  base_missing+=(python3 python3-venv)
elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  base_missing+=(python3-venv)
fi
if [ "${#base_missing[@]}" -gt 0 ]; then
  echo "ci: installing ${base_missing[*]}" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${base_missing[@]}" >&2
fi
