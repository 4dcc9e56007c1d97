"""The reprocessing policy end to end (``upstream: {reprocessing: replace|keep}``): two processings of one
Sentinel-2 L1C datatake and tile (baselines 05.10 and 05.11) catalogued through the pipeline from the local
provider. Generated (and real) Sentinel-2 item ids leave the baseline out, so with ``replace`` both make the
same item id and the same S3 prefix; with ``keep`` each gets an id of its own.

To show that no object is left that nothing owns, the older product's item is given one asset more than
the newer one has (an object under the prefix that only the older processing wrote).
"""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ingest.adapters import pgstac
from ingest.devtools import generator
from ingest.devtools.publish import publish_safe
from ingest.harvest import harvest
from ingest.stac_validation import validate_item
from ingest.state.machine import State
from tests.integration.conftest import START, World, WorldFactory

SENSING = START + timedelta(hours=10)
EXTRA = "only-in-the-older-processing.xml"


def publish(world: World, baseline: str) -> str:
    world.root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=world.root) as tmp:
        safe = generator.generate_s2(
            Path(tmp), level="L1C", tile="32TLR", sensing=SENSING.replace(tzinfo=None), baseline=baseline, size=60
        )
        entry = publish_safe(world.root, safe, collection="S2_MSI_L1C", sensing=SENSING, published=SENSING)
    return entry.id


def setup(make_world: WorldFactory, policy: str | None) -> tuple[World, str, str]:
    """A world whose provider lists both processings, recorded here (discovered); returns (older, newer)."""
    w = make_world("S2_MSI_L1C", count=0)
    if policy is not None:
        w.spec = w.spec.model_copy(update={"upstream": w.spec.upstream.model_copy(update={"reprocessing": policy})})
    older, newer = publish(w, "05.10"), publish(w, "05.11")
    assert older != newer and older < newer
    assert sorted(harvest(w.conn, w.provider, w.spec).new_ids) == [older, newer]
    return w, older, newer


def row(w: World, product_id: str) -> tuple[str, str | None]:
    got = w.conn.execute("SELECT state, item_id FROM ingest.products WHERE id = %s", [product_id]).fetchone()
    assert got is not None
    return str(got[0]), got[1]


def events(w: World, product_id: str) -> list[tuple[str, str]]:
    rows = w.conn.execute(
        "SELECT to_state, message FROM ingest.events WHERE product_id = %s ORDER BY id", [product_id]
    ).fetchall()
    return [(str(a), str(b)) for a, b in rows]


def items(w: World) -> list[dict[str, Any]]:
    rows = w.conn.execute("SELECT id, content FROM pgstac.items WHERE collection = %s", [w.spec.id]).fetchall()
    return [{**r[1], "id": r[0]} for r in rows]


def keys(w: World, item_id: str) -> set[str]:
    store = w.store
    return set(store.list_keys(store.item_prefix(w.spec.id, item_id)))


def named(w: World, item_id: str) -> set[str]:
    """The keys the served item's assets name."""
    item = pgstac.get_item(w.dsn, w.spec.id, item_id)
    assert item is not None
    base = f"s3://{w.store.bucket}/"
    hrefs = [a.get("alternate", {}).get("s3", {}).get("href") or a["href"] for a in item["assets"].values()]
    return {h[len(base) :] for h in hrefs if h.startswith(base)}


def give_older_an_extra_asset(w: World, item_id: str) -> str:
    """The older processing's item names one object more than the newer one will write."""
    store = w.store
    key = store.item_key(w.spec.id, item_id, EXTRA)
    with tempfile.NamedTemporaryFile() as f:
        f.write(b"<old/>")
        f.flush()
        store.put_file(key, Path(f.name), media_type="application/xml", sha256="0" * 64)
    item = pgstac.get_item(w.dsn, w.spec.id, item_id)
    assert item is not None
    item["assets"]["extra"] = {"href": store.href(key), "type": "application/xml", "roles": ["metadata"]}
    pgstac.load_items(w.dsn, [item])
    assert key in named(w, item_id) and key in keys(w, item_id)
    return key


def versions(item: dict[str, Any]) -> dict[str, str]:
    return {link["rel"]: link["href"].rsplit("/", 1)[-1] for link in item["links"] if "version" in link["rel"]}


@pytest.mark.parametrize("newer_first", [False, True], ids=["in-order", "newer-first"])
def test_keep_catalogues_both_under_ids_of_their_own_the_older_marked_deprecated(
    make_world: WorldFactory, newer_first: bool
) -> None:
    """``keep``: each processing an item (and an S3 prefix) of its own, joined by the version extension's
    links, the older deprecated, whichever order they come in; nothing retired, every object named."""
    w, older, newer = setup(make_world, "keep")
    for pid in (newer, older) if newer_first else (older, newer):
        assert w.process(pid).state is State.CATALOGUED
    (_, old_id), (_, new_id) = row(w, older), row(w, newer)
    assert old_id and new_id and old_id != new_id
    assert old_id.endswith("_N0510_" + older.rsplit("_", 1)[-1]) and new_id.endswith(
        "_N0511_" + newer.rsplit("_", 1)[-1]
    )
    assert row(w, older) == ("catalogued", old_id) and row(w, newer) == ("catalogued", new_id)
    assert {i["id"] for i in items(w)} == {old_id, new_id}
    old, new = pgstac.get_item(w.dsn, w.spec.id, old_id), pgstac.get_item(w.dsn, w.spec.id, new_id)
    assert old is not None and new is not None
    assert old["properties"]["deprecated"] is True and "deprecated" not in new["properties"]
    assert versions(old) == {"successor-version": new_id, "latest-version": new_id}
    assert versions(new) == {"predecessor-version": old_id}
    assert old["properties"]["version"].startswith("N0510 ") and new["properties"]["version"].startswith("N0511 ")
    for doc in (old, new):
        validate_item(doc)  # the version extension's schema is shipped and checked
        assert keys(w, doc["id"]) == named(w, doc["id"]) != set()
    if newer_first:  # the older one's arrival changed the newer one's item: a harvester sees it by `updated`
        assert new["properties"]["updated"] >= old["properties"]["created"]
    assert w.conn.execute("SELECT count(*) FROM ingest.retirements").fetchone() == (0,)


