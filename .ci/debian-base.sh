#!/usr/bin/env bash
# Makes sure the test engine has a plain Debian base image for the
# `liftoff` container image's test (crates/liftoff/tests/it/container_image.rs
# builds deploy/Dockerfile on it; no image can be pulled here): a bookworm
# minbase rootfs with ca-certificates, made by mmdebstrap from Debian's
# archive, cached outside the clone, then `docker import`ed.
# Usage: source .ci/debian-base.sh   (after .ci/docker.sh; exports
#   LIFTOFF_TEST_DEBIAN_IMAGE   liftoff-test/debian:bookworm)
# The rootfs tar is kept in $LIFTOFF_CI_CACHE (default /tmp/liftoff-ci-cache),
# named by suite and ISO week so that it is made again weekly, and reused
# while it exists; a fresh machine makes it in about 90 s.
set -euo pipefail
: "${LIFTOFF_TEST_DOCKER_HOST:?source .ci/docker.sh first}"
# shellcheck source=/dev/null
source "$(dirname "${BASH_SOURCE[0]}")/rootfs-image.sh"
ci_rootfs_image liftoff-test/debian:bookworm \
  "${LIFTOFF_CI_CACHE:-/tmp/liftoff-ci-cache}/debian-bookworm-minbase-$(date -u +%G-W%V).tar" \
  ca-certificates \
  'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  'CMD ["/bin/sh"]'
export LIFTOFF_TEST_DEBIAN_IMAGE=liftoff-test/debian:bookworm
echo "ci: debian base image ready ($LIFTOFF_TEST_DEBIAN_IMAGE)" >&2
