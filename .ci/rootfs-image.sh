#!/usr/bin/env bash
# ci_rootfs_image: makes sure the test engine has IMAGE, `docker import`ed
# from a Debian bookworm minbase rootfs made by mmdebstrap (installed if
# missing) with the packages INCLUDE names, cached as TAR and reused while
# it exists. Further arguments are `docker import --change` instructions.
# Usage: source .ci/rootfs-image.sh; ci_rootfs_image IMAGE TAR INCLUDE [CHANGE...]
# (after .ci/docker.sh: needs LIFTOFF_TEST_DOCKER_HOST)
ci_rootfs_image() {
  local image="$1" tar="$2" include="$3"
  shift 3
  local cli=/usr/bin/docker   # Debian's client (20.10) matches the engine; /usr/local/bin/docker may shadow it
  [ -x "$cli" ] || cli=docker
  local dk=(env DOCKER_HOST="$LIFTOFF_TEST_DOCKER_HOST" DOCKER_CONFIG="${DKROOT:-/tmp/liftoff-ci-docker}/client" "$cli")
  "${dk[@]}" image inspect "$image" >/dev/null 2>&1 && return 0
  if [ ! -s "$tar" ]; then
    if ! command -v mmdebstrap >/dev/null; then
      echo "ci: installing mmdebstrap" >&2
      if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >&2; then
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >&2
      fi
    fi
    echo "ci: building a rootfs with mmdebstrap ($tar)" >&2
    mkdir -p "$(dirname "$tar")"
    local started=$SECONDS part="${tar%.tar}.part.tar"
    # written beside and renamed, so an interrupted run leaves no half tar to
    # reuse (the name must end in .tar: mmdebstrap picks its output format by it)
    rm -f "$part"
    mmdebstrap --quiet --variant=minbase --include="$include" bookworm "$part" >&2
    mv "$part" "$tar"
    echo "ci: rootfs built in $((SECONDS - started)) s" >&2
  fi
  echo "ci: importing $image" >&2
  local changes=()
  for c in "$@"; do changes+=(--change "$c"); done
  "${dk[@]}" import "${changes[@]}" "$tar" "$image" >/dev/null
}
