#!/usr/bin/env bash
# Makes sure the test engine has a plain Debian base image for the
# `liftoff` container image's test (crates/liftoff/tests/container_image.rs
# builds deploy/Dockerfile on it; no image can be pulled here): a bookworm
# minbase rootfs with ca-certificates, made by mmdebstrap from Debian's
# archive, cached outside the clone, then `docker import`ed.
# Usage: source .ci/debian-base.sh   (after .ci/docker.sh; exports
#   LIFTOFF_TEST_DEBIAN_IMAGE   liftoff-test/debian:bookworm)
# The rootfs tar is kept in $LIFTOFF_CI_CACHE (default /tmp/liftoff-ci-cache),
# named by suite and ISO week so it is made again weekly, and reused while it
# exists; a fresh machine makes it in about 90 s.
set -euo pipefail
DEB_SUITE=bookworm
DEB_IMAGE="liftoff-test/debian:$DEB_SUITE"
DEB_CACHE="${LIFTOFF_CI_CACHE:-/tmp/liftoff-ci-cache}"
DEB_TAR="$DEB_CACHE/debian-$DEB_SUITE-minbase-$(date -u +%G-W%V).tar"
: "${LIFTOFF_TEST_DOCKER_HOST:?source .ci/docker.sh first}"
# Debian's client (20.10) matches the engine; /usr/local/bin/docker may shadow it.
DEB_DK_CLI=/usr/bin/docker
[ -x "$DEB_DK_CLI" ] || DEB_DK_CLI=docker
deb_dk() { DOCKER_HOST="$LIFTOFF_TEST_DOCKER_HOST" DOCKER_CONFIG="${DKROOT:-/tmp/liftoff-ci-docker}/client" "$DEB_DK_CLI" "$@"; }

if ! deb_dk image inspect "$DEB_IMAGE" >/dev/null 2>&1; then
  if [ ! -s "$DEB_TAR" ]; then
    if ! command -v mmdebstrap >/dev/null; then
      echo "ci: installing mmdebstrap" >&2
      if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >&2; then
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >&2
      fi
    fi
    echo "ci: building the Debian base rootfs with mmdebstrap ($DEB_TAR)" >&2
    mkdir -p "$DEB_CACHE"
    deb_started=$SECONDS
    # written beside and renamed, so an interrupted run leaves no half tar to
    # reuse (the name must end in .tar: mmdebstrap picks its output format by it)
    rm -f "$DEB_CACHE/debian-base.part.tar"
    mmdebstrap --quiet --variant=minbase --include=ca-certificates \
      "$DEB_SUITE" "$DEB_CACHE/debian-base.part.tar" >&2
    mv "$DEB_CACHE/debian-base.part.tar" "$DEB_TAR"
    echo "ci: rootfs built in $((SECONDS - deb_started)) s" >&2
  fi
  echo "ci: importing $DEB_IMAGE" >&2
  deb_dk import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/sh"]' \
    "$DEB_TAR" "$DEB_IMAGE" >/dev/null
fi
export LIFTOFF_TEST_DEBIAN_IMAGE="$DEB_IMAGE"
echo "ci: debian base image ready ($DEB_IMAGE)" >&2
