"""The store adapter's listing and prefix deletion against moto's in-process S3: pages of keys in
S3's own byte order, in seconds and without a server (the integration tests' SeaweedFS lists folder
by folder). The audit's merge is checked on this order here; tests/unit/test_audit_plan.py checks
it on SeaweedFS's."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws
from pydantic import SecretStr

from ingest.adapters.s3 import ObjectStore
from ingest.audit import plan

BUCKET = "listing"
# item ids where S3's byte order and a folder-by-folder order differ ('-' and '.' sort before '/')
ITEMS = ["X", "X-2", "X.b", "Y"]


@pytest.fixture
def store() -> Iterator[ObjectStore]:
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield ObjectStore(
            bucket=BUCKET,
            prefix="ingest",
            region="us-east-1",
            access_key_id=SecretStr("testing"),
            secret_access_key=SecretStr("testing"),
        )


def put(store: ObjectStore, keys: list[str]) -> None:
    client = boto3.client("s3", region_name="us-east-1")
    for key in keys:
        client.put_object(Bucket=store.bucket, Key=key, Body=b"0123456789")


def test_the_listing_pages_through_every_object_in_byte_order(store: ObjectStore) -> None:
    keys = [f"ingest/c/{item}/band{n:04d}.tif" for item in ITEMS for n in range(300)]  # 1,200: 2 pages
    put(store, keys)
    listed = list(store.iter_objects("ingest/c/"))
    assert [o.key for o in listed] == sorted(keys, key=lambda k: k.encode())
    assert listed[0].key.startswith("ingest/c/X-2/")  # byte order: X-2/ before X/
    assert {o.size for o in listed} == {10}


def test_the_audit_merge_pairs_a_byte_order_listing_with_its_items(store: ObjectStore) -> None:
    put(store, [f"ingest/c/{item}/a.tif" for item in ITEMS] + ["ingest/c/X/stray.tif"])
    layout = plan.Layout(BUCKET, "ingest/c/")
    items = sorted(
        (plan.item_assets(i, {"a": {"href": f"s3://{BUCKET}/ingest/c/{i}/a.tif", "file:size": 10}}, None, layout)
         for i in ITEMS),
        key=lambda a: (a.item_id + "/").encode(),
    )  # fmt: skip
    out = list(plan.match(items, store.iter_objects("ingest/c/"), "ingest/c/"))
    matched = [o for o in out if isinstance(o, plan.ItemMatch)]
    assert sorted(m.item.item_id for m in matched) == sorted(ITEMS)
    assert all(m.problems == () for m in matched)
    assert [o.obj.key for o in out if isinstance(o, plan.Unowned)] == ["ingest/c/X/stray.tif"]


def test_deleting_an_items_objects_never_touches_a_sibling_prefix(store: ObjectStore) -> None:
    put(store, [f"ingest/c/{item}/a.tif" for item in ITEMS])
    assert store.delete_item_objects("c", "X") == 1
    assert sorted(o.key for o in store.iter_objects("ingest/c/")) == [
        "ingest/c/X-2/a.tif",
        "ingest/c/X.b/a.tif",
        "ingest/c/Y/a.tif",
    ]
