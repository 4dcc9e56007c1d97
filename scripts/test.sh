#!/usr/bin/env bash
# The test command: install everything, lint, type-check, then run the tests against real services
# (the tests start their own PostgreSQL+PostGIS+pgstac cluster and S3 server on free ports).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
echo "==> ruff";  .venv/bin/ruff check ingest tests benchmarks
echo "==> mypy";  .venv/bin/mypy ingest tests benchmarks
echo "==> pytest"
exec .venv/bin/pytest "$@"
