"""The index: SQLite at data_dir/index.db, and the one place in linetap that holds SQL.

``db`` is the adapter (the contract's calls/alarms/gaps tables and meta), ``schema`` every
table with its numbered migrations, ``evidence`` and ``retention`` the named queries of those
subsystems.
"""

from .db import Index, open_index
from .schema import SchemaTooNew

__all__ = ["Index", "SchemaTooNew", "open_index"]
