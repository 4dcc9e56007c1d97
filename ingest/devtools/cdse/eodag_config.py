"""What EODAG's built-in ``cop_dataspace`` provider needs to talk to the CDSE-like server instead of CDSE. Pure.

Four addresses of ``eodag/resources/providers/cop_dataspace.yml`` (EODAG 4.10) name CDSE's hosts;
everything else (plugins, query templates, pagination, metadata mapping) stays as shipped:

* ``search.api_endpoint``: ``https://catalogue.dataspace.copernicus.eu/odata/v1/Products``;
* ``search.metadata_mapping."eodag:download_link"``: the same host, ``Products({uid})/$value``
  (a literal template, not taken from the search answer: it must be overridden too);
* ``auth.oidc_config_url``: ``https://identity.dataspace.copernicus.eu/auth/realms/CDSE/.well-known/...``
  (token endpoint and keys are read from the discovery document, so they follow);
* ``auth.matching_url``: a regular expression of the URLs the token is sent to (escaped here: dots
  in an IP address would match any character).

Apply the mapping as a user configuration (``{"cop_dataspace": overrides}`` in ``$EODAG_CFG_DIR/eodag.yml``),
with ``dag.update_providers_config(dict_conf=...)``, or as environment variables
(:func:`cop_dataspace_environment`): EODAG reads ``EODAG__COP_DATASPACE__SEARCH__METADATA_MAPPING__
EODAG_DOWNLOAD_LINK`` back as ``eodag:download_link`` (its key merge maps ``_`` to ``:``).
"""

from __future__ import annotations

from typing import Any

from ingest.adapters.eodag import packaged_config
from ingest.adapters.eodag_config import mirror_overrides

PROVIDER = "cop_dataspace"


def cop_dataspace_overrides(base_url: str) -> dict[str, Any]:
    """The sparse ``cop_dataspace`` configuration that sends every EODAG request to ``base_url``: the
    daemon's own (``INGEST_PROVIDER_MIRROR_URL``), one definition for both."""
    return mirror_overrides(packaged_config(PROVIDER), base_url)


def cop_dataspace_environment(
    base_url: str, *, username: str | None = None, password: str | None = None
) -> dict[str, str]:
    """The same overrides (and credentials) as ``EODAG__COP_DATASPACE__...`` environment variables."""
    overrides = cop_dataspace_overrides(base_url)
    if username is not None or password is not None:
        overrides["auth"]["credentials"] = {
            k: v for k, v in (("username", username), ("password", password)) if v is not None
        }
    env: dict[str, str] = {}

    def walk(prefix: str, node: dict[str, Any]) -> None:
        for key, value in node.items():
            name = f"{prefix}__{key.replace(':', '_').upper()}"
            if isinstance(value, dict):
                walk(name, value)
            else:
                env[name] = str(value)

    walk(f"EODAG__{PROVIDER.upper()}", overrides)
    return env