def test_replace_retires_the_older_processing_and_leaves_no_orphan(make_world: WorldFactory) -> None:
    w, older, newer = setup(make_world, None)  # the default
    assert w.spec.upstream.reprocessing == "replace"
    assert w.process(older).state is State.CATALOGUED
    item_id = row(w, older)[1]
    assert item_id is not None
    extra = give_older_an_extra_asset(w, item_id)
    assert w.process(newer).state is State.CATALOGUED

    assert row(w, newer) == ("catalogued", item_id)
    assert row(w, older) == ("retired", item_id)
    to, message = events(w, older)[-1]
    assert to == "retired" and "reprocessing: replaced by the newer processing" in message and newer in message
    (item,) = items(w)
    assert item["id"] == item_id and item["properties"]["ingest:upstream_id"] == newer
    assert extra not in keys(w, item_id)
    assert keys(w, item_id) == named(w, item_id)  # every object named by the item, every named object there
    # the item is the newer one's: not listed as deleted, no retirement left to finish (it would delete it)
    gone = w.conn.execute("SELECT count(*) FROM ingest.retirements WHERE collection = %s", [w.spec.id]).fetchone()
    assert gone == (0,)


def test_an_older_processing_after_the_newer_one_is_never_catalogued_over_it(make_world: WorldFactory) -> None:
    w, older, newer = setup(make_world, None)
    assert w.process(newer).state is State.CATALOGUED
    item_id = row(w, newer)[1]
    assert item_id is not None
    before = {k: w.store.head(k) for k in keys(w, item_id)}

    out = w.process(older)
    assert out.state is State.RETIRED and out.error is not None and newer in out.error
    assert row(w, older) == ("retired", None)
    (to, message), *_ = reversed(events(w, older))
    assert to == "retired" and f"the newer processing {newer} is catalogued" in message
    assert [e[0] for e in events(w, older)] == ["discovered", "retired"]  # never claimed: nothing downloaded
    (item,) = items(w)
    assert item["properties"]["ingest:upstream_id"] == newer
    assert {k: w.store.head(k) for k in keys(w, item_id)} == before  # not one object rewritten
    assert row(w, newer) == ("catalogued", item_id)


def test_an_older_processing_with_an_item_of_its_own_goes_through_retention(make_world: WorldFactory) -> None:
    """Sentinel-3 item ids carry the processing; shown here on the S2 pair with the older product's item
    moved to an id of its own: its item leaves pgstac into the deleted-items listing, its objects go."""
    w, older, newer = setup(make_world, None)
    w.conn.commit()
    w.conn.autocommit = True  # as a worker's: retention's pgstac connection must see the retirement rows
    assert w.process(older).state is State.CATALOGUED
    item_id = row(w, older)[1]
    assert item_id is not None
    store, own = w.store, f"{item_id}_N0510"
    item = pgstac.get_item(w.dsn, w.spec.id, item_id)
    assert item is not None
    key = store.item_key(w.spec.id, own, EXTRA)
    with tempfile.NamedTemporaryFile() as f:
        f.write(b"<old/>")
        f.flush()
        store.put_file(key, Path(f.name), media_type="application/xml", sha256="0" * 64)
    item["id"], item["links"] = own, []
    item["assets"] = {"extra": {"href": store.href(key), "type": "application/xml", "roles": ["metadata"]}}
    pgstac.load_items(w.dsn, [item])
    store.delete_item_objects(w.spec.id, item_id)
    pgstac.delete_items(w.dsn, w.spec.id, [item_id])
    w.conn.execute(
        "UPDATE ingest.products SET item_id = %s, s3_prefix = %s WHERE id = %s",
        [own, store.href(store.item_prefix(w.spec.id, own)), older],
    )

    assert w.process(newer).state is State.CATALOGUED
    assert row(w, older) == ("retired", own) and row(w, newer) == ("catalogued", item_id)
    assert [i["id"] for i in items(w)] == [item_id]
    assert keys(w, own) == set() and keys(w, item_id) == named(w, item_id)
    listed = w.conn.execute(
        "SELECT item_id, item_deleted_at IS NOT NULL, objects_deleted FROM ingest.retirements WHERE collection = %s",
        [w.spec.id],
    ).fetchall()
    assert listed == [(own, True, 1)]  # what /deleted-items lists
    to, message = events(w, older)[-1]
    assert to == "retired" and message.startswith("reprocessing: replaced by the newer processing")
