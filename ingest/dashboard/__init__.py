"""The operator dashboard: one page on the daemon's own HTTP endpoint (beside /metrics) showing, per
collection, products by state, harvest lag, failures with their causes, retention and its next run,
and a map of the catalogued footprints.

``data`` builds the document ``ingest status --json`` prints (the page shows the same numbers, from
the same code); ``footprints`` aggregates product footprints per grid cell in SQL; ``http`` serves
the page, its assets and the cached JSON.
"""
