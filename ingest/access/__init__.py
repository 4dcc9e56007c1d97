"""Federated access to the assets: per-collection policies (``policy``), bearer tokens from the
configured OpenID issuers (``tokens``), the asset gateway of ``ingest serve`` (``gateway``) and what
served items and collections say about it (``hrefs``)."""
