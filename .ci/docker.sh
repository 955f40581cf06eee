#!/usr/bin/env bash
# Installs (if needed) and starts a throwaway Docker engine (Debian's docker.io)
# with its own data root, exec root and socket under $DKROOT, a tiny busybox
# image imported into it, and a local registry (Debian's docker-registry) on
# 127.0.0.1 with htpasswd Basic auth holding a copy of that image.
# Usage: source .ci/docker.sh   (exports, for crates/liftoff-run/tests/container.rs:
#   LIFTOFF_TEST_DOCKER_HOST    unix://$DKROOT/docker.sock
#   LIFTOFF_TEST_DOCKER_IMAGE   liftoff-test/busybox:1 (local only: no registry has it)
#   LIFTOFF_TEST_REGISTRY       127.0.0.1:<port>, holding liftoff-test/busybox:1 (also as agent-pull:1 and
#                               helper-pull:1) and liftoff-test/data:1
#                               (one 3 MB layer, no command: only for pulls)
#   LIFTOFF_TEST_REGISTRY_USER / LIFTOFF_TEST_REGISTRY_PASSWORD)
# An engine or registry left running by an earlier run is reused.
# dockerd runs with --bridge=none and no iptables: containers get only the
# `none` or `host` networks, and nothing can be pulled from a public registry.
set -euo pipefail
DKROOT="${DKROOT:-/tmp/liftoff-ci-docker}"
DK_SOCK="$DKROOT/docker.sock"
DK_IMAGE=liftoff-test/busybox:1
DK_REG_USER=liftoff
DK_REG_PASSWORD=liftoff-test-password
mkdir -p "$DKROOT"

dk_missing=()
command -v dockerd >/dev/null || dk_missing+=(docker.io)
dpkg -s busybox-static >/dev/null 2>&1 || dk_missing+=(busybox-static)
command -v docker-registry >/dev/null || dk_missing+=(docker-registry)
command -v htpasswd >/dev/null || dk_missing+=(apache2-utils)
if [ "${#dk_missing[@]}" -gt 0 ]; then
  echo "ci: installing ${dk_missing[*]}" >&2
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${dk_missing[@]}" >&2; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${dk_missing[@]}" >&2
  fi
