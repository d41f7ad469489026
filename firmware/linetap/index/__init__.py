"""The index: SQLite at data_dir/index.db, the contract's calls/alarms/gaps tables."""

from .db import Index, open_index

__all__ = ["Index", "open_index"]
