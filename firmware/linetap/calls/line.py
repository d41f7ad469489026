"""A line's call life cycle: level -> segmenter -> recording, with the line analyser alongside.

``LineCalls.on_block`` runs on the pipeline thread for every block of its line.
It turns the segmenter's frame-exact decisions into file operations through an
injected ``open_recording`` (so tests can count what would be written).

Audio reaches a recording through the line's :class:`LineAnalyzer` (``detect/analyzer.py``),
which keeps the pre-roll, masks DTMF when ``mask_dtmf`` is set and says how far audio may be
written. Its events are applied here: a caller ID heard up to ``callerid_window_s`` before a
call (or in its first 10 s) names the call; a call-waiting caller ID (after a CAS, during the
call, in its first 10 s too: see ``detect/analyzer.py``) is attached to the call in progress
(``waiting_callers`` of its summary and index row; the number a forwarded call was first meant for
is its ``caller_redirected_from``); message waiting and advice of charge name nothing; DTMF digits inside a call make its ``dtmf`` (``*``
per digit when masked); a dial, busy or reorder tone or a special information tone (SIT: the
call failed, an announcement follows) after at least ``min_call_s`` of the call ends it where the
tone began (``end_reason = "tone"``; a SIT's code goes on the summary as ``sit``, e.g. ``"IC"``
for a North American intercept, ``""`` for the Q.35 SIT), and no new call starts until the tone
has stopped (VOX) or the phone is hung up (off-hook).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, Callable, Iterable, Protocol, Sequence

import numpy as np

from ..capture import Block, Run
from ..config import LineConfig
from ..detect.analyzer import ENDING_TONES, Event, LineAnalyzer
from ..detect.callerid import CallerId
from ..detect.dtmf import DtmfDigit
from ..detect.level import FLOOR_DBFS, block_stats, dbfs, energies_dbfs
from ..detect.tones import ToneEvent
from .hook import TimedHook
from .segmenter import ContinuousSegmenter, End, OffhookSegmenter, Start, VoxSegmenter

logger = logging.getLogger(__name__)

CID_IN_CALL_S = 10.0  # a caller ID decoded this long after a call's onset still names it
CW_ACK_S = 1.0  # call waiting: the phone's DTMF acknowledgement comes this long at most before the FSK
TONE_QUIET_S = 1.0  # after a tone ended a call, VOX re-arms once the line was this long quiet
DIAL_AFTER_DIGIT_S = 3.0  # a dial tone this soon after a key is a second dial tone (PBX), not an end


class RecordingLike(Protocol):
    id: int
    frames: int
    caller_number: str | None
    caller_name: str | None
    caller_redirected_from: str | None  # set before finish(): kept in the index row and sidecar
    waiting_callers: list[dict[str, Any]]
    dtmf: str

    def write(self, frames: np.ndarray) -> None: ...
    def set_caller(self, number: str | None, name: str | None) -> None: ...
    def finish(self, end_reason: str, status: str = "complete") -> dict[str, Any]: ...
    def discard(self) -> None: ...


class CallListener(Protocol):
    def call_started(self, line: str, call_id: int, started_at: float) -> None: ...
    def call_ended(self, line: str, summary: dict[str, Any]) -> None: ...


class NullListener:
    def call_started(self, line: str, call_id: int, started_at: float) -> None:
        pass

    def call_ended(self, line: str, summary: dict[str, Any]) -> None:
        pass


OpenRecording = Callable[[LineConfig, float], RecordingLike]


class LineCalls:
    def __init__(self, line: LineConfig, *, open_recording: OpenRecording,
                 hook: Callable[[], bool] | TimedHook | None = None, listener: CallListener | None = None) -> None:
        self.line = line
        self.open_recording = open_recording
        self.listener = listener or NullListener()
        self._use(line, hook)
        self._switch: tuple[LineConfig, Callable[[], bool] | TimedHook | None, Callable[[], None]] | None = None
        self.preroll_frames = int(line.preroll_s * line.rate)
        self.analyzer = LineAnalyzer(line)
        self.recording: RecordingLike | None = None
        self._rec_started_at = 0.0
        self._rec_start = 0  # first frame of the recording (pre-roll included)
        self._onset = 0  # where the call's sound began
        self._written_to = 0  # the recording's audio is released up to here
        self._flushed_to = 0  # and written up to here
        self._digits: list[DtmfDigit] = []  # keys pressed in the current call
        self._cids: deque[CallerId] = deque(maxlen=4)  # recent caller IDs not yet given to a call
        self._tone_hold = False  # a tone ended the last call: no new one until it is over
        self._quiet_frames = 0
        self._prev_caller: tuple[str | None, str | None] = (None, None)
        self._redirected: str | None = None  # the current call's caller ID: the number it was forwarded from
        self._prev_redirected: str | None = None  # for a max_length continuation, as _prev_caller
        self._call_cid: CallerId | None = None  # the caller ID naming the current call
        self._waiting: list[dict[str, Any]] = []  # call-waiting callers announced during the call
        self._sit: str | None = None  # the code of the SIT that ended the call
        self.stream = -1
        self.level_dbfs = FLOOR_DBFS
        self.last_block_t: float | None = None
        self.calls_recorded = 0
        self.frames_seen = 0  # every frame handled, for progress checks (watchdog, tests)

    def _use(self, line: LineConfig, hook: Callable[[], bool] | TimedHook | None) -> None:
        """Run as ``line`` (its trigger decides the segmenter) with ``hook`` as the off-hook input."""
        self.line = line
        self.hook = hook
        self._timed_hook = hook if isinstance(hook, TimedHook) else None  # edges stamped as they happen
        if line.trigger == "vox":
            self.segmenter: Any = VoxSegmenter(line)
        elif line.trigger == "offhook":
            self.segmenter = OffhookSegmenter(line)
        else:
            self.segmenter = ContinuousSegmenter(line)

    def switch_trigger(self, line: LineConfig, hook: Callable[[], bool] | TimedHook | None,
                       then: Callable[[], None] = lambda: None) -> None:
        """Run as ``line`` from the next call boundary (any thread may ask; the pipeline thread
        switches before a block while no call is open, so a call is never cut or restarted by a
        change of trigger), then call ``then``. E.g. an ``offhook`` line that recorded by voice
        activity while its input could not be built goes back to its hook input
        (calls/hook_inputs.py)."""
        self._switch = (line, hook, then)

    @property
    def level_dbfs(self) -> float:
        """The level of the last block handled, in dBFS (the status board's, every few seconds).
        A run stepped at once (``_vox_run``) leaves the last block's sum of squares and size, its
        logarithm taken here rather than for each run (``energies_dbfs``: the same value)."""
        level = self._level
        return energies_dbfs([level[0]], level[1])[0] if type(level) is tuple else level

    @level_dbfs.setter
    def level_dbfs(self, value: float) -> None:
        self._level: float | tuple[float, int] = value

    @property
    def state(self) -> str:
        return "recording" if self.recording is not None else "idle"

    # --- the hot path: 50 blocks a second per line ---
    def on_block(self, block: Block | Run) -> None:
        """One block, or a run of consecutive blocks (what the pipeline found queued for the line).

        Everything is still decided block by block, in the same order (analyser events, then the
        segmenter, on each block's own level, frames and time), so a run ends up exactly where
        its blocks one at a time would. What a run saves: the levels come from one numpy call,
        and the audio released meanwhile goes to the codec in one write, at the end of the run
        (or before a call ends). A VOX run in which the segmenter does nothing (most of them:
        quiet while idle, voiced or in a pause shorter than the hang time during a call) is
        stepped through at once (``_vox_run``)."""
        blocks = block.blocks if isinstance(block, Run) else (block,)
        if self._switch is not None and self.recording is None:
            line, hook, then = self._switch
            self._switch = None
            self._use(line, hook)
            self._tone_hold = False
            then()
        if block.stream != self.stream:
            self._new_stream(block.stream)
        k, frames = len(blocks), block.frames
        i = None  # stepped block by block from block i (None: from the first; -1: not at all)
        if k == 1:
            levels = [dbfs(frames)]
        elif not (period := block.period):
            levels = [dbfs(b.frames) for b in blocks]
        else:
            # The blocks' sums of squares in one numpy call (shared with the line's dead-line check,
            # which asked first: ``block_stats``); their levels (a logarithm each) only where the
            # run is stepped block by block, and for the last block.
            size = frames.size // k
            energies = block_stats(frames, k)[1]
            s0 = block.start_frame
            if self.line.trigger == "vox" and not self._tone_hold and self.analyzer.follows(s0):
                i = self._vox_run(blocks, energies, size, frames, period, s0)
            if i != -1:
                levels = energies_dbfs(energies, size)
        if i is None:
            self._blocks(blocks, levels, frames, 0, 0, 0, 0)
        elif i >= 0:  # block i was filed (it completed a batch), not yet stepped
            off = i * period
            self._blocks(blocks, levels, frames, i, off, off + period, self.analyzer.frames_to_batch + period)
        # Stepped at once: the last block's level is taken when asked (``level_dbfs``), not per run.
        self._level = levels[-1] if i != -1 else (energies[-1], size)
        self.last_block_t = blocks[-1].t_wall
        self._flush()

    def _vox_run(self, blocks: Sequence[Block], energies: list[float], size: int, frames: np.ndarray,
                 period: int, s0: int) -> int | None:
        """Step a VOX run of ``period``-frame blocks at once where nothing happens in it: -1, done.
        Else None, nothing was done (step it block by block, ``_blocks``), or ``i``: the blocks
        before ``i`` were stepped and block ``i`` was filed, not yet stepped.

        In a run where the segmenter does nothing (``VoxSegmenter.skip``), what each block's
        handling changes is the analyser's filing, which only matters at the block that completes
        a batch (about one run in five: batches of 1 s, runs of 200 ms): its events are applied
        after the blocks before it were stepped and before it is, as block by block. So the run is
        cut there: the blocks before it skipped, it filed (the batch analysed), and if its events
        left the call and the tone hold as they were, the rest skipped too. Anything else (the
        segmenter would act, an event ended the call) goes on block by block from where it
        happened, so decisions stay frame-exact. One run of ten blocks: 1 Python step instead of
        ten (``tests/test_runs.py`` holds both ways to the same recordings)."""
        analyzer, seg = self.analyzer, self.segmenter
        k = len(blocks)  # s0: their first frame
        cid_after = CID_IN_CALL_S * self.line.rate
        j = -(-analyzer.frames_to_batch // period) - 1  # the block whose filing completes the batch
        if j >= k:  # no batch completes in the run
            if not seg.skip(energies, s0, k * period, period, size=size):
                return None
            self._file(frames, 0, k * period, s0)
            analyzer.callerid_paused = self.recording is not None and s0 + k * period - self._onset > cid_after
            self.frames_seen += k * period
            return -1
        at = s0 + j * period
        if j:
            if not seg.skip(energies[:j], s0, j * period, period, size=size):
                return None
            self.frames_seen += j * period
            # The batch is analysed as it would be after block j - 1: caller ID resting or not.
            analyzer.callerid_paused = self.recording is not None and at - self._onset > cid_after
            self._file(frames, 0, j * period, s0)
        rec = self.recording
        self._file(frames, j * period, (j + 1) * period, at)  # the batch is analysed: events
        rest = (k - j) * period
        if (self.recording is not rec or self._tone_hold or rest - period >= analyzer.frames_to_batch
                or not seg.skip(energies[j:], at, rest, period, size=size)):
            return j
        self._file(frames, (j + 1) * period, k * period, at + period)
        analyzer.callerid_paused = self.recording is not None and s0 + k * period - self._onset > cid_after
        self.frames_seen += rest
        return -1

    def _blocks(self, blocks: Sequence[Block], levels: list[float], frames: np.ndarray, i: int, off: int,
                filed: int, room: int) -> None:
        """Step blocks ``i`` on of a run one by one (``off``: block ``i``'s offset in ``frames``).

        Filing a block with the analyser does nothing but keep it, except for the block that
        completes a batch (the batch is analysed: events) and the run's first (it may not follow
        the last one filed). Between those the blocks are filed together, when something needs
        them filed: a block with events or segmenter actions, or the end of the run."""
        analyzer, seg, trigger = self.analyzer, self.segmenter, self.line.trigger
        cid_after = CID_IN_CALL_S * self.line.rate
        # filed: offset in ``frames`` of the first frame not yet filed; room: frames until a batch
        # is due (0: file the next block on its own)
        for b, level in zip(blocks[i:], levels[i:]):
            s, n = b.start_frame, len(b.frames)
            if n >= room:
                self._file(frames, filed, off, s - (off - filed))
                self._file(frames, off, off + n, s)  # ~once a second: a batch is analysed
                filed = off + n
                room = analyzer.frames_to_batch
            else:
                room -= n
            if trigger == "vox":
                actions = seg.step(self._vox_level(level, n), s, n)
            elif trigger == "offhook":
                actions = self._offhook_step(b, s, n)
            else:
                actions = seg.step(b.t_wall, s, n)
            if actions:
                if filed < off + n:
                    self._file(frames, filed, off + n, s - (off - filed))
                    filed = off + n
                for a in actions:
                    if isinstance(a, End):
                        self._end(a.reason, a.frame, discard=a.discard)
                    elif isinstance(a, Start):
                        self._start(b, a.frame, a.continuation)
                if self.recording is not None:
                    self._release_all()
                room = analyzer.frames_to_batch  # a call's end analyses what was pending
            # An answered line carries no on-hook caller ID: rest the decoder once the call is on.
            analyzer.callerid_paused = self.recording is not None and s + n - self._onset > cid_after
            self.frames_seen += n
            off += n
        self._file(frames, filed, off, blocks[-1].start_frame + len(blocks[-1].frames) - (off - filed))

    def _file(self, frames: np.ndarray, a: int, b: int, start_frame: int) -> None:
        """Give frames ``[a, b)`` of a run (stream frames from ``start_frame``) to the analyser,
        apply its events, and release what the recording may now be given.

        Released audio only moves forward between two analysed batches, so releasing once for
        several blocks gets as far as releasing after each of them."""
        if b > a:
            for ev in self.analyzer.push(frames[a:b], start_frame):
                self._on_event(ev)
        if self.recording is not None:
            self._release_all()

    def _start(self, block: Block, frame: int, continuation: bool) -> None:
        # The pre-roll (frame < block start) and anything not yet released come from the
        # analyser's ring as they are released: _release starts at ``frame``.
        s = block.start_frame
        started_at = block.t_wall + (frame - s) / block.rate
        self.recording = rec = self.open_recording(self.line, started_at)
        self._rec_started_at = started_at
        self._rec_start = self._written_to = self._flushed_to = frame
        self._onset = frame if continuation else min(frame + self.preroll_frames, s + len(block.frames))
        self.analyzer.call_onset = self._onset  # a call-waiting alert is told by where it comes in the call
        self._digits = []
        self._waiting: list[dict[str, Any]] = []
        self._sit = None
        self._call_cid = None
        self._redirected = None
        if continuation:
            if any(self._prev_caller):
                rec.set_caller(*self._prev_caller)
            self._redirected = self._prev_redirected
        else:
            fits = [c for c in self._cids if self._cid_fits(c)]
            if fits:
                self._name_call(fits[-1])
        self.listener.call_started(self.line.name, rec.id, started_at)

    def _release(self, frame: int, *, final: bool = False) -> None:
        """Audio of the recording up to ``frame`` (as far as the analyser allows) is to be
        written: it is, at the next ``_flush`` (the end of the run, or the end of the call)."""
        if self.recording is None:
            return
        limit = self.analyzer.ready_to if final else self.analyzer.released_to
        pending = None if final else self.segmenter.pending_end
        if pending is not None:  # an on-hook edge being debounced: the call may end there
            limit = min(limit, pending)
        b = min(frame, limit)
        if b > self._written_to:
            self._written_to = b

    def _release_all(self) -> None:
        """``_release(self.analyzer.released_to)`` of an open recording, as ``_file`` asks after
        every filing: what the analyser released, short of a pending on-hook edge."""
        b = self.analyzer.released_to
        pending = self.segmenter.pending_end
        if pending is not None and pending < b:
            b = pending
        if b > self._written_to:
            self._written_to = b

    def _flush(self) -> None:
        """Write what was released and not yet written, in one piece (the ring keeps it)."""
        rec = self.recording
        pending = self.segmenter.pending_end
        if pending is not None and self._written_to > pending:
            # Released before the segmenter saw the on-hook edge: kept back until the edge is
            # known to be the end (the call ends there) or a bounce (released again).
            self._written_to = max(pending, self._flushed_to)
        if rec is not None and self._written_to > self._flushed_to:
            x = self.analyzer.audio(self._flushed_to, self._written_to)
            if len(x):
                rec.write(x)
        self._flushed_to = self._written_to

    def _end(self, reason: str, frame: int | None = None, *,
             discard: bool = False) -> dict[str, Any] | None:
        """End the call at ``frame`` (default: all audio seen): every frame of it is analysed,
        masked if need be and written first."""
        rec = self.recording
        if rec is None:
            return None
        if frame is not None:  # released but not yet written past the end: not the call's
            self._written_to = max(self._flushed_to, min(self._written_to, frame))
        self._flush()  # what the blocks before released: the call's audio stays in order
        for ev in self.analyzer.drain():
            self._on_event(ev, ending=True)
        end = (self.analyzer.pushed_to or 0) if frame is None else frame
        if not discard:
            self._release(end, final=True)
            self._flush()
        self.recording = None
        self.analyzer.call_onset = None
        digits = [d for d in self._digits if d.start_frame < end]
        # Masked (PCI): the count of keys is kept, their values are stored nowhere.
        rec.dtmf = "".join("*" if self.line.mask_dtmf else d.digit for d in digits)
        self._prev_caller = (rec.caller_number, rec.caller_name)  # for a max_length continuation
        self._prev_redirected = self._redirected
        if discard:
            logger.info("line %s: %.1f s of sound was too short for a call; not kept",
                        self.line.name, rec.frames / self.line.rate)
            rec.discard()
            return None
        self._forget_cid()
        # Caller-ID facts beyond number and name: into the index row and sidecar (``finish``) and on
        # the summary (the ``call_ended`` event).
        rec.caller_redirected_from = self._redirected
        rec.waiting_callers = list(self._waiting)
        summary = rec.finish(reason)
        if self._redirected:
            summary["caller_redirected_from"] = self._redirected
        if self._waiting:
            summary["waiting_callers"] = list(self._waiting)
        if self._sit is not None:  # the call failed: which special information tone said so
            summary["sit"] = self._sit
            self._sit = None
        self.calls_recorded += 1
        logger.info("line %s: call %s ended (%s), %.1f s", self.line.name, rec.id, reason,
                    summary["duration_s"])
        self.listener.call_ended(self.line.name, summary)
        return summary

    # --- what the line said (analyser events, in stream frames) ---
    def _on_event(self, ev: Event, *, ending: bool = False) -> None:
        rec = self.recording
        if isinstance(ev, DtmfDigit):
            if rec is not None and ev.start_frame >= self._rec_start:
                self._digits.append(ev)
        elif isinstance(ev, CallerId) and ev.kind == "waiting":
            self._call_waiting(ev)
        elif isinstance(ev, CallerId) and ev.kind != "call":
            # Message waiting / advice of charge: the exchange talking to the phone, not a caller.
            logger.info("line %s: %s message (%s)%s", self.line.name, ev.kind, ev.standard,
                        "" if ev.message_waiting is None else f" messages waiting: {ev.message_waiting}")
        elif isinstance(ev, CallerId):
            logger.info("line %s: caller ID %s %s (%s)", self.line.name, ev.number or ev.number_absent or "-",
                        ev.name or ev.name_absent or "", ev.standard)
            if ev.standard == "dtmf":  # its keys were signalling, not dialling
                self._digits = [d for d in self._digits
                                if not ev.start_frame <= d.start_frame < ev.end_frame]
            self._cids.append(ev)
            if rec is not None and rec.caller_number is None and rec.caller_name is None \
                    and self._cid_fits(ev):
                self._name_call(ev)
        elif isinstance(ev, ToneEvent):
            if rec is not None and not ending and self._tone_ends_call(ev):
                end = max(ev.start_frame, self._written_to)
                logger.info("line %s: %s tone%s %.1f s into call %s: call over", self.line.name, ev.kind,
                            f" ({ev.variant})" if ev.variant else "",
                            (ev.start_frame - self._onset) / self.line.rate, rec.id)
                if ev.kind == "sit":
                    self._sit = ev.variant or ""
                self._end("tone", end)
                self.segmenter.reset()
                self._tone_hold = True
                self._quiet_frames = 0

    def _call_waiting(self, cid: CallerId) -> None:
        """A second caller announced during the call (call waiting): kept with the call in
        progress (``waiting_callers`` of its summary and index row), never naming a call. The phone's
        acknowledgement (DTMF ``A``-``D`` between the alert and the FSK) was signalling, not a key."""
        rate = self.line.rate
        logger.info("line %s: call waiting: %s %s (%s)", self.line.name, cid.number or cid.number_absent or "-",
                    cid.name or cid.name_absent or "", cid.standard)
        if self.recording is None:
            return
        self._digits = [d for d in self._digits
                        if not (d.digit in "ABCD" and cid.start_frame - CW_ACK_S * rate <= d.start_frame
                                < cid.start_frame)]
        self._waiting.append({"number": cid.number, "name": cid.name,
                              "at_s": round((cid.start_frame - self._rec_start) / rate, 3)})

    def _cid_fits(self, cid: CallerId) -> bool:
        rate = self.line.rate
        return (self._rec_start - self.line.callerid_window_s * rate <= cid.end_frame
                <= self._onset + CID_IN_CALL_S * rate)

    def _name_call(self, cid: CallerId) -> None:
        assert self.recording is not None
        if cid.number is None and cid.name is None:
            return  # withheld/unavailable: nothing to store (the reason is logged)
        self.recording.set_caller(cid.number, cid.name)
        self._call_cid = cid
        self._redirected = cid.redirected_from

    def _forget_cid(self) -> None:
        """The call named by a caller ID was kept: that caller ID names no other call. (A sound too
        short to be a call, e.g. the caller ID burst itself, does not use it up.)"""
        if self._call_cid in self._cids:
            self._cids.remove(self._call_cid)
        self._call_cid = None

    def _tone_ends_call(self, ev: ToneEvent) -> bool:
        line = self.line
        if ev.kind not in ENDING_TONES or not line.end_on_tone or line.trigger == "continuous":
            return False
        if ev.start_frame - self._onset < line.min_call_s * line.rate:
            return False  # the call began with it (dial tone before dialling)
        if ev.kind == "dial" and any(ev.start_frame - d.end_frame < DIAL_AFTER_DIGIT_S * line.rate
                                     for d in self._digits):
            return False  # a second dial tone after a PBX's outside-line digit
        return True

    def _vox_level(self, level: float, n: int) -> float:
        """The level the VOX segmenter sees: nothing while a tone that ended a call goes on."""
        if not self._tone_hold:
            return level
        self._quiet_frames = self._quiet_frames + n if level < self.line.vox_stop_dbfs else 0
        if self._quiet_frames >= TONE_QUIET_S * self.line.rate and not self.analyzer.tone_active:
            self._tone_hold = False
        return FLOOR_DBFS

    def _offhook_step(self, b: Block, s: int, n: int) -> list[Any]:
        """Step the off-hook segmenter with the hook state at the end of block ``b``.

        A ``TimedHook`` (``gpio.HookInput``) is asked for its state *at the block's end* and
        the edge that made it, mapped to a frame through the block's ``t_mono``: the call
        starts and ends at the edge, however late the pipeline handles the block. A plain
        callable (or a block without ``t_mono``) is read now, as the block is handled."""
        since: int | None = None
        if self._timed_hook is not None and b.t_mono is not None:
            offhook, changed_mono = self._timed_hook.at(b.t_mono + n / b.rate)
            if changed_mono is not None:
                since = s + round((changed_mono - b.t_mono) * b.rate)
        else:
            offhook = bool(self.hook()) if callable(self.hook) else False
        if self._tone_hold:
            if offhook:
                offhook, since = False, None  # still off-hook after the tone ended the call: wait for on-hook
            else:
                self._tone_hold = False
        return self.segmenter.step(offhook, s, n, since)

    def _new_stream(self, stream: int) -> None:
        # A reopened PCM starts counting frames from zero: nothing carries over.
        self.stream = stream
        if self.recording is not None:
            self._end("fault")
        self._reset_analysis()
        self.segmenter.reset()

    def _reset_analysis(self) -> None:
        self.analyzer.reset()
        self._cids.clear()
        self._tone_hold = False

    # --- events from outside the audio ---
    def source_lost(self) -> None:
        """The PCM failed: end any open call (what was captured is kept)."""
        self._end("fault")
        self.segmenter.reset()
        self._reset_analysis()
        self.level_dbfs = FLOOR_DBFS

    def shutdown(self) -> dict[str, Any] | None:
        return self._end("shutdown")


def shutdown_all(line_calls: Iterable[LineCalls]) -> None:
    """Clean stop: every line's open call finalised (``end_reason = "shutdown"``), whatever
    happens to one of them."""
    for calls in line_calls:
        try:
            calls.shutdown()
        except Exception:  # noqa: BLE001 - finalise the others whatever happens to one
            logger.exception("line %s: could not finalise its open call", calls.line.name)
