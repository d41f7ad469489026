"""Retention: the ring buffer (keep space free, oldest first), retention days, and deletion.

``plan`` decides (pure), ``deletions`` deletes crash-safely with a record, ``sweeper`` measures
and applies.
"""
