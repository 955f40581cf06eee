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
: "${LIFTOFF_TEST_DOCKER_HOST:?source .ci/docker.sh first}"
# shellcheck source=/dev/null
source "$(dirname "${BASH_SOURCE[0]}")/rootfs-image.sh"
# An imported image has no config: PATH must be set, or a Dockerfile's
# `ENV PATH="/env/bin:$PATH"` would drop the system directories.
ci_rootfs_image liftoff-test/python:3.11 \
  "${LIFTOFF_CI_CACHE:-/tmp/liftoff-ci-cache}/python-base.tar" \
  python3,python3-pip,python3-venv \
  'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  'ENV LANG=C.UTF-8' \
  'CMD ["python3"]'
export LIFTOFF_TEST_PYTHON_IMAGE=liftoff-test/python:3.11
echo "ci: python base image ready ($LIFTOFF_TEST_PYTHON_IMAGE)" >&2
