from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from linetap.alarms import GapTracker
from linetap.alarms.manager import AlarmManager
from linetap.clock import FakeClock
from linetap.index.db import Index, open_index

sys.path.insert(0, str(Path(__file__).parent))

from alsa_lines import AlsaLines  # noqa: E402


@pytest.fixture(scope="session")
def alsa(tmp_path_factory: pytest.TempPathFactory) -> AlsaLines:
    """Real ALSA capture PCMs backed by FIFOs (see tests/alsa_lines.py)."""
    lines = AlsaLines(tmp_path_factory.mktemp("alsa"))
    # libasound reads ~/.asoundrc on the first open in this process.
    os.environ["HOME"] = str(lines.home)
    os.environ.pop("XDG_CONFIG_HOME", None)
    return lines


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> FakeClock:
    """A clock the test advances. It starts at the test module's ``CLOCK_START`` (epoch seconds)
    where the module sets one (its expected rows are written from that instant), else at
    FakeClock's default."""
    start = getattr(request.module, "CLOCK_START", None)
    return FakeClock() if start is None else FakeClock(wall=start)


@pytest.fixture
def index(data_dir: Path) -> Iterator[Index]:
    """The real SQLite index in ``data_dir`` (``<data_dir>/index.db``), closed after the test."""
    idx = open_index(data_dir)
    yield idx
    idx.close()


@pytest.fixture
def alarms(index: Index, clock: FakeClock) -> AlarmManager:
    """The real alarm manager on the test's index and clock; a cleared condition clears after 2 s
    of quiet (the tests step the clock across it)."""
    return AlarmManager(index, clock, clear_after_s=2.0)


@pytest.fixture
def gaps(index: Index, clock: FakeClock) -> GapTracker:
    """The real gap tracker on the test's index and clock."""
    return GapTracker(index, clock)
