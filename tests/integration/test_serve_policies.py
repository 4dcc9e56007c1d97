"""A collection's retention policy reaches a federated client (``ingest.api.policies``): in the served
collection document (``ingest:retention``) and, for brokers that rebuild collections from a fixed list
of fields, through a link to ``/collections/{id}/retention``. Checked through the broker's own model:
stac-pydantic 2.0.3's ``Collection`` (as EO-MQS 0.3.2 uses it), installed in a throw-away environment,
then cut to the broker's field list."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from ingest import collections as col
from ingest.adapters import pgstac
from tests.conftest import ROOT, Stack
from tests.integration.api import ApiDatabase, ApiServer, api_database, api_server

ID = "sentinel-2-l2a"
# what EO-MQS keeps of a member's collection
BROKER_FIELDS = (
    "type", "id", "stac_extensions", "stac_version", "title", "description", "keywords", "license", "providers",
    "summaries", "extent", "links",
)  # fmt: skip
BROKER_SCRIPT = """
import json, sys
from stac_pydantic import Collection
doc = json.load(sys.stdin)
doc["stac_version"] = "1.0.0"  # the broker rewrites members' documents to 1.0.0 (DESIGN.md)
model = Collection(**doc)
out = json.loads(model.json(by_alias=True, exclude_unset=True))  # pydantic 1, as stac-pydantic 2.0 needs
print(json.dumps({k: out[k] for k in %r if k in out}))
"""


def spec() -> col.CollectionSpec:
    base = col.load_spec(ROOT / "collections" / f"{ID}.yaml")
    retention = base.retention.model_copy(update={"enabled": True})
    return base.model_copy(update={"retention": retention})


@pytest.fixture(scope="module")
def db(stack: Stack, migrated_template: str) -> Iterator[ApiDatabase]:
    with api_database(stack, migrated_template) as d:
        pgstac.upsert_collections(d.admin_dsn, [spec().stac_collection()])
        yield d


@pytest.fixture(scope="module")
def server(db: ApiDatabase, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with api_server(db.reader_dsn, tmp_path_factory.mktemp("serve-policies")) as s:
        yield s


@pytest.fixture(scope="module")
def broker_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = tmp_path_factory.mktemp("broker") / "venv"
    uv = ROOT / ".tools" / "bin" / "uv"
    subprocess.run([str(uv), "venv", "-q", "--python", "3.11", str(env)], check=True, timeout=120)
    python = env / "bin" / "python"
    subprocess.run(
        [str(uv), "pip", "install", "-q", "--python", str(python), "stac-pydantic==2.0.3", "pydantic<2"],
        check=True,
        timeout=300,
    )
    return python


def as_the_broker_keeps_it(python: Path, doc: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [str(python), "-c", BROKER_SCRIPT % (BROKER_FIELDS,)], input=json.dumps(doc), capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    kept: dict[str, Any] = json.loads(out.stdout)
    return kept


def test_the_policy_survives_the_brokers_model_through_its_link(server: ApiServer, broker_python: Path) -> None:
    served = requests.get(f"{server.url}/collections/{ID}", timeout=30).json()
    expected = spec().retention.published()
    assert expected is not None and served["ingest:retention"] == expected
    kept = as_the_broker_keeps_it(broker_python, served)
    assert "ingest:retention" not in kept  # the field does not reach a federated client ...
    (link,) = [x for x in kept["links"] if x["rel"] == "ingest:retention"]  # ... the link does
    assert link["href"] == f"{server.url}/collections/{ID}/retention"
    policy = requests.get(link["href"], timeout=30)
    assert policy.status_code == 200 and policy.headers["content-type"].startswith("application/json")
    assert policy.json()["retention"] == expected and policy.json()["collection"] == ID


def test_an_unknown_collection_has_no_policy(server: ApiServer) -> None:
    r = requests.get(f"{server.url}/collections/nope/retention", timeout=30)
    assert r.status_code == 404
    assert requests.get(f"{server.url}/collections/{'x' * 300}/retention", timeout=30).status_code in (400, 404, 422)
