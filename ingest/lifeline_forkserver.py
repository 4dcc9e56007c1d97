"""Imported by the conversion forkserver only, first of its preload list: importing it makes the
importing process die with its parent (see ``ingest.lifeline``). Nothing else may import it."""

from ingest.lifeline import arm_forkserver

arm_forkserver()
