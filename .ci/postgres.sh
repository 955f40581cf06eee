#!/usr/bin/env bash
# Installs (if needed) and starts a throwaway PostgreSQL on 127.0.0.1:$PGPORT,
# owned by the postgres user, and prints the URL tests should use.
# Usage: source .ci/postgres.sh   (exports LIFTOFF_TEST_POSTGRES_URL)
# Tests run it with fsync off (durability is not what they test, and it is
# faster); benchmarks run a durable one, as users do, beside it:
#   PGPORT=55433 PGROOT=/tmp/liftoff-bench-pg PGFSYNC=on source .ci/postgres.sh
set -euo pipefail
PGPORT="${PGPORT:-55432}"
PGFSYNC="${PGFSYNC:-off}"
PGROOT="${PGROOT:-/tmp/liftoff-ci-pg}"
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  echo "ci: installing postgresql" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
fi
PGBIN="$(dirname "$(ls -d /usr/lib/postgresql/*/bin/postgres | sort -V | tail -1)")"
if ! "$PGBIN/pg_isready" -h 127.0.0.1 -p "$PGPORT" -q; then
  rm -rf "$PGROOT"; mkdir -p "$PGROOT"; chown postgres:postgres "$PGROOT"
  su postgres -s /bin/sh -c "'$PGBIN/initdb' -D '$PGROOT/data' -A trust -U postgres" >/dev/null
  # The port lies in the kernel's ephemeral range (32768-60999): a client
  # socket that just used it as its own port (left in TIME-WAIT) makes the
  # bind fail for up to a minute. Wait that out; fail on anything else.
  for try in $(seq 1 15); do
    if su postgres -s /bin/sh -c "'$PGBIN/pg_ctl' -D '$PGROOT/data' -l '$PGROOT/log' -w \
       -o \"-c listen_addresses=127.0.0.1 -p $PGPORT -k '$PGROOT' -c fsync=$PGFSYNC -c synchronous_commit=on -c max_connections=300\" start" >/dev/null; then
      break
    fi
    if [ "$try" = 15 ] || ! tail -5 "$PGROOT/log" | grep -q "Address already in use"; then
      echo "ci: PostgreSQL did not start; its log:" >&2; tail -20 "$PGROOT/log" >&2; false
    fi
    echo "ci: port $PGPORT is still held (TIME-WAIT); retrying in 5 s" >&2
    sleep 5
  done
fi
"$PGBIN/pg_isready" -h 127.0.0.1 -p "$PGPORT"
export LIFTOFF_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"
