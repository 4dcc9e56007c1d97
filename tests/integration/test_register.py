"""Registration with a federation catalogue end to end: ``ingest register`` as an OS process pushes
real pipeline items to a real stac-fastapi-pgstac with the Transactions extension (its own database
in the test cluster), whose writes want a client-credentials token of the real OpenID provider.

Four S2 L2A products, sensed 30 and 10 days ago (two each). After every cycle (ingest, a changed item,
retention removing the older two, a reprocessed product under either policy) the target's catalogue
equals ours, item by item.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import psycopg
import pytest
import requests
import yaml

from ingest.adapters import pgstac
from ingest.federation import plan
from ingest.settings import RegisterTarget
from ingest.state.machine import State
from tests import proctree
from tests.conftest import ROOT, Stack, _throwaway_database, free_port, run_cli
from tests.integration.conftest import World, WorldFactory, catalogued_world
from tests.integration.oidc import OpenIdProvider, openid_provider
from tests.integration.test_reprocessing import setup

CLIENT = "eo-ingest-site"


@dataclass
class Target:
    url: str
    dsn: str
    port: int
    log: Path
    oidc: OpenIdProvider
    proc: subprocess.Popen[bytes] | None = None

    def start(self, *, die_after: int | None = None) -> None:
        """stac-fastapi-pgstac under uvicorn on ``port`` (the same one again after a crash)."""
        info = psycopg.conninfo.conninfo_to_dict(self.dsn)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("INGEST_", "PG"))},
            "PGUSER": str(info["user"]), "PGPASSWORD": str(info["password"]), "PGHOST": str(info["host"]),
            "PGPORT": str(info["port"]), "PGDATABASE": str(info["dbname"]),
            "ENABLE_TRANSACTIONS_EXTENSIONS": "true", "DB_MIN_CONN_SIZE": "1", "DB_MAX_CONN_SIZE": "2",
            "UPSTREAM_ISSUER": self.oidc.discovery_url, "UPSTREAM_AUDIENCE": self.oidc.audience,
            **({"UPSTREAM_DIE_AFTER": str(die_after)} if die_after is not None else {}),
        }  # fmt: skip
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--factory", "tests.integration.upstream_app:create_app",
                 "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
                env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(self.url + "/", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the target did not start:\n{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            proctree.stop(self.proc, timeout=15)

    def items(self, collection: str) -> dict[str, dict[str, Any]]:
        got: dict[str, dict[str, Any]] = {}
        url: str | None = f"{self.url}/collections/{collection}/items?limit=100"
        while url:
            page = requests.get(url, timeout=10)
            page.raise_for_status()
            body = page.json()
            got |= {f["id"]: f for f in body["features"]}
            url = next((lk["href"] for lk in body.get("links", []) if lk.get("rel") == "next"), None)
        return got


@pytest.fixture
def target(stack: Stack, migrated_template: str, tmp_path: Path) -> Iterator[Target]:
    with openid_provider(tmp_path, {CLIENT: None}, audience="federation") as oidc, \
            _throwaway_database(stack, migrated_template) as dsn:  # fmt: skip
        port = free_port()
        t = Target(f"http://127.0.0.1:{port}", dsn, port, tmp_path / "target.log", oidc)
        t.start()
        try:
            yield t
        finally:
            t.stop()


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def world(make_world: WorldFactory) -> World:
    return catalogued_world(make_world, (30, 10))


def targets_json(target: Target, **extra: Any) -> str:
    return json.dumps([{
        "name": "national", "url": target.url, "token_url": f"{target.oidc.issuer}/token", "client_id": CLIENT,
        "client_secret": target.oidc.secrets_of[CLIENT], "scope": "stac", **extra,
    }])  # fmt: skip


def register(
    world: World, stack: Stack, target: Target, *args: str, spec: str | None = None, **target_fields: Any
) -> Any:
    targets = targets_json(target, **target_fields)
    env = world.cli_env(stack, spec, INGEST_REGISTER_TARGETS=targets, INGEST_UPDATED_SETTLE_S="1")
    out = run_cli("--json-logs", "register", *args, env=env, timeout=180)
    secret = target.oidc.secrets_of[CLIENT]
    assert secret not in out.stdout + out.stderr, "the client secret was printed"
    assert "eyJ" not in out.stdout + out.stderr, "a token was printed"
    return out


def public(doc: dict[str, Any], base: str | None = None) -> dict[str, Any]:
    """Without the structural links; ``base``: relative hrefs resolved as a STAC API serves them (the
    version extension's links of a ``keep`` collection are stored relative, and each API resolves them
    against itself: on the target they name the target's copies)."""
    links = [lk for lk in doc.get("links", []) if lk.get("rel") not in plan.STRUCTURAL]
    if base is not None:
        links = [{**lk, "href": urljoin(base + "/", lk["href"])} for lk in links]
    return {k: v for k, v in doc.items() if k != "links"} | {"links": links}


def assert_equal_catalogues(world: World, target: Target) -> None:
    ours = {i: pgstac.get_item(world.dsn, world.spec.id, i) or {} for i in pgstac.item_ids(world.dsn, world.spec.id)}
    theirs = target.items(world.spec.id)
    assert sorted(theirs) == sorted(ours)
    for item_id, doc in ours.items():
        assert public(theirs[item_id]) == public(doc, target.url), item_id


def report_of(out: Any) -> dict[str, Any]:
    (collection,) = json.loads(out.stdout)["targets"][0]["collections"]
    return collection  # type: ignore[no-any-return]


def test_push_is_incremental_idempotent_and_follows_changes_and_retention(
    world: World, stack: Stack, target: Target
) -> None:
    dry = register(world, stack, target, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert (report_of(dry)["sent"], report_of(dry)["deleted"]) == (4, 0)
    assert requests.get(f"{target.url}/collections/{world.spec.id}", timeout=10).status_code == 404  # nothing sent

    first = register(world, stack, target, "--json")
    assert first.returncode == 0, first.stderr
    assert (report_of(first)["sent"], report_of(first)["unchanged"], report_of(first)["rejected"]) == (4, 0, [])
    assert requests.get(f"{target.url}/collections/{world.spec.id}", timeout=10).json()["id"] == world.spec.id
    assert_equal_catalogues(world, target)

    again = register(world, stack, target)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [f"national/{world.spec.id}: 0 sent, 0 unchanged, 0 deleted, 0 rejected"]

    # a changed item (a reprocessed product's metadata, a corrected property): sent, alone
    changed_id = sorted(pgstac.item_ids(world.dsn, world.spec.id))[0]
    doc = pgstac.get_item(world.dsn, world.spec.id, changed_id) or {}
    doc["properties"] |= {"eo:cloud_cover": 1.5, "updated": _now().isoformat().replace("+00:00", "Z")}
    pgstac.load_items(world.dsn, [doc])
    third = register(world, stack, target, "--json")
    assert third.returncode == 0, third.stderr
    assert report_of(third)["sent"] == 1
    assert target.items(world.spec.id)[changed_id]["properties"]["eo:cloud_cover"] == 1.5
    assert_equal_catalogues(world, target)

    # retention removes the two older products: their items are deleted upstream
    policy = yaml.safe_load((ROOT / "collections" / "sentinel-2-l2a.yaml").read_text())
    policy["retention"] = {"enabled": True, "max_age": "15d"}
    spec = yaml.safe_dump(policy, sort_keys=False)
    retained = run_cli("retain", world.spec.id, "--yes", env=world.cli_env(stack, spec), timeout=180)
    assert retained.returncode == 0, retained.stderr
    assert len(pgstac.item_ids(world.dsn, world.spec.id)) == 2
    fourth = register(world, stack, target, "--json", spec=spec)
    assert fourth.returncode == 0, fourth.stderr
    assert (report_of(fourth)["sent"], report_of(fourth)["deleted"]) == (0, 2)
    assert_equal_catalogues(world, target)


def test_a_target_down_mid_push_stops_the_run_and_the_next_resumes(world: World, stack: Stack, target: Target) -> None:
    target.stop()
    target.start(die_after=1)  # it crashes on the second batch of new items it is sent
    down = register(world, stack, target, batch=2)
    assert down.returncode == 69, down.stdout + down.stderr
    assert "push stopped, the next run resumes" in down.stderr
    assert down.stderr.strip().splitlines()[-1].startswith("error: target national (")
    target.stop()
    target.start()
    assert len(target.items(world.spec.id)) == 2  # the first batch
    resumed = register(world, stack, target, "--json", batch=2)
    assert resumed.returncode == 0, resumed.stderr
    assert report_of(resumed)["sent"] == 2 and report_of(resumed)["unchanged"] == 2  # only what was not sent
    assert_equal_catalogues(world, target)


def test_an_item_the_target_rejects_is_reported_and_the_others_go_on(
    world: World, stack: Stack, target: Target
) -> None:
    bad_id = sorted(pgstac.item_ids(world.dsn, world.spec.id))[1]
    doc = pgstac.get_item(world.dsn, world.spec.id, bad_id) or {}
    doc["bbox"] = doc["bbox"][:3]  # pgstac keeps it; a STAC API's validation does not
    pgstac.load_items(world.dsn, [doc])
    out = register(world, stack, target)
    assert out.returncode == 65, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"national/{world.spec.id}: 3 sent, 0 unchanged, 0 deleted, 1 rejected", lines
    assert lines[1].startswith(f"  rejected {bad_id}: HTTP 4"), lines
    assert sorted(target.items(world.spec.id)) == sorted(set(pgstac.item_ids(world.dsn, world.spec.id)) - {bad_id})
    with psycopg.connect(world.dsn) as conn:  # the cursor stays: the next run tries it again
        assert conn.execute("SELECT count(*) FROM ingest.registration_cursors").fetchone() == (0,)
    again = register(world, stack, target)
    assert again.returncode == 65
    assert again.stdout.splitlines()[0] == f"national/{world.spec.id}: 0 sent, 3 unchanged, 0 deleted, 1 rejected"


def test_wrong_credentials_stop_the_run_with_one_line(world: World, stack: Stack, target: Target) -> None:
    env = world.cli_env(stack, INGEST_REGISTER_TARGETS=json.dumps([{
        "name": "national", "url": target.url, "token": "not-a-token"}]))  # fmt: skip
    out = run_cli("register", env=env, timeout=120)
    assert out.returncode == 69, out.stdout + out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        "error: target national: collection " + world.spec.id + ": our credentials were refused (HTTP 401)"
    )
    assert "not-a-token" not in out.stdout + out.stderr


@pytest.mark.parametrize("policy", ["keep", "replace"])
def test_a_reprocessed_product_reaches_the_target_as_our_catalogue_has_it(
    make_world: WorldFactory, stack: Stack, target: Target, policy: str
) -> None:
    """``keep``: the newer processing's item is sent and the older one again (now deprecated, linked);
    ``replace``: the one item, now the newer processing's, is sent again."""
    w, older, newer = setup(make_world, policy)
    assert w.process(older).state is State.CATALOGUED
    w.conn.commit()
    first = register(w, stack, target, "--json")
    assert first.returncode == 0, first.stderr
    assert report_of(first)["sent"] == 1
    assert w.process(newer).state is State.CATALOGUED
    w.conn.commit()
    second = register(w, stack, target, "--json")
    assert second.returncode == 0, second.stderr
    assert (report_of(second)["sent"], report_of(second)["deleted"]) == ((2, 0) if policy == "keep" else (1, 0))
    assert_equal_catalogues(w, target)
    theirs = target.items(w.spec.id)
    upstream_ids = {i["properties"]["ingest:upstream_id"]: i for i in theirs.values()}
    assert newer in upstream_ids
    if policy == "keep":
        assert upstream_ids[older]["properties"]["deprecated"] is True
    else:
        assert older not in upstream_ids and len(theirs) == 1


def test_the_scheduled_job_pushes_as_the_command_does(world: World, target: Target) -> None:
    from ingest.daemon.scheduler import run_register

    settings = world.settings.model_copy(
        update={"register_targets": [RegisterTarget.model_validate(t) for t in json.loads(targets_json(target))]}
    )
    run_register(settings, "national")
    assert_equal_catalogues(world, target)
    with psycopg.connect(world.dsn) as conn:
        assert conn.execute("SELECT target, collection FROM ingest.registration_cursors").fetchall() == [
            ("national", world.spec.id)
        ]
