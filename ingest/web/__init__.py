"""Pages for people: STAC Browser at ``/browser/`` on ``ingest serve`` (ingest.web.browser)."""
