#!/usr/bin/env bash
# Makes sure the test engine has a Python base image for the generated
# Dockerfiles of liftoff-build (no image can be pulled here): a Debian
# bookworm rootfs (Python 3.11, pip, venv) made by mmdebstrap from Debian's
# archive, cached outside the clone, then `docker import`ed.
# Usage: source .ci/python-base.sh   (after .ci/docker.sh; exports
#   LIFTOFF_TEST_PYTHON_IMAGE   liftoff-test/python:3.11)
# The rootfs tar is kept in $LIFTOFF_CI_CACHE (default /tmp/liftoff-ci-cache)
# and reused while it exists; a fresh machine builds it (about 25 s).
set -euo pipefail
PY_IMAGE=liftoff-test/python:3.11
PY_CACHE="${LIFTOFF_CI_CACHE:-/tmp/liftoff-ci-cache}"
PY_TAR="$PY_CACHE/python-base.tar"
: "${LIFTOFF_TEST_DOCKER_HOST:?source .ci/docker.sh first}"
# Debian's client (20.10) matches the engine; /usr/local/bin/docker may shadow it.
PY_DK_CLI=/usr/bin/docker
[ -x "$PY_DK_CLI" ] || PY_DK_CLI=docker
py_dk() { DOCKER_HOST="$LIFTOFF_TEST_DOCKER_HOST" DOCKER_CONFIG="${DKROOT:-/tmp/liftoff-ci-docker}/client" "$PY_DK_CLI" "$@"; }

if ! py_dk image inspect "$PY_IMAGE" >/dev/null 2>&1; then
  if [ ! -s "$PY_TAR" ]; then
    if ! command -v mmdebstrap >/dev/null; then
      echo "ci: installing mmdebstrap" >&2
      if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >&2; then
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >&2
      fi
    fi
    echo "ci: building the Python base rootfs with mmdebstrap ($PY_TAR)" >&2
    mkdir -p "$PY_CACHE"
    py_started=$SECONDS
    # written beside and renamed, so an interrupted run leaves no half tar to
    # reuse (the name must end in .tar: mmdebstrap picks its output format by it)
    rm -rf "$PY_CACHE/python-base.part.tar"
    mmdebstrap --quiet --variant=minbase --include=python3,python3-pip,python3-venv \
      bookworm "$PY_CACHE/python-base.part.tar" >&2
    mv "$PY_CACHE/python-base.part.tar" "$PY_TAR"
    echo "ci: rootfs built in $((SECONDS - py_started)) s" >&2
  fi
  echo "ci: importing $PY_IMAGE" >&2
  # An imported image has no config: PATH must be set, or a Dockerfile's
  # `ENV PATH="/env/bin:$PATH"` would drop the system directories.
  py_dk import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    "$PY_TAR" "$PY_IMAGE" >/dev/null
fi
export LIFTOFF_TEST_PYTHON_IMAGE="$PY_IMAGE"
echo "ci: python base image ready ($PY_IMAGE)" >&2
