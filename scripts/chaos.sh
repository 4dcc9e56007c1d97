#!/usr/bin/env bash
# The chaos test, longer than in the test suite: real `ingest worker` and `ingest scheduler` processes
# (2 + 2, restarted when killed) catalogue generated products while workers and schedulers get kill -9,
# PostgreSQL immediate restarts and SeaweedFS kill -9 + start, at random times from a seed; then every
# product must be catalogued exactly once, every asset in S3 with its size, no orphan object, coherent
# event histories and no process left. Prints what it did and the figures (release after a worker kill,
# scheduler takeover, first state change after a database restart, time to settle).
#
# Usage: scripts/chaos.sh [SEED, default random]
# Sizes (environment, defaults here; the suite runs 12 products, 3+2+1+1 faults over 20 s):
#   CHAOS_PRODUCTS=40 CHAOS_WORKER_KILLS=10 CHAOS_SCHEDULER_KILLS=5 CHAOS_PG_RESTARTS=3 CHAOS_S3_KILLS=2
#   CHAOS_WINDOW_S=90 (faults spread over this many seconds after the first claim)
#   CHAOS_SETTLE_S=300 (bound on the wait for every product catalogued after the last fault)
# A failure names the seed: `scripts/chaos.sh SEED` with the same sizes replays the same fault plan.
set -euo pipefail
cd "$(dirname "$0")/.."
export CHAOS_SEED="${1:-${CHAOS_SEED:-$RANDOM}}"
export CHAOS_PRODUCTS="${CHAOS_PRODUCTS:-40}"
export CHAOS_WORKER_KILLS="${CHAOS_WORKER_KILLS:-10}"
export CHAOS_SCHEDULER_KILLS="${CHAOS_SCHEDULER_KILLS:-5}"
export CHAOS_PG_RESTARTS="${CHAOS_PG_RESTARTS:-3}"
export CHAOS_S3_KILLS="${CHAOS_S3_KILLS:-2}"
export CHAOS_WINDOW_S="${CHAOS_WINDOW_S:-90}"
export CHAOS_SETTLE_S="${CHAOS_SETTLE_S:-300}"
echo "==> chaos: seed ${CHAOS_SEED}, ${CHAOS_PRODUCTS} products, faults over ${CHAOS_WINDOW_S} s:" \
  "${CHAOS_WORKER_KILLS} worker kills, ${CHAOS_SCHEDULER_KILLS} scheduler kills," \
  "${CHAOS_PG_RESTARTS} PostgreSQL restarts, ${CHAOS_S3_KILLS} SeaweedFS kills"
exec .venv/bin/pytest -q -s -p no:cacheprovider tests/integration/faults/test_chaos.py --timeout 3600
