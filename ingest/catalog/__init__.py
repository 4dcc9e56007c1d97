"""The catalogue in pgstac as the federation reads it: collection documents that follow their files
(``publish``), items loaded so that a harvester's ``updated`` watermark cannot pass one (``loading``)."""