fi
# Debian's client (20.10) matches the engine; /usr/local/bin/docker may shadow it.
DK_CLI=/usr/bin/docker
[ -x "$DK_CLI" ] || DK_CLI=docker
dk() { DOCKER_HOST="unix://$DK_SOCK" DOCKER_CONFIG="$DKROOT/client" "$DK_CLI" "$@"; }
dk_ping() { curl -sf --max-time 2 --unix-socket "$DK_SOCK" http://localhost/_ping >/dev/null 2>&1; }

dk_start() { # $1: storage driver
  local pid
  if [ -f "$DKROOT/docker.pid" ]; then
    pid="$(cat "$DKROOT/docker.pid")"
    if kill -0 "$pid" 2>/dev/null; then kill "$pid"; sleep 1; fi
    rm -f "$DKROOT/docker.pid"
  fi
  # a dockerd that died leaves its default netns mounted
  if mountpoint -q "$DKROOT/exec/netns/default" 2>/dev/null; then umount "$DKROOT/exec/netns/default" || true; fi
  setsid nohup dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver="$1" \
    --data-root "$DKROOT/root-$1" --exec-root "$DKROOT/exec" --pidfile "$DKROOT/docker.pid" \
    -H "unix://$DK_SOCK" >"$DKROOT/dockerd-$1.log" 2>&1 </dev/null &
  pid=$!
  for _ in $(seq 1 150); do
    dk_ping && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  return 1
}
if ! dk_ping; then
  echo "ci: starting dockerd ($DK_SOCK)" >&2
  if ! dk_start overlay2; then
    echo "ci: dockerd with overlay2 failed (see $DKROOT/dockerd-overlay2.log); trying vfs" >&2
    dk_start vfs || { echo "ci: dockerd did not start; logs in $DKROOT" >&2; exit 1; }
  fi
fi

if ! dk image inspect "$DK_IMAGE" >/dev/null 2>&1; then
  echo "ci: importing $DK_IMAGE (busybox-static)" >&2
  rm -rf "$DKROOT/rootfs"
  mkdir -p "$DKROOT/rootfs"/{bin,tmp,etc,proc,sys,dev,mnt}
  chmod 1777 "$DKROOT/rootfs/tmp"
  cp /bin/busybox "$DKROOT/rootfs/bin/busybox"
  # relative links: `busybox --install -s DIR` would point them at this host path
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$DKROOT/rootfs/bin/$applet"
  done
  tar -C "$DKROOT/rootfs" -c . | dk import --change 'CMD ["/bin/sh"]' - "$DK_IMAGE" >/dev/null
fi

# registry: 127.0.0.1:<free port>, remembered in $DKROOT/registry.port
dk_reg_up() { [ -n "${DK_REG_PORT:-}" ] && curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$DK_REG_PORT/v2/"; }
DK_REG_PORT="$(cat "$DKROOT/registry.port" 2>/dev/null || true)"
if ! dk_reg_up; then
  DK_REG_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  echo "ci: starting docker-registry on 127.0.0.1:$DK_REG_PORT" >&2
  mkdir -p "$DKROOT/reg/data"
  htpasswd -Bbn "$DK_REG_USER" "$DK_REG_PASSWORD" >"$DKROOT/reg/htpasswd"
  cat >"$DKROOT/reg/config.yml" <<EOF
version: 0.1
storage: {filesystem: {rootdirectory: $DKROOT/reg/data}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$DK_REG_PORT}
auth: {htpasswd: {realm: basic-realm, path: $DKROOT/reg/htpasswd}}
EOF
  setsid nohup docker-registry serve "$DKROOT/reg/config.yml" >"$DKROOT/registry.log" 2>&1 </dev/null &
  echo "$!" >"$DKROOT/registry.pid"
  for _ in $(seq 1 100); do dk_reg_up && break; sleep 0.1; done
  dk_reg_up || { echo "ci: docker-registry did not start; log in $DKROOT/registry.log" >&2; exit 1; }
  echo "$DK_REG_PORT" >"$DKROOT/registry.port"
fi
DK_REG="127.0.0.1:$DK_REG_PORT"
dk_publish() { # $1: local image, $2: name:tag in the registry; leaves no registry-named copy in the engine
  curl -sf -o /dev/null -u "$DK_REG_USER:$DK_REG_PASSWORD" -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$DK_REG/v2/${2%:*}/manifests/${2##*:}" && return 0
  echo "ci: pushing $2 to $DK_REG" >&2
  echo "$DK_REG_PASSWORD" | dk login -u "$DK_REG_USER" --password-stdin "$DK_REG" >/dev/null 2>&1
  dk tag "$1" "$DK_REG/$2"
  dk push "$DK_REG/$2" >/dev/null
  dk rmi "$DK_REG/$2" >/dev/null   # so the tests really pull it
  dk logout "$DK_REG" >/dev/null
}
dk_publish "$DK_IMAGE" liftoff-test/busybox:1
# the same image under a name per test that removes and pulls it, so that
# tests running at once do not pull or remove each other's copy
dk_publish "$DK_IMAGE" liftoff-test/agent-pull:1
dk_publish "$DK_IMAGE" liftoff-test/helper-pull:1
# an image whose only layer the engine does not have, so pulling it downloads and extracts
if ! curl -sf -o /dev/null -u "$DK_REG_USER:$DK_REG_PASSWORD" "http://$DK_REG/v2/liftoff-test/data/tags/list"; then
  mkdir -p "$DKROOT/data" && head -c 3000000 /dev/urandom >"$DKROOT/data/blob"
  tar -C "$DKROOT/data" -c blob | dk import - liftoff-test/data:1 >/dev/null
  dk_publish liftoff-test/data:1 liftoff-test/data:1
  dk rmi liftoff-test/data:1 >/dev/null
fi

export LIFTOFF_TEST_DOCKER_HOST="unix://$DK_SOCK"
export LIFTOFF_TEST_DOCKER_IMAGE="$DK_IMAGE"
export LIFTOFF_TEST_REGISTRY="$DK_REG"
export LIFTOFF_TEST_REGISTRY_USER="$DK_REG_USER"
export LIFTOFF_TEST_REGISTRY_PASSWORD="$DK_REG_PASSWORD"
echo "ci: docker engine ready ($LIFTOFF_TEST_DOCKER_HOST, registry $DK_REG)" >&2
