"""The audio-file adapter: the only module that imports ``soundfile`` (libsndfile).

Writers are set up so that a kill or a power cut loses at most about a second:
Ogg Opus pages are emitted at least every 200 ms (SFC_SET_OGG_PAGE_LATENCY_MS),
WAV headers are rewritten on every write (SFC_SET_UPDATE_HEADER_AUTO), and
``sync()`` (sf_write_sync: fsync of the file) is called by the recording on
the audio clock, and ``close()`` fsyncs the finished file (its last frames and the header the
codec rewrites at the end) before the caller renames it. FLAC frames reach the file as libFLAC
emits them: at compression level 2 (``FLAC_COMPRESSION``) a frame is 1152 samples (144 ms at
8 kHz); libsndfile's default, level 5, makes 4096 (512 ms held back at any moment, which alone
would take a power cut's loss past a second). Level 2 files of line audio are about 2 % larger.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

FORMATS = {  # codec -> (libsndfile major format, subtype, file extension)
    "opus": ("OGG", "OPUS", "opus"),
    "flac": ("FLAC", "PCM_16", "flac"),
    "wav": ("WAV", "PCM_16", "wav"),
}
_SFC_SET_UPDATE_HEADER_AUTO = 0x1061
_SFC_SET_OGG_PAGE_LATENCY_MS = 0x1302
OPUS_PAGE_LATENCY_MS = 200.0
FLAC_COMPRESSION = 0.25  # soundfile's 0..1 scale: libFLAC level 2, frames of 1152 samples
FILE_MODE = 0o640


class AudioError(OSError):
    """An audio file could not be written or read."""


class Undecodable(AudioError):
    """The file's bytes were read, and libsndfile finds no audio in them (not a disk error)."""


def extension(codec: str) -> str:
    return FORMATS[codec][2]


class AudioWriter:
    """Writes int16 frames to a new file (created 0640, never overwriting)."""

    def __init__(self, path: Path, codec: str, rate: int, channels: int) -> None:
        major, subtype, _ = FORMATS[codec]
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        extra = {"compression_level": FLAC_COMPRESSION} if codec == "flac" else {}
        try:
            self._f = sf.SoundFile(fd, "w", samplerate=rate, channels=channels, format=major,
                                   subtype=subtype, closefd=False, **extra)
        except (sf.LibsndfileError, RuntimeError, TypeError) as e:
            os.close(fd)
            raise AudioError(f"{path}: {e}") from None
        self._fd = fd  # ours: libsndfile leaves it open, so the finished file can be fsynced
        snd, ffi = sf._snd, sf._ffi  # libsndfile commands soundfile does not wrap
        if codec == "wav":
            snd.sf_command(self._f._file, _SFC_SET_UPDATE_HEADER_AUTO, ffi.NULL, 1)
        elif codec == "opus":
            latency = ffi.new("double*", OPUS_PAGE_LATENCY_MS)
            snd.sf_command(self._f._file, _SFC_SET_OGG_PAGE_LATENCY_MS, latency, ffi.sizeof("double"))
        self.frames = 0
        self.channels = channels

    def write(self, frames: np.ndarray) -> None:
        """int16 frames, ``(n, channels)``. (``buffer_write`` skips ``SoundFile.write``'s dtype
        and shape checks, a third of the call's cost for a FLAC run of 100 ms.)"""
        if frames.ndim != 2 or frames.shape[1] != self.channels:
            raise AudioError(f"frames of shape {frames.shape} for a file of {self.channels} channel(s)")
        try:
            self._f.buffer_write(np.ascontiguousarray(frames, dtype=np.int16), dtype="int16")
        except (sf.LibsndfileError, RuntimeError) as e:
            raise AudioError(str(e)) from None
        self.frames += len(frames)

    def sync(self) -> None:
        """Push everything written so far to the disk (libsndfile flush + fsync)."""
        try:
            self._f.flush()
        except (sf.LibsndfileError, RuntimeError) as e:
            raise AudioError(str(e)) from None

    def close(self) -> None:
        """Finish the file and push all of it to the disk: what libsndfile writes on closing
        (the codec's last frames, FLAC's STREAMINFO, the Ogg end of stream) is not covered
        by the last ``sync()``, and a file renamed before it is on disk can come back empty
        after a power cut."""
        if self._fd < 0:
            return
        try:
            self._f.close()
            os.fsync(self._fd)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise AudioError(str(e)) from None
        finally:
            os.close(self._fd)
            self._fd = -1


_SALVAGE_STEP = 160  # frames: 20 ms at 8 kHz


def read_blocks(path: Path, block_frames: int = 8000) -> Iterator[np.ndarray]:
    """Yield int16 blocks of whatever libsndfile can read, stopping quietly at a cut-off end."""
    step, pos = block_frames, 0
    while True:
        try:
            f = sf.SoundFile(str(path))
            if pos:
                f.seek(pos)
        except (sf.LibsndfileError, RuntimeError) as e:
            if not pos:
                raise Undecodable(f"{path}: {e}") from None
            return
        with f:
            while True:
                try:
                    block = f.read(step, dtype="int16", always_2d=True)
                except (sf.LibsndfileError, RuntimeError):
                    break
                if not len(block):
                    return
                pos += len(block)
                yield block
        # A file cut by a crash ends in a partial frame/page, and libsndfile fails the whole
        # read that reaches it (for FLAC, all of an 8000-frame block: 1 s of audio), leaving
        # the handle unusable. Open it again and take the rest 20 ms at a time, up to the cut.
        if step == _SALVAGE_STEP:
            return
        step = _SALVAGE_STEP


def info(path: Path) -> tuple[int, int, int]:
    """(frames, rate, channels) of a finished file."""
    try:
        i = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(f"{path}: {e}") from None
    return i.frames, i.samplerate, i.channels


def read(path: Path) -> tuple[np.ndarray, int]:
    """All samples (int16, 2-D) and the rate; tolerant of a cut-off end."""
    try:
        rate = sf.info(str(path)).samplerate
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(f"{path}: {e}") from None
    blocks = list(read_blocks(path))
    if not blocks:
        return np.zeros((0, 1), dtype=np.int16), rate
    return np.concatenate(blocks), rate


def rewrite(src: Path, dst: Path, codec: str) -> int:
    """Salvage: decode what ``src`` holds and write it afresh, finalised, to ``dst``.

    Returns the number of frames kept. Ordinary players open the result.
    (An Ogg Opus salvage is re-encoded once: libsndfile cannot append an end of stream.)
    """
    try:
        i = sf.info(str(src))
        rate, channels = i.samplerate, i.channels
    except (sf.LibsndfileError, RuntimeError) as e:
        raise Undecodable(f"{src}: {e}") from None
    w = AudioWriter(dst, codec, rate, channels)
    try:
        for block in read_blocks(src):
            w.write(block)
    finally:
        w.close()  # fsyncs it: the caller deletes the only other copy next
    return w.frames
