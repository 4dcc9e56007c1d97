"""Benchmark: asset redirects through the gateway (token verified with a kept JWKS, policy and item read
from pgstac, a presigned URL made) against making the same presigned URLs in-process, in one run; and
a plain API request (``GET /collections/{id}``) over the same HTTP path, to tell the gateway's own work
from the HTTP round trip.

    .venv/bin/python benchmarks/gateway.py [--requests 500]

A throw-away stack; one collection whose assets need an entitlement, one item; the tests' real OpenID
provider (``tests/oidc/server.mjs``, oidc-provider) for a client-credentials token; one ``ingest serve``
process (one worker) with the gateway on. Requests are sequential, redirects not followed (the object
is not read: the store's speed is not the gateway's), the three kinds interleaved in blocks of 50.
Printed: req/s, p50 and p95 in ms per kind, and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import free_port, stop, throwaway_stack

from ingest.access.policy import AccessPolicy
from ingest.adapters import pgstac
from ingest.adapters.s3 import ObjectStore
from ingest.collections import load_spec

ROOT = Path(__file__).resolve().parents[1]
VO = "urn:mace:egi.eu:group:vo.bench.eu:role=member#aai.egi.eu"
BLOCK = 50


@contextmanager
def process(cmd: list[str], env: dict[str, str], log: Path, ready: Callable[[], bool]) -> Iterator[None]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{cmd[0]} did not start:\n{log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        yield
    finally:
        stop(proc)


def answers(url: str) -> Callable[[], bool]:
    def ok() -> bool:
        try:
            return requests.get(url, timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    return ok


def pct(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100)[p - 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=500, help="requests per kind")
    args = ap.parse_args()
    with throwaway_stack() as stack_env, tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        logs = Path(tmp)
        store = ObjectStore(
            bucket=stack_env["INGEST_S3_BUCKET"], prefix=stack_env.get("INGEST_S3_PREFIX", "ingest"),
            endpoint_url=stack_env["INGEST_S3_ENDPOINT_URL"], region=stack_env["INGEST_S3_REGION"],
            access_key_id=SecretStr(stack_env["INGEST_S3_ACCESS_KEY_ID"]),
            secret_access_key=SecretStr(stack_env["INGEST_S3_SECRET_ACCESS_KEY"]),
        )  # fmt: skip
        spec = load_spec(ROOT / "collections" / "sentinel-2-l2a.yaml")
        spec = spec.model_copy(update={"access": AccessPolicy(policy="entitlements", entitlements=(VO,))})
        dsn = stack_env["INGEST_DATABASE_URL"]
        pgstac.upsert_collections(dsn, [spec.stac_collection()])
        item_id = "S2B_T33UUP_20260301T101609_L2A"
        key = store.item_key(spec.id, item_id, "red.tif")
        pgstac.load_items(dsn, [{
            "type": "Feature", "stac_version": "1.1.0", "id": item_id, "collection": spec.id,
            "geometry": {"type": "Point", "coordinates": [13.0, 45.0]}, "bbox": [13.0, 45.0, 13.0, 45.0],
            "properties": {"datetime": "2026-03-01T10:16:09Z"}, "links": [],
            "assets": {"red": {"href": store.href(key), "type": "image/tiff; application=geotiff", "roles": ["data"]}},
        }])  # fmt: skip
        oidc_port, api_port = free_port(), free_port()
        issuer = f"http://127.0.0.1:{oidc_port}"
        secret = os.urandom(24).hex()
        oidc_env = {
            **os.environ, "OIDC_AUDIENCE": "eo-ingest",
            "OIDC_CLIENTS": json.dumps([{"client_id": "bench", "client_secret": secret, "entitlements": [VO]}]),
        }  # fmt: skip
        api_env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
        api_env.update(
            {k: v for k, v in stack_env.items() if k.startswith("INGEST_S3_")},
            INGEST_API_DATABASE_URL=stack_env["INGEST_API_DATABASE_URL"], INGEST_STACK_DIR=str(logs / "no-stack"),
            INGEST_LOG_LEVEL="WARNING", INGEST_ASSET_GATEWAY="true",
            INGEST_OIDC_ISSUERS=json.dumps(
                [{"discovery_url": f"{issuer}/.well-known/openid-configuration", "audience": "eo-ingest"}]
            ),
        )  # fmt: skip
        api = f"http://127.0.0.1:{api_port}"
        serve = [sys.executable, "-m", "ingest", "serve", "--port", str(api_port), "--workers", "1"]
        node = ["node", str(ROOT / "tests" / "oidc" / "server.mjs"), str(oidc_port)]
        with (
            process(node, oidc_env, logs / "oidc.log", answers(f"{issuer}/.well-known/openid-configuration")),
            process(serve, api_env, logs / "serve.log", answers(f"{api}/_mgmt/ping")),
        ):
            grant = {"grant_type": "client_credentials", "client_id": "bench", "client_secret": secret, "scope": "stac"}
            token = requests.post(f"{issuer}/token", data=grant, timeout=10).json()["access_token"]
            session = requests.Session()
            auth = {"Authorization": f"Bearer {token}"}
            asset_url = f"{api}/collections/{spec.id}/items/{item_id}/assets/red"

            def redirect() -> None:
                r = session.get(asset_url, headers=auth, allow_redirects=False, timeout=30)
                assert r.status_code == 307, r.text

            def collection() -> None:
                assert session.get(f"{api}/collections/{spec.id}", timeout=30).status_code == 200

            def presign() -> None:
                store.presign(key, method="GET", expires_s=300, endpoint_url=store.endpoint_url)

            kinds: dict[str, Callable[[], None]] = {
                "gateway 307": redirect, "GET /collections/{id}": collection, "presign in-process": presign,
            }  # fmt: skip
            for fn in kinds.values():  # warm-up: keys fetched, connections open, clients made
                for _ in range(20):
                    fn()
            times: dict[str, list[float]] = {k: [] for k in kinds}
            for start in range(0, args.requests, BLOCK):
                for name, fn in kinds.items():
                    for _ in range(min(BLOCK, args.requests - start)):
                        t0 = time.perf_counter()
                        fn()
                        times[name].append(time.perf_counter() - t0)
        print(f"{args.requests} sequential requests per kind, one `ingest serve` worker, JWKS kept")
        print(f"{'kind':24} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8}")
        for name, t in times.items():
            print(f"{name:24} {len(t) / sum(t):8.1f} {pct(t, 50) * 1000:8.2f} {pct(t, 95) * 1000:8.2f}")
        g, c, p = times["gateway 307"], times["GET /collections/{id}"], times["presign in-process"]
        print(f"\ngateway / presign in-process: p50 {pct(g, 50) / pct(p, 50):.1f}x, p95 {pct(g, 95) / pct(p, 95):.1f}x")
        print(
            f"gateway / GET /collections/{{id}}: p50 {pct(g, 50) / pct(c, 50):.2f}x, p95 {pct(g, 95) / pct(c, 95):.2f}x"
        )


if __name__ == "__main__":
    main()
