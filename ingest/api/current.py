"""Searches answer current items only: an item the STAC version extension marks ``deprecated: true``
(an older processing in a ``reprocessing: keep`` collection, ``ingest.upstream.versions``) is left out
of ``/search`` and ``/collections/{id}/items`` unless the client asks for it, by naming ``deprecated``
in its filter (``filter=deprecated = true``; every version: ``filter=deprecated IS NULL OR deprecated IS
NOT NULL``) or by asking for items by id. ``/collections/{id}/items/{item}`` always answers.

Pure: the search's CQL2 JSON filter in, the filter to run out.
"""

from __future__ import annotations

from collections.abc import Mapping
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


def query_as_cql2(query: Mapping[str, Any]) -> dict[str, Any]:
    """The Query extension's ``query`` as the CQL2 JSON pgstac makes of it (its ``query_to_cql2``: each
    property's operators and-ed, a bare value meaning ``eq``): pgstac refuses a search with both, so a
    ``query`` search is run as this filter."""
    args: list[dict[str, Any]] = []
    for prop, ops in query.items():
        pairs = ops.items() if isinstance(ops, dict) else [("eq", ops)]
        args += [{"op": op, "args": [{"property": prop}, value]} for op, value in pairs]
    return {"op": "and", "args": args}


def current_only(
    tree: dict[str, Any] | None, *, by_ids: bool, query: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any] | None, Mapping[str, Any] | None]:
    """The (filter, query) to run for a search with filter ``tree`` and ``query``: both as they are when
    the client asked for deprecated items (or for ids), else the filter (``query`` turned into one) and
    CURRENT."""
    if by_ids or names(tree, PROPERTY) or (query and PROPERTY in query):
        return tree, query
    if query:
        tree = query_as_cql2(query) if not tree else {"op": "and", "args": [tree, query_as_cql2(query)]}
    if not tree:
        return CURRENT, None
    return {"op": "and", "args": [tree, CURRENT]}, None
