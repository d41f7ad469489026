"""Evidence: a tamper-evident hash chain over every recording, verification, export
for third parties, legal hold, privacy erasure and the access audit.

Tables (in the index, see :mod:`linetap.index.schema`; queries in :mod:`linetap.index.evidence`):
``chain``, ``chain_salts``, ``holds``, ``audit``, ``deletions``, ``deleting``.
"""

from __future__ import annotations


class EvidenceError(Exception):
    """An evidence operation could not be done; the message says why, in one line."""


class UnknownCall(EvidenceError, LookupError):
    """No recording with that id."""


__all__ = ["EvidenceError", "UnknownCall"]
