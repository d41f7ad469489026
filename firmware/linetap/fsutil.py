"""Replacing a file atomically: the one way linetap writes a file that must never be seen half-written.

The data goes to a temporary file in the *same directory* (``os.replace`` is atomic only within one
filesystem), is flushed and, unless the caller says it does not matter, fsynced, gets its final mode,
and only then takes the final name. A reader sees the old file or the new one, never a mix; a crash
leaves at most the temporary file. ``dir_fsync`` also fsyncs the directory, so that the *rename*
survives a power cut (ext4 may otherwise forget it and bring the old file back); it costs one more
disk flush, worth it for a config or a key, not for a status file rewritten every few seconds.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_file", "fsync_dir", "write_atomic"]


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory (its entries: a rename, a new or removed file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems (vfat) refuse fsync on a directory; the rename is still done
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: str | os.PathLike[str], *, mode: int = 0o640, fsync: bool = True, dir_fsync: bool = False,
                tmp: str | os.PathLike[str] | None = None) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` when the ``with`` block ends without an exception.

    ``tmp`` names the temporary file when something else must recognise it after a crash (the
    evidence check knows ``.sealing``); by default it is a fresh hidden name beside ``path``.
    If the block raises, the temporary file is removed and ``path`` is untouched.
    """
    final = Path(path)
    if tmp is None:
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
        tmp_path = Path(name)
    else:
        tmp_path = Path(tmp)
        # (O_CLOEXEC and fchmod are POSIX: the owner's decryption on Windows comes through here too.)
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
                     | getattr(os, "O_BINARY", 0), mode)
    try:
        with os.fdopen(fd, "wb") as f:
            # exactly ``mode``: mkstemp makes 0600, O_CREAT's mode goes through the umask
            if hasattr(os, "fchmod"):
                os.fchmod(fd, mode)
            else:
                os.chmod(tmp_path, mode)
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp_path, final)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    if dir_fsync:
        fsync_dir(final.parent)


def write_atomic(path: str | os.PathLike[str], data: bytes | str, *, mode: int = 0o640, fsync: bool = True,
                 dir_fsync: bool = False, tmp: str | os.PathLike[str] | None = None) -> None:
    """Replace ``path`` with ``data`` (a ``str`` is written as UTF-8, newlines as given)."""
    with atomic_file(path, mode=mode, fsync=fsync, dir_fsync=dir_fsync, tmp=tmp) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
