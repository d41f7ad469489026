"""The index: SQLite at data_dir/index.db, and the one place in linetap that holds SQL.

``db`` is the adapter (the contract's calls/alarms/gaps tables and meta), ``schema`` every
table with its numbered migrations, ``evidence`` and ``retention`` the named queries of those
subsystems.

Import from the modules (``linetap.index.db`` ...): this package's ``__init__`` loads none of them,
so that the pure parts (the schema, the named queries) never pull in sqlite-utils.
"""
