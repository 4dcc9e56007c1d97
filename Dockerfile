# syntax=docker/dockerfile:1
#
# The eo-ingest image: one image for every service of docker-compose.yml (migrate, api, scheduler,
# worker); each service names its `ingest` command.
#
# GDAL comes from the rasterio wheel (manylinux: GDAL 3.10 with the JP2OpenJPEG and COG drivers
# built in), exactly as on the development machines and in CI, so the image converts with the GDAL
# the tests ran. No distribution GDAL is installed: Debian's is another version, and two GDALs in
# one process clash. The other C libraries come in their wheels too (libpq in psycopg-binary, PROJ
# in pyproj); the slim base supplies glibc and libstdc++, which manylinux wheels expect from the
# system. So the runtime stage needs no apt-get at all.
#
# Three stages: `web` builds the pages' JavaScript with their locked npm dependencies (STAC Browser
# for `ingest serve` at /browser/, the dashboard's map library), exactly as scripts/bootstrap.sh does;
# `build` installs uv (the version scripts/bootstrap.sh pins) and the locked environment (uv.lock,
# `uv sync --frozen`, no dev extras) and takes the built pages from `web`; `runtime` gets only /app
# (the code, its .venv and the built pages: no Node) and runs as an unprivileged user.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG NODE_IMAGE=node:20.20.2-bookworm-slim

FROM ${NODE_IMAGE} AS web
WORKDIR /src
COPY web/stac-browser/package.json web/stac-browser/package-lock.json web/stac-browser/build.js web/stac-browser/
COPY web/stac-browser/overlay web/stac-browser/overlay
RUN npm ci --prefix web/stac-browser --no-audit --no-fund \
    && npm run --prefix web/stac-browser build
COPY ingest/dashboard/npm/package.json ingest/dashboard/npm/package-lock.json ingest/dashboard/npm/
RUN npm ci --prefix ingest/dashboard/npm --omit=dev --no-audit --no-fund

FROM ${PYTHON_IMAGE} AS build
ENV UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir "uv==0.13.9"
WORKDIR /app
# dependencies first: this layer is rebuilt only when the lock changes
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-install-project --python /usr/local/bin/python3.11
# the project itself, installed editable: migrations find alembic/ beside the ingest package
COPY alembic.ini ./
COPY alembic ./alembic
COPY collections ./collections
COPY ingest ./ingest
RUN uv sync --frozen --python /usr/local/bin/python3.11
# where ingest.web.browser and ingest.dashboard.http look for them
COPY --from=web /src/web/stac-browser/dist ./web/stac-browser/dist
COPY --from=web /src/ingest/dashboard/npm/node_modules ./ingest/dashboard/npm/node_modules

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 ingest \
    && useradd --system --uid 10001 --gid ingest --home-dir /var/lib/ingest --shell /usr/sbin/nologin ingest \
    && mkdir -p /var/lib/ingest/work \
    && chown -R ingest:ingest /var/lib/ingest
COPY --from=build /app /app
WORKDIR /app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/ingest \
    INGEST_WORK_DIR=/var/lib/ingest/work \
    INGEST_METRICS_HOST=0.0.0.0
USER 10001:10001
# 8080: `ingest serve`; 9464: /metrics, /livez, /readyz of `ingest scheduler` and `ingest worker`
EXPOSE 8080 9464
CMD ["ingest", "--help"]
