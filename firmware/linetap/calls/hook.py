"""Off-hook edges as they happened: the hook input's history, by monotonic time.

The hook input is not read when the pipeline gets to a block (by then the block is
0.1-0.3 s old, more under backlog, and a hang-up would cut the call early or late): its
edges are stamped when they happen (``gpio.HookInput``'s callbacks, on gpiozero's pin
thread) and kept here; ``calls.line.LineCalls`` asks for the state at each block's end
and maps the last change to a frame through the block's ``t_mono``. Debouncing stays in
the segmenter, in audio time, so every raw edge is kept (no gpiozero ``bounce_time``,
which would drop the edge that matters).
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from typing import Protocol, runtime_checkable

KEEP_EDGES = 512  # a contact bouncing every 1 ms for 0.5 s still leaves the last second of history


@runtime_checkable
class TimedHook(Protocol):
    """A hook input that knows its past: the state at a monotonic time and when it last changed."""

    def at(self, t_mono: float) -> tuple[bool, float | None]: ...


def hook_at(times: list[float], states: list[bool], initial: bool, t_mono: float) -> tuple[bool, float | None]:
    """The state at ``t_mono`` from edges (``times`` ascending, ``states`` after each) and the
    time of the edge that made it (None: no edge before ``t_mono``, the ``initial`` state)."""
    k = bisect.bisect_right(times, t_mono)
    if k == 0:
        return initial, None
    return states[k - 1], times[k - 1]


class HookEdges:
    """The edges of one hook input: ``add`` from the pin's thread, ``at`` from the pipeline's."""

    def __init__(self, initial: bool) -> None:
        self._lock = threading.Lock()
        self._initial = initial
        self._edges: deque[tuple[float, bool]] = deque(maxlen=KEEP_EDGES)

    def add(self, t_mono: float, state: bool) -> None:
        """An edge to ``state`` at ``t_mono`` (a repeat of the current state is no edge)."""
        with self._lock:
            last = self._edges[-1][1] if self._edges else self._initial
            if state == last:
                return
            if len(self._edges) == self._edges.maxlen:
                self._initial = self._edges[0][1]  # the state the forgotten edges led to
            self._edges.append((t_mono, state))

    def at(self, t_mono: float) -> tuple[bool, float | None]:
        with self._lock:
            times = [t for t, _ in self._edges]
            states = [s for _, s in self._edges]
            initial = self._initial
        return hook_at(times, states, initial, t_mono)
