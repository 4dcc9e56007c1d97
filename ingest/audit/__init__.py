"""``ingest audit``: does the store hold what the catalogue says, and nothing else?

For every item of a collection, each asset's object must exist with the recorded ``file:size`` (and,
with ``deep``, the SHA-256 the upload stored in its metadata must equal ``file:checksum``); every
object under the collection's prefix must belong to an item, a pending retirement or a product on
its way. ``plan`` is the pure matching, ``run`` the I/O around it and the repair, ``records`` the
queries, ``report`` what is printed.
"""
