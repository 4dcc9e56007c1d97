"""``ingest reconcile``: a catalogue that follows upstream.

Compares what the provider lists for a window of sensing time (and an area) with what we hold, and
reports four kinds of difference: missing here, gone upstream, superseded by a newer processing,
checksum changed upstream. ``names`` (pure: which acquisition a product name is, which processing is
newer) and ``compare`` (pure: the provider's list against our rows) are in the middle; ``records``
(queries), ``run`` (the provider searched day by day, the comparison, the metric) and ``repair``
(queue, re-process, retire through retention's path) are the I/O around them; ``report`` is what is
printed, ``progress`` what stderr shows meanwhile.
"""
