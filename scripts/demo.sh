#!/usr/bin/env bash
# The main job on the embedded default stack: local PostgreSQL+PostGIS+pgstac, local S3 (moto),
# the collections published into pgstac.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
ingest() { .venv/bin/ingest --text-logs "$@"; }
ingest stack up
ingest collections validate
ingest collections sync
ingest collections list
cat <<'MSG'

Done. The stack keeps running (stop it with: .venv/bin/ingest stack down).
Look at the catalogue:
  source .stack/stack.env && psql "$INGEST_DATABASE_URL" -c 'select id, content->>'"'"'title'"'"' from pgstac.collections'
MSG
