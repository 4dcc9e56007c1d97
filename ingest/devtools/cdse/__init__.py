"""A provider of our own that speaks what the Copernicus Data Space Ecosystem speaks (issue 16).

The local provider's catalogue root (:mod:`ingest.devtools.catalog`), served as CDSE's OData catalogue,
Keycloak realm and download service, so that EODAG's built-in ``cop_dataspace`` provider works against
it with only its URLs overridden (:mod:`.eodag_config`). Modules: :mod:`.odata` (query options,
``$filter``, product JSON), :mod:`.catalogue` (entries as products), :mod:`.files` (checksums),
:mod:`.oidc` (tokens), :mod:`.limits` (sessions, concurrent downloads), :mod:`.faults`,
:mod:`.server`.
"""
