#!/usr/bin/env bash
# Two more local registries (Debian's docker-registry) for the registry tests
# of liftoff-build, each holding liftoff-test/busybox:1 (the second also
# liftoff-test/gar/busybox:1), pushed through the engine. Source after .ci/docker.sh (uses its engine and image).
#   LIFTOFF_TEST_TOKEN_REGISTRY  127.0.0.1:<port>, `auth: token` behind .ci/token_server.py
#                                (RS256 JWT with x5c) on LIFTOFF_TEST_TOKEN_REALM; users
#                                liftoff/liftoff-token-password (pull,push,delete),
#                                pusher/pusher-password (pull,push) and puller/puller-password (pull)
#   LIFTOFF_TEST_CLOUD_REGISTRY  127.0.0.1:<port>, deletes disabled, htpasswd Basic with the logins the cloud
#                                registries end with: AWS/123456789012-auth-token (what moto's
#                                ECR token decodes to), oauth2accesstoken/liftoff-test-gcp-token
#                                (Artifact Registry) and 00000000-0000-0000-0000-000000000000/
#                                liftoff-test-acr-refresh-token (ACR, after /oauth2/exchange)
# Registries left running by an earlier run are reused.
set -euo pipefail
: "${DKROOT:?source .ci/docker.sh first}"
TR_DIR="$DKROOT/token-reg"
CR_DIR="$DKROOT/cloud-reg"
mkdir -p "$TR_DIR/data" "$CR_DIR/data"
if ! python3 -c 'import cryptography' >/dev/null 2>&1; then
  echo "ci: installing python3-cryptography" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-cryptography >&2 \
    || { apt-get update -qq >&2; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-cryptography >&2; }
fi
tr_free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
tr_up() { curl -s -o /dev/null --max-time 2 "$1"; }
tr_wait() { # $1 url, $2 log
  for _ in $(seq 1 100); do tr_up "$1" && return 0; sleep 0.1; done
  echo "ci: $1 did not answer; log in $2" >&2
  exit 1
}

# token server + registry with `auth: token`
TR_REALM_PORT="$(cat "$TR_DIR/realm.port" 2>/dev/null || true)"
if [ -z "$TR_REALM_PORT" ] || ! tr_up "http://127.0.0.1:$TR_REALM_PORT/token?service=liftoff-test-registry"; then
  TR_REALM_PORT="$(tr_free_port)"
  [ -f "$TR_DIR/token.key" ] || openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=liftoff-test-token \
    -keyout "$TR_DIR/token.key" -out "$TR_DIR/token.crt" >/dev/null 2>&1
  echo "ci: starting the token server on 127.0.0.1:$TR_REALM_PORT" >&2
  setsid nohup python3 "$(dirname "${BASH_SOURCE[0]}")/token_server.py" "$TR_REALM_PORT" "$TR_DIR/token.key" \
    "$TR_DIR/token.crt" liftoff-test-issuer liftoff-test-registry \
    liftoff:liftoff-token-password:pull,push,delete pusher:pusher-password:pull,push puller:puller-password:pull \
    >"$TR_DIR/token-server.log" 2>&1 </dev/null &
  echo "$!" >"$TR_DIR/token-server.pid"
  tr_wait "http://127.0.0.1:$TR_REALM_PORT/token?service=liftoff-test-registry" "$TR_DIR/token-server.log"
  echo "$TR_REALM_PORT" >"$TR_DIR/realm.port"
  rm -f "$TR_DIR/registry.port"   # its config names the old realm
fi
TR_PORT="$(cat "$TR_DIR/registry.port" 2>/dev/null || true)"
if [ -z "$TR_PORT" ] || ! tr_up "http://127.0.0.1:$TR_PORT/v2/"; then
  [ -f "$TR_DIR/registry.pid" ] && kill "$(cat "$TR_DIR/registry.pid")" 2>/dev/null || true
  TR_PORT="$(tr_free_port)"
  echo "ci: starting the token-auth docker-registry on 127.0.0.1:$TR_PORT" >&2
  cat >"$TR_DIR/config.yml" <<EOF
