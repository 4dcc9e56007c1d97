"""Registration with federation catalogues: our collections and items pushed to an upstream STAC API
through its Transactions extension (``ingest register``, and a scheduled job per target).

``plan`` (pure: the public form of a document, what differs), ``records`` (our schema: cursors and
what each target holds), ``client`` (HTTP to the target: authentication, retries), ``push`` (one run).
"""
