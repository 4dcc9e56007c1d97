#!/usr/bin/env bash
# The test command: install everything, lint, type-check, then run the tests against real services
# (the tests start their own PostgreSQL+PostGIS+pgstac cluster and S3 server on free ports).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
echo "==> ruff";  .venv/bin/ruff check ingest tests benchmarks
echo "==> mypy";  .venv/bin/mypy ingest tests benchmarks
echo "==> pytest"
# Two test processes (pytest-xdist), a file each at a time: most tests wait on servers and subprocesses,
# so two share the machine's cores well (26 min -> 15 min here). TEST_WORKERS=0 runs in this process.
exec .venv/bin/pytest -n "${TEST_WORKERS:-2}" --dist loadfile "$@"