version: 0.1
storage: {filesystem: {rootdirectory: $TR_DIR/data}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$TR_PORT}
auth: {token: {realm: "http://127.0.0.1:$TR_REALM_PORT/token", service: liftoff-test-registry, issuer: liftoff-test-issuer, rootcertbundle: $TR_DIR/token.crt}}
EOF
  setsid nohup docker-registry serve "$TR_DIR/config.yml" >"$TR_DIR/registry.log" 2>&1 </dev/null &
  echo "$!" >"$TR_DIR/registry.pid"
  tr_wait "http://127.0.0.1:$TR_PORT/v2/" "$TR_DIR/registry.log"
  echo "$TR_PORT" >"$TR_DIR/registry.port"
fi

# htpasswd registry with the cloud logins
CR_PORT="$(cat "$CR_DIR/registry.port" 2>/dev/null || true)"
if [ -z "$CR_PORT" ] || ! tr_up "http://127.0.0.1:$CR_PORT/v2/"; then
  [ -f "$CR_DIR/registry.pid" ] && kill "$(cat "$CR_DIR/registry.pid")" 2>/dev/null || true
  CR_PORT="$(tr_free_port)"
  echo "ci: starting the cloud-login docker-registry on 127.0.0.1:$CR_PORT" >&2
  {
    htpasswd -Bbn AWS 123456789012-auth-token
    htpasswd -Bbn oauth2accesstoken liftoff-test-gcp-token
    htpasswd -Bbn 00000000-0000-0000-0000-000000000000 liftoff-test-acr-refresh-token
  } | grep -v '^$' >"$CR_DIR/htpasswd"
  # deletes off, as on ECR (blobs go with BatchDeleteImage, not the registry API)
  cat >"$CR_DIR/config.yml" <<EOF
version: 0.1
storage: {filesystem: {rootdirectory: $CR_DIR/data}, delete: {enabled: false}}
http: {addr: 127.0.0.1:$CR_PORT}
auth: {htpasswd: {realm: basic-realm, path: $CR_DIR/htpasswd}}
EOF
  setsid nohup docker-registry serve "$CR_DIR/config.yml" >"$CR_DIR/registry.log" 2>&1 </dev/null &
  echo "$!" >"$CR_DIR/registry.pid"
  tr_wait "http://127.0.0.1:$CR_PORT/v2/" "$CR_DIR/registry.log"
  echo "$CR_PORT" >"$CR_DIR/registry.port"
fi

tr_publish() { # $1 registry, $2 user, $3 password, $4 its directory, $5 name:tag; unless pushed before
  local marker="$4/pushed-${5//[\/:]/_}"
  if [ ! -f "$marker" ]; then
    echo "ci: pushing $5 to $1" >&2
    echo "$3" | dk login -u "$2" --password-stdin "$1" >/dev/null 2>&1
    dk tag "$DK_IMAGE" "$1/$5"
    dk push "$1/$5" >/dev/null
    dk rmi "$1/$5" >/dev/null
    dk logout "$1" >/dev/null
    touch "$marker"
  fi
}
tr_publish "127.0.0.1:$TR_PORT" liftoff liftoff-token-password "$TR_DIR" liftoff-test/busybox:1
tr_publish "127.0.0.1:$CR_PORT" AWS 123456789012-auth-token "$CR_DIR" liftoff-test/busybox:1
# Artifact Registry paths have three parts: <project>/<repository>/<image>
tr_publish "127.0.0.1:$CR_PORT" AWS 123456789012-auth-token "$CR_DIR" liftoff-test/gar/busybox:1

export LIFTOFF_TEST_TOKEN_REGISTRY="127.0.0.1:$TR_PORT"
export LIFTOFF_TEST_TOKEN_REALM="http://127.0.0.1:$TR_REALM_PORT/token"
export LIFTOFF_TEST_CLOUD_REGISTRY="127.0.0.1:$CR_PORT"
echo "ci: token registry $LIFTOFF_TEST_TOKEN_REGISTRY (realm $LIFTOFF_TEST_TOKEN_REALM), cloud-login registry $LIFTOFF_TEST_CLOUD_REGISTRY" >&2
