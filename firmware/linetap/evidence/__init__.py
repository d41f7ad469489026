"""Evidence: a tamper-evident hash chain over every recording, verification, export
for third parties, legal hold, privacy erasure and the access audit.

Tables (created by :func:`linetap.evidence.tables.ensure_tables`) live in the index:
``chain``, ``chain_salts``, ``holds``, ``audit``, ``deletions``, ``deleting``.
"""

from __future__ import annotations


class EvidenceError(Exception):
    """An evidence operation could not be done; the message says why, in one line."""


class UnknownCall(EvidenceError, LookupError):
    """No recording with that id."""


__all__ = ["EvidenceError", "UnknownCall"]
