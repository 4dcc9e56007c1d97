#!/usr/bin/env bash
# Install what the project needs on a fresh Debian machine: system packages (as root), uv, and the
# locked Python environment in .venv. Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
export UV_PYTHON_DOWNLOADS=never   # use the machine's Python 3.11; never fetch interpreters
need_apt=()
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c "import venv, ensurepip" 2>/dev/null || need_apt+=(python3-venv)
ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1 || need_apt+=(postgresql postgresql-15-postgis-3)
command -v curl >/dev/null || need_apt+=(curl)
command -v npm >/dev/null || need_apt+=(nodejs npm)   # the access tests' OpenID provider (tests/oidc)
command -v chromium >/dev/null || need_apt+=(chromium)   # the page tests' real browser (tests/browser.py)
if ((${#need_apt[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing system packages: ${need_apt[*]} (run this script as root, or: sudo apt-get install -y ${need_apt[*]})" >&2
    exit 1
  fi
  echo "==> apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [[ ! -x .tools/bin/uv ]]; then
  echo "==> installing uv ${UV_VERSION} into .tools/"
  python3 -m venv .tools
  .tools/bin/python -m pip install -q "uv==${UV_VERSION}"
fi

echo "==> uv sync (locked: uv.lock)"
.tools/bin/uv sync --frozen --extra dev --python python3.11 -q
echo "==> environment ready: .venv ($(.venv/bin/python --version))"

# the access tests' real OpenID provider (oidc-provider, locked in tests/oidc/package-lock.json)
if [[ ! -f tests/oidc/node_modules/.package-lock.json || tests/oidc/package-lock.json -nt tests/oidc/node_modules/.package-lock.json ]]; then
  echo "==> npm ci (tests/oidc: the OpenID provider of the access tests)"
  npm ci --prefix tests/oidc --no-audit --no-fund --loglevel=error
fi

# the operator dashboard's map (Leaflet, a Natural Earth outline; locked in ingest/dashboard/npm/package-lock.json),
# served by the scheduler's endpoint: nothing comes from a CDN
if [[ ! -f ingest/dashboard/npm/node_modules/.package-lock.json || ingest/dashboard/npm/package-lock.json -nt ingest/dashboard/npm/node_modules/.package-lock.json ]]; then
  echo "==> npm ci (ingest/dashboard/npm: the dashboard's map library)"
  npm ci --prefix ingest/dashboard/npm --no-audit --no-fund --loglevel=error
fi

# STAC Browser for `ingest serve` at /browser/ (web/stac-browser: locked npm toolchain, built into
# web/stac-browser/dist). Rebuilt only when its inputs changed: the stamp is a hash of the lock, the
# build script and the overlays.
sb=web/stac-browser
sb_inputs=$(cat "$sb/package-lock.json" "$sb/build.js" "$sb"/overlay/* | sha256sum | cut -d' ' -f1)
if [[ "$(cat "$sb/dist/.inputs" 2>/dev/null)" != "$sb_inputs" ]]; then
  echo "==> npm ci + build (web/stac-browser: STAC Browser, about a minute)"
  npm ci --prefix "$sb" --no-audit --no-fund --loglevel=error
  npm run --prefix "$sb" --silent build >/dev/null
  echo "$sb_inputs" >"$sb/dist/.inputs"
fi
