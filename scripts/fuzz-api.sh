#!/usr/bin/env bash
# The API fuzz, longer than in the test suite and with a fresh seed each run: random and hostile values
# for every parameter of every endpoint against a real `ingest serve` (its own throw-away database).
# Fails on any 5xx, any dead worker, or memory growing past the bound; Hypothesis prints the smallest
# request that shows it. Usage: scripts/fuzz-api.sh [EXAMPLES, default 20000] [SEED, default random]
set -euo pipefail
cd "$(dirname "$0")/.."
export FUZZ_EXAMPLES="${1:-20000}" FUZZ_SEED="${2:-$RANDOM}"
echo "==> API fuzz: ${FUZZ_EXAMPLES} requests, seed ${FUZZ_SEED}"
exec .venv/bin/pytest -q -p no:cacheprovider tests/integration/test_serve_fuzz.py --timeout 3600 \
  -p hypothesis --hypothesis-seed="${FUZZ_SEED}"
