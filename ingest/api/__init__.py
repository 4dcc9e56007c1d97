"""The public STAC API (``ingest serve``): stac-fastapi-pgstac, read-only, with bounds on every input
checked before any library parses it (``guard``, ``bounds``) and library errors translated to 4xx
(``errors``)."""
