"""Searches answer current items only: an item the STAC version extension marks ``deprecated: true``
(an older processing in a ``reprocessing: keep`` collection, ``ingest.upstream.versions``) is left out
of ``/search`` and ``/collections/{id}/items`` unless the client asks for it, by naming ``deprecated``
in its filter (``filter=deprecated = true``; every version: ``filter=deprecated IS NULL OR deprecated IS
NOT NULL``) or by asking for items by id. ``/collections/{id}/items/{item}`` always answers.

Pure: the search's CQL2 JSON filter in, the filter to run out.
"""

from __future__ import annotations

from typing import Any

PROPERTY = "deprecated"
# absent (every item never superseded) or false; pgstac's comparison with an absent property is NULL,
# so "NOT deprecated = true" alone would leave out exactly the items it should keep
CURRENT: dict[str, Any] = {
    "op": "or",
    "args": [
        {"op": "isNull", "args": [{"property": PROPERTY}]},
        {"op": "=", "args": [{"property": PROPERTY}, False]},
    ],
}


def names(tree: Any, prop: str) -> bool:
    """Whether the CQL2 JSON ``tree`` refers to property ``prop``."""
    if isinstance(tree, dict):
        if tree.get("property") == prop:
            return True
        return any(names(v, prop) for v in tree.values())
    if isinstance(tree, list):
        return any(names(v, prop) for v in tree)
    return False


def current_only(tree: dict[str, Any] | None, *, by_ids: bool) -> dict[str, Any] | None:
    """The filter to run for a search with filter ``tree``: ``tree`` as it is when the client asked for
    deprecated items (or for ids), else ``tree`` and CURRENT."""
    if by_ids or names(tree, PROPERTY):
        return tree
    if not tree:
        return CURRENT
    return {"op": "and", "args": [tree, CURRENT]}
