#!/usr/bin/env bash
# The main job on the embedded default stack: local PostgreSQL+PostGIS+pgstac, local S3 (SeaweedFS), the
# project's own provider serving generated products; every collection harvested into the catalogue.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
ingest() { .venv/bin/ingest --text-logs "$@"; }
ingest stack up
ingest collections validate
ingest collections sync

# DEMO_PROVIDER=cdse: the same scenario through what the Copernicus Data Space speaks (OData
# search, OpenID sign-in, token-checked downloads) with EODAG's own cop_dataspace plugins, every
# address of EODAG's configuration moved to the CDSE-like provider; its products are a month later,
# so that both demos can run on one stack
flavour=${DEMO_PROVIDER:-stac}
if [[ $flavour == cdse ]]; then
  provider_root=.work/provider-cdse start=2026-02-01 probe=http://127.0.0.1:15801/odata/v1/Products
  export INGEST_PROVIDER=cop_dataspace INGEST_PROVIDER_URL= INGEST_PROVIDER_MIRROR_URL=http://127.0.0.1:15801
  export INGEST_PROVIDER_USERNAME=ingest@example.com INGEST_PROVIDER_PASSWORD=ingest  # the provider's demo user
else
  provider_root=.work/provider start=2026-01-01 probe=http://127.0.0.1:15800/
fi
if [[ ! -s $provider_root/index.jsonl ]]; then
  echo "==> generating 6 products (2 of each kind) for the $flavour provider"
  ingest dev generate --root "$provider_root" --count 6 --start "$start"
fi
if ! grep -q '"S3_EFR"' "$provider_root/index.jsonl"; then  # also on a provider of an earlier demo
  echo "==> generating 4 Sentinel-3 products (OLCI L1 EFR, L2 LFR; SLSTR L1 RBT, L2 LST)"
  ingest dev generate --root "$provider_root" --count 4 --start "$start" --seed 100 \
    --kind S3_EFR --kind S3_OLCI_L2LFR --kind S3_SLSTR_L1RBT --kind S3_SLSTR_L2LST
fi
mkdir -p .work
echo "==> local $flavour provider at ${probe%%/odata*} (log: .work/provider.log)"
.venv/bin/ingest --text-logs dev provider --flavour "$flavour" --root "$provider_root" >.work/provider.log 2>&1 &
provider_pid=$!
trap 'kill $provider_pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  curl -fsS -o /dev/null "$probe" 2>/dev/null && break
  sleep 0.2
done

# discovered by sensing day (what an operator's backfill does): the collections' watermarks are the
# provider's publication time, and the two demos' products may be harvested in either order
end=$(date -u -d "$start + 1 day" +%F)
for spec in collections/*.yaml; do
  ingest backfill "$(basename "$spec" .yaml)" --start "$start" --end "$end"
done

echo "==> ingest run (scheduler + worker) until every product is catalogued (log: .work/run.log)"
.venv/bin/ingest --json-logs run >.work/run.log 2>&1 &
run_pid=$!
trap 'kill $provider_pid 2>/dev/null || true; kill -TERM $run_pid 2>/dev/null || true' EXIT
pending() {
  .venv/bin/ingest status --json | .venv/bin/python -c '
import json, sys
doc = json.load(sys.stdin)
print(sum(n for c in doc["collections"] for s, n in c["states"].items()
          if s not in ("catalogued", "invalid", "retired", "failed")))'
}
for _ in $(seq 600); do
  left=$(pending)
  [[ $left == 0 ]] && break
  kill -0 $run_pid 2>/dev/null || { echo "ingest run stopped early; see .work/run.log" >&2; exit 1; }
  sleep 2
done
kill -TERM $run_pid && wait $run_pid || true
ingest status
ingest collections list

# The STAC API with STAC Browser, left running for a person to look: a demo run again replaces it.
# setsid: it is not this script's child, so the EXIT trap and a Ctrl-C of the terminal leave it be.
port=${DEMO_API_PORT:-8080}
if [[ -s .work/serve.pid ]] && kill -0 "$(cat .work/serve.pid)" 2>/dev/null; then
  kill -TERM "$(cat .work/serve.pid)" && sleep 1
fi
setsid .venv/bin/ingest --json-logs serve --port "$port" >.work/serve.log 2>&1 </dev/null &
echo $! >.work/serve.pid
for _ in $(seq 100); do
  curl -fsS -o /dev/null "http://127.0.0.1:$port/browser/" 2>/dev/null && break
  kill -0 "$(cat .work/serve.pid)" 2>/dev/null || { echo "ingest serve stopped; see .work/serve.log" >&2; exit 1; }
  sleep 0.2
done

cat <<MSG

Done. Browse the catalogue (collections, items, footprints on the map, thumbnails):

  http://127.0.0.1:$port/browser/

That is \`ingest serve\` (the STAC API at http://127.0.0.1:$port/, log .work/serve.log), left running;
stop it with: kill \$(cat .work/serve.pid). The stack keeps running too (stop it with:
.venv/bin/ingest stack down). More ways to look at the result:
  .venv/bin/ingest status
  .venv/bin/ingest products show <product id>
  INGEST_METRICS_PORT=9464 .venv/bin/ingest run   # the daemon; its dashboard: http://127.0.0.1:9464/dashboard/
  source .stack/stack.env
  psql "\$INGEST_DATABASE_URL" -c "select collection, id, datetime from pgstac.items order by datetime"
Run it again: only new products are fetched (the provider's catalogue is kept in .work/provider;
add some with: .venv/bin/ingest dev generate --count 3 --start 2026-02-01).
MSG
