"""The access tests' OpenID provider: panva's oidc-provider (tests/oidc/server.mjs, installed by the
bootstrap with ``npm ci``), a real Node process on a free port of 127.0.0.1."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests import proctree
from tests.conftest import ROOT, free_port

SERVER = ROOT / "tests" / "oidc" / "server.mjs"


@dataclass
class OpenIdProvider:
    issuer: str
    audience: str
    log: Path
    secrets_of: dict[str, str] = field(default_factory=dict)

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def token(self, client_id: str) -> str:
        """An access token of ``client_id`` by the client-credentials grant."""
        r = requests.post(
            f"{self.issuer}/token",
            data={"grant_type": "client_credentials", "client_id": client_id,
                  "client_secret": self.secrets_of[client_id], "scope": "stac"},
            timeout=10,
        )  # fmt: skip
        r.raise_for_status()
        return str(r.json()["access_token"])


@contextmanager
def openid_provider(
    logs: Path,
    clients: dict[str, Sequence[str] | None],
    *,
    audience: str = "eo-ingest",
    port: int | None = None,
    kid: str = "key-1",
) -> Iterator[OpenIdProvider]:
    """``clients``: client id -> its entitlements (None: the claim is absent)."""
    port = port or free_port()
    creds = {c: secrets.token_urlsafe(32) for c in clients}
    spec = [
        {"client_id": c, "client_secret": creds[c], **({"entitlements": list(e)} if e is not None else {})}
        for c, e in clients.items()
    ]
    log = logs / f"oidc-{port}.log"
    env = {**os.environ, "OIDC_CLIENTS": json.dumps(spec), "OIDC_AUDIENCE": audience, "OIDC_KID": kid}
    with open(log, "wb") as out:
        proc = subprocess.Popen(["node", str(SERVER), str(port)], env=env, stdout=out, stderr=subprocess.STDOUT)
    provider = OpenIdProvider(f"http://127.0.0.1:{port}", audience, log, creds)
    try:
        deadline = time.monotonic() + 30
        while "ready " not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the OpenID provider did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.05)
        yield provider
    finally:
        proctree.stop(proc, timeout=10)
