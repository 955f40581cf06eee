#!/usr/bin/env bash
# Installs (once, into $EMU) and starts the cloud storage emulators the blob
# store tests use, each on loopback, and creates the bucket `liftoff-test` in
# each. Usage: source .ci/emulators.sh   (exports LIFTOFF_TEST_S3_ENDPOINT, LIFTOFF_TEST_AZURITE)
#   S3:    moto server           127.0.0.1:55001
#   Azure: azurite (blob)        127.0.0.1:10000  (object_store's emulator address)
# No GCS emulator here speaks the XML API object_store uses: fake-gcs-server
# 1.54 sends an XML PUT to its JSON upload handler ("invalid uploadType") and
# gcp-storage-emulator answers without an ETag. liftoff-cloud's tests run a
# fake of that subset of GCS in the test itself (liftoff-testkit's
# fakes/gcp.rs).
# moto's server answers STS too (GetCallerIdentity for `liftoff doctor`).
set -euo pipefail
EMU="${EMU:-/tmp/liftoff-ci-emu}"
mkdir -p "$EMU"
if [ ! -x "$EMU/v/bin/moto_server" ] || [ ! -x "$EMU/v/bin/python" ]; then
  echo "ci: installing moto and azure-storage-blob (pip)" >&2
  python3 -m venv "$EMU/v"
  "$EMU/v/bin/pip" install -q 'moto[s3,ecr,sts,logs,server]' azure-storage-blob >&2
fi
if [ ! -x "$EMU/node_modules/.bin/azurite-blob" ]; then
  echo "ci: installing azurite (npm)" >&2
  (cd "$EMU" && npm install --silent --no-audit --no-fund azurite@3.35.0 >&2)
fi
up() { curl -s -o /dev/null "$1"; }
if ! up http://127.0.0.1:55001/; then
  setsid nohup "$EMU/v/bin/moto_server" -H 127.0.0.1 -p 55001 >"$EMU/moto.log" 2>&1 < /dev/null &
fi
if ! up http://127.0.0.1:10000/; then
  mkdir -p "$EMU/azurite"
  setsid nohup "$EMU/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort 10000 --inMemoryPersistence \
    --skipApiVersionCheck --loose >"$EMU/azurite.log" 2>&1 < /dev/null &
fi
for url in http://127.0.0.1:55001/ http://127.0.0.1:10000/; do
  for _ in $(seq 1 100); do up "$url" && break; sleep 0.1; done
  up "$url" || { echo "ci: emulator at $url did not start; logs in $EMU" >&2; exit 1; }
done
curl -sf -X PUT http://127.0.0.1:55001/liftoff-test -o /dev/null || true
"$EMU/v/bin/python" - <<'PY'
from azure.storage.blob import BlobServiceClient
from azure.core.exceptions import ResourceExistsError
svc = BlobServiceClient.from_connection_string("UseDevelopmentStorage=true")
try:
    svc.create_container("liftoff-test")
except ResourceExistsError:
    pass
PY
export LIFTOFF_TEST_S3_ENDPOINT=http://127.0.0.1:55001
export LIFTOFF_TEST_AZURITE=1
echo "ci: emulators ready (S3 :55001, Azure :10000)" >&2
