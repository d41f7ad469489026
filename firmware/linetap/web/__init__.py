"""The web interface (``linetap web``): find, play and download a call, with logins, roles and an audit trail.

A separate, niced process beside the recorder: it reads the index (WAL lets it read while the
recorder writes) and the recordings, and writes only its own rows (users, sessions, holds, the
audit trail) through named queries in short transactions.

- :mod:`.auth`       pure decisions: roles, signed session cookies, login back-off, tokens;
- :mod:`.passwords`  the argon2 adapter;
- :mod:`.service`    what a request does, without HTTP (the one place that calls :mod:`linetap.evidence`);
- :mod:`.pages`, :mod:`.timeline`  HTML and the coverage picture, pure functions of values;
- :mod:`.tls`        the self-signed certificate made at first start, and its fingerprint;
- :mod:`.app`        the starlette/uvicorn adapter: routes, cookies, status codes.
"""
