"""Passwords: argon2id (``argon2-cffi``, the only module that imports it).

argon2id is memory-hard: each guess costs the attacker ``MEMORY_KIB`` of RAM. The parameters are
sized for the Pi Zero 2 W (512 MB RAM, shared with the recorder): 19 MiB and 2 passes is OWASP's
minimum argon2id setting and takes about 0.1 s there per login — a login is rare, a guess is not.
"""

from __future__ import annotations

import argon2

MEMORY_KIB = 19 * 1024
TIME_COST = 2
PARALLELISM = 1

_hasher = argon2.PasswordHasher(time_cost=TIME_COST, memory_cost=MEMORY_KIB, parallelism=PARALLELISM)
# Checked against when the user does not exist, so an unknown name costs as long as a wrong password:
# a well-formed hash with the parameters above that no password matches (argon2 still runs in full).
_DUMMY = "$argon2id$v=19$m=19456,t=2,p=1$bGluZXRhcDpkdW1teQ$SmCgAnSvJfhjWQ2WwnIb6DtSS6ZLzCMiQqa6aMd9TUI"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True if ``password`` matches; a missing or malformed hash is a mismatch (in the same time)."""
    try:
        return _hasher.verify(password_hash or _DUMMY, password) and password_hash is not None
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


def is_password_hash(text: str) -> bool:
    """Whether ``text`` is an argon2 hash this module can check (the config's first-admin hash)."""
    try:
        argon2.extract_parameters(text)
    except (argon2.exceptions.InvalidHashError, ValueError):
        return False
    return True
