#!/usr/bin/env bash
# Tests of the Python client in python/: builds the liftoff binary, installs
# a wheel of ./python into a virtualenv outside the clone, type-checks the
# package (and its tests) with mypy --strict for Python 3.9, and runs the
# pytest suite against real `liftoff server` and `liftoff agent` processes.
#
#   scripts/test-python.sh            # from the repository root (or anywhere)
#
# Environment:
#   LIFTOFF_BIN           use this liftoff binary instead of building one
#   CARGO_TARGET_DIR      where cargo builds (the binary is then $CARGO_TARGET_DIR/debug/liftoff)
#   LIFTOFF_PYTHON_VENV   the virtualenv (default ${TMPDIR:-/tmp}/liftoff-python-venv, reused)
#   PYTHON                the interpreter that makes the virtualenv (default python3)
#   PYTEST_ADDOPTS        extra pytest options (pytest reads it itself)
# With CI set (not 0/false) the end-to-end tests fail, rather than skip, without a binary.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)

if [[ -n "${LIFTOFF_BIN:-}" ]]; then
  if [[ ! -x "$LIFTOFF_BIN" ]]; then
    echo "test-python: LIFTOFF_BIN=$LIFTOFF_BIN is not an executable file" >&2
    exit 1
  fi
  echo "==> using LIFTOFF_BIN=$LIFTOFF_BIN"
else
  echo "==> cargo build -p liftoff --bin liftoff"
  cargo build -p liftoff --bin liftoff
  target="${CARGO_TARGET_DIR:-target}"
  case "$target" in
    /*) ;;
    *) target="$root/$target" ;;
  esac
  LIFTOFF_BIN="$target/debug/liftoff"
  if [[ ! -x "$LIFTOFF_BIN" ]]; then
    echo "test-python: cargo built no binary at $LIFTOFF_BIN" >&2
    exit 1
  fi
fi
export LIFTOFF_BIN

venv="${LIFTOFF_PYTHON_VENV:-${TMPDIR:-/tmp}/liftoff-python-venv}"
if ! "$venv/bin/python" -c 'import sys; assert sys.version_info >= (3, 9)' 2>/dev/null; then
  echo "==> creating the virtualenv $venv"
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv"
fi
py="$venv/bin/python"
echo "==> installing pytest and mypy into $venv"
# mypy 2 no longer checks for Python 3.9, the oldest version the package supports
"$py" -m pip install --quiet --disable-pip-version-check "pytest>=7" "mypy>=1.8,<2"

work=$(mktemp -d "${TMPDIR:-/tmp}/liftoff-python-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
# Built from a copy, so that the build leaves nothing (build/, *.egg-info) in the clone.
mkdir "$work/src"
tar -C python --exclude=build --exclude=dist --exclude='*.egg-info' --exclude=__pycache__ \
  --exclude=.pytest_cache --exclude=.mypy_cache -cf - . | tar -C "$work/src" -xf -
echo "==> building and installing the wheel"
"$py" -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir "$work/dist" "$work/src"
wheels=("$work"/dist/liftoff-*.whl)
if [[ ${#wheels[@]} -ne 1 || ! -f "${wheels[0]}" ]]; then
  echo "test-python: expected one wheel in $work/dist, found: ${wheels[*]}" >&2
  exit 1
fi
"$py" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "${wheels[0]}"

echo "==> mypy --strict: the package for Python 3.9, the tests against the installed wheel"
(cd python && "$venv/bin/mypy" --strict --python-version 3.9 --cache-dir "$venv/mypy-cache" src/liftoff)
# (the tests import pytest, whose own source needs 3.10 to parse: they are checked for the venv's version)
venv_version=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
(cd python/tests && "$venv/bin/mypy" --strict --python-version "$venv_version" --cache-dir "$venv/mypy-cache-tests" .)

echo "==> pytest (LIFTOFF_BIN=$LIFTOFF_BIN)"
cd python
LIFTOFF_PY_EXPECT_INSTALLED=1 PYTHONDONTWRITEBYTECODE=1 \
  "$py" -m pytest -p no:cacheprovider -v -rs tests
