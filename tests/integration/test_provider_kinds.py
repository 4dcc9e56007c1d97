"""The same catalogue scenario through both kinds of provider: a STAC API (the local provider) and the
Copernicus Data Space's OData + OpenID + token downloads (EODAG's own ``cop_dataspace`` plugins, every
address moved to the CDSE-like server). Same products in, the same states, events and items out."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest

from ingest.adapters import pgstac
from ingest.devtools.publish import plan_products, publish_generated
from ingest.harvest import harvest
from ingest.state import repo
from ingest.state.machine import State
from tests.conftest import Stack, _throwaway_database
from tests.integration.conftest import START, World, WorldFactory

CHAIN = ["discovered", "claimed", "downloaded", "converted", "uploaded", "catalogued"]
VOLATILE = {"created", "updated", "ingest:provider", "ingest:ingested_at", "ingest:upstream_checksum"}


def _scenario(world: World) -> dict[str, Any]:
    """Harvest, process everything, then a product published later: what the catalogue ends with."""
    first = harvest(world.conn, world.provider, world.spec)
    for entry in world.entries:
        out = world.process(entry.id)
        assert out.state is State.CATALOGUED, f"{entry.id}: {out.error}"
    # one more product, published after the watermark: the next harvest finds it and only it
    (plan,) = plan_products(1, kinds=(world.kind,), start=START + timedelta(days=3))  # type: ignore[arg-type]
    late = publish_generated(world.root, plan, size=60)
    second = harvest(world.conn, world.provider, world.spec)
    out = world.process(late.id)
    assert out.state is State.CATALOGUED, out.error
    items, ids = {}, [*(e.id for e in world.entries), late.id]
    for pid in ids:
        row = repo.get_product(world.conn, pid)
        assert row is not None
        item = pgstac.get_item(world.dsn, world.spec.id, row["item_id"])
        assert item is not None
        items[item["id"]] = item
    events = {pid: [e["to_state"] for e in repo.events_of(world.conn, pid)] for pid in ids}
    with psycopg.connect(world.dsn) as conn:
        checksums: dict[str, str] = dict(
            conn.execute(
                "SELECT id, upstream_checksum FROM ingest.products WHERE collection = %s", [world.spec.id]
            ).fetchall()
        )
    return {
        "found": (len(first.new_ids), len(second.new_ids)),
        "items": items,
        "events": events,
        "checksums": checksums,
    }


def _comparable(item: dict[str, Any]) -> dict[str, Any]:
    props = {k: v for k, v in item["properties"].items() if k not in VOLATILE}
    assets = {k: {f: v for f, v in a.items() if f != "href"} for k, a in item["assets"].items()}
    return {"geometry": item["geometry"], "bbox": item["bbox"], "properties": props, "assets": assets}


@pytest.mark.parametrize("kind", ["S2_MSI_L2A", "S1_SAR_GRD"])
def test_the_same_products_through_stac_and_cdse_end_as_the_same_catalogue(
    make_world: WorldFactory, kind: str, stack: Stack, migrated_template: str
) -> None:
    stac = _scenario(make_world(kind, count=2, flavour="stac"))
    with _throwaway_database(stack, migrated_template) as second_site:  # product ids are a site's own
        cdse = _scenario(make_world(kind, count=2, flavour="cdse", database=second_site))

    assert stac["found"] == cdse["found"] == (2, 1)
    assert stac["items"].keys() == cdse["items"].keys()
    for item_id, item in stac["items"].items():
        assert _comparable(cdse["items"][item_id]) == _comparable(item), item_id
        assert item["properties"]["ingest:provider"] == "local"
        assert cdse["items"][item_id]["properties"]["ingest:provider"] == "cop_dataspace"
    assert stac["events"] == cdse["events"] == {pid: CHAIN for pid in stac["events"]}
    assert len(stac["events"]) == 3
    # the provider's own checksum was verified: BLAKE3 where CDSE offers it, the STAC multihash otherwise
    assert all(c.startswith("blake3:") and len(c) == 7 + 64 for c in cdse["checksums"].values())
    assert all(c and not c.startswith("blake3:") for c in stac["checksums"].values())
