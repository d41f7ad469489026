"""fsutil.write_atomic / atomic_file: a file is the old one or the new one, never half of either."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from linetap.fsutil import atomic_file, fsync_dir, write_atomic


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_new_content_replaces_the_old_with_the_given_mode(tmp_path):
    path = tmp_path / "status.json"
    path.write_text("old\n")
    write_atomic(path, "new ✓\n", mode=0o640)
    assert path.read_bytes() == "new ✓\n".encode()
    assert mode_of(path) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644])
def test_the_mode_is_exact_whatever_the_umask(tmp_path, mode):
    old = os.umask(0o077)
    try:
        write_atomic(tmp_path / "f", b"x", mode=mode)
        write_atomic(tmp_path / "g", b"x", mode=mode, tmp=tmp_path / ".g.new")
    finally:
        os.umask(old)
    assert (mode_of(tmp_path / "f"), mode_of(tmp_path / "g")) == (mode, mode)


def test_while_the_block_runs_the_old_file_is_intact_and_the_new_one_is_aside(tmp_path):
    path = tmp_path / "linetap.toml"
    path.write_bytes(b"old")
    with atomic_file(path, tmp=tmp_path / ".linetap.toml.new") as f:
        f.write(b"half of the new")
        f.flush()
        assert path.read_bytes() == b"old"
        assert (tmp_path / ".linetap.toml.new").read_bytes() == b"half of the new"
        f.write(b" file")
    assert path.read_bytes() == b"half of the new file"
    assert not (tmp_path / ".linetap.toml.new").exists()


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "key"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_file(path) as f:
        f.write(b"partial")
        raise RuntimeError("disk full")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["key"]


def test_a_reader_never_sees_a_partial_file(tmp_path):
    """Each replacement is visible whole: every read is one of the versions written, in full."""
    path = tmp_path / "doc"
    versions = [bytes([65 + i]) * 200_000 for i in range(8)]
    write_atomic(path, versions[0], fsync=False)
    seen = set()
    for v in versions[1:]:
        with atomic_file(path, fsync=False) as f:
            f.write(v[:100_000])
            seen.add(path.read_bytes())  # mid-write: still the previous version, whole
            f.write(v[100_000:])
        seen.add(path.read_bytes())
    assert seen == set(versions)


def test_the_same_inode_is_never_written_in_place(tmp_path):
    """A reader holding the old file open keeps reading the old content (it is replaced, not overwritten)."""
    path = tmp_path / "index.json"
    write_atomic(path, b"first")
    with open(path, "rb") as held:
        write_atomic(path, b"second", dir_fsync=True)
        assert held.read() == b"first"
    assert path.read_bytes() == b"second"


def test_fsync_dir_tolerates_a_missing_directory(tmp_path):
    fsync_dir(tmp_path)
    fsync_dir(tmp_path / "gone")  # no exception: the caller's rename already happened
