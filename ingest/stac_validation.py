"""Offline STAC validation: core schemas shipped with pystac, extension schemas shipped with us.

``item.validate()`` in pystac fetches extension schemas from the web; offline that raises
GetSchemaError. Here every ``https://stac-extensions.github.io/<path>`` is mapped to
``ingest/schemas/stac-extensions/<path>`` (copied unchanged from the stac-extensions repositories,
see its README). A schema we do not have is reported as *not checked*, never as passed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource, Unresolvable

from ingest.errors import IngestError

EXT_PREFIX = "https://stac-extensions.github.io/"
SCHEMA_DIR = Path(__file__).parent / "schemas" / "stac-extensions"


class InvalidStac(IngestError):
    exit_code = 65


@dataclass
class ValidationReport:
    checked: list[str] = field(default_factory=list)
    not_checked: list[str] = field(default_factory=list)


@lru_cache(maxsize=1)
def _core_cache() -> dict[str, dict[str, Any]]:
    from pystac.validation.local_validator import get_local_schema_cache

    return get_local_schema_cache()


def _retrieve(uri: str) -> Resource[Any]:
    core = _core_cache()
    if uri in core:
        return Resource.from_contents(core[uri])
    if uri.startswith(EXT_PREFIX):
        path = SCHEMA_DIR / uri[len(EXT_PREFIX) :]
        if path.is_file():
            return Resource.from_contents(json.loads(path.read_text()))
    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]


@lru_cache(maxsize=64)
def _validator(uri: str) -> Draft7Validator:
    schema = _retrieve(uri).contents
    return Draft7Validator(schema, registry=Registry(retrieve=_retrieve))  # type: ignore[call-arg]


def has_schema(uri: str) -> bool:
    try:
        _retrieve(uri)
    except NoSuchResource:
        return False
    return True


def _core_uri(doc: dict[str, Any]) -> str:
    kind = {"Feature": "item", "Collection": "collection", "Catalog": "catalog"}.get(doc.get("type", ""))
    if kind is None:
        raise InvalidStac(f"not a STAC object (type {doc.get('type')!r})")
    version = doc.get("stac_version")
    if version != "1.1.0":
        raise InvalidStac(f"stac_version {version!r} not supported offline (only 1.1.0 schemas are shipped)")
    return f"https://schemas.stacspec.org/v{version}/{kind}-spec/json-schema/{kind}.json"


def _validate(doc: dict[str, Any], *, source: str) -> ValidationReport:
    report = ValidationReport()
    for uri in [_core_uri(doc), *doc.get("stac_extensions", [])]:
        if not has_schema(uri):
            report.not_checked.append(uri)
            continue
        try:
            errors = sorted(_validator(uri).iter_errors(doc), key=lambda e: list(e.absolute_path))
        except (NoSuchResource, Unresolvable) as exc:  # a schema that $refs one we lack (storage v2.0.0)
            report.not_checked.append(f"{uri} (needs {getattr(exc, 'ref', '?')})")
            continue
        if errors:
            err = errors[0]
            where = "/".join(str(p) for p in err.absolute_path) or "(root)"
            name = uri.removeprefix(EXT_PREFIX)
            msg = err.message
            if len(msg) > 200:  # jsonschema repeats the whole instance: say which rule failed instead
                rule = "/".join(str(p) for p in err.absolute_schema_path)
                msg = f"fails '{err.validator}' at schema path {rule}"
            raise InvalidStac(f"{source}: {where}: {msg} (schema {name})")
        report.checked.append(uri)
    return report


def validate_item(item: dict[str, Any], *, source: str | None = None) -> ValidationReport:
    return _validate(item, source=source or f"item {item.get('id')}")


def validate_collection(collection: dict[str, Any], *, source: str | None = None) -> ValidationReport:
    return _validate(collection, source=source or f"collection {collection.get('id')}")
