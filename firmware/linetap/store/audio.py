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

Encrypted recordings (``encrypt=``, see :mod:`linetap.crypto`): libsndfile writes into memory
(:class:`Staging`, its virtual-IO file), and at each sync point ``commit`` hands what the codec
produced to the encrypted output, which appends it as one encrypted record; the plaintext
never reaches a file. What the codec has emitted is on the disk, encrypted, at the same
moments as in a plaintext file, so the loss bound is unchanged. The price: a codec's seek back
to patch bytes that were already encrypted is dropped. Ogg Opus never seeks back. FLAC's
STREAMINFO keeps "total samples unknown" (0) and no MD5, which the FLAC format allows (sox
decodes every sample; libsndfile fails to read the very last one, and :func:`read_blocks` stops
up to 20 ms before the end). WAV's RIFF and data sizes are set to 0xFFFFFFFF before the header is
encrypted, the usual mark of a WAV of unknown length, which libsndfile and sox read to the end of
the file (sizes 0, as libsndfile first writes them, would make sox read no sample at all).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator, Protocol

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


class EncryptedOutput(Protocol):
    """Where an encrypted recording's bytes go (``linetap.crypto.StreamWriter``)."""

    def append(self, plain: bytes, frames_end: int) -> None: ...
    def fsync(self) -> None: ...
    def close(self, frames_end: int) -> None: ...


OpenEncrypted = Callable[[Path, int], EncryptedOutput]  # (path, rate) -> a new encrypted file


class Staging:
    """The in-memory file libsndfile writes an encrypted recording into (its virtual IO).

    It holds only what was written since the last :meth:`take`; positions count from the
    start of the whole (virtual) file, so the codec sees an ordinary seekable file. A write
    before the taken part (a header patch; see the module docstring) is dropped and counted."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._base = 0  # bytes taken so far: the start of _buf in the virtual file
        self._pos = 0
        self.dropped_writes = 0

    def write(self, data: bytes) -> int:
        b = bytes(data)
        n = len(b)
        if self._pos < self._base:
            skip = min(n, self._base - self._pos)
            self.dropped_writes += 1
            b, self._pos = b[skip:], self._pos + skip
        if b:
            off = self._pos - self._base
            if off > len(self._buf):
                self._buf.extend(bytes(off - len(self._buf)))
            self._buf[off:off + len(b)] = b
            self._pos += len(b)
        return n

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            offset += self._pos
        elif whence == os.SEEK_END:
            offset += self._base + len(self._buf)
        self._pos = max(0, offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        return b""  # write-only: libsndfile never reads back what it wrote in "w" mode

    @property
    def taken(self) -> int:
        return self._base

    def mark_wav_length_unknown(self) -> None:
        """Before the WAV header is first taken: RIFF and data sizes 0xFFFFFFFF (read to the end)."""
        i = self._buf.find(b"data", 12, 256)  # the data chunk header, right after fmt (and any fact chunk)
        if self._base == 0 and self._buf[:4] == b"RIFF" and i >= 0 and len(self._buf) >= i + 8:
            self._buf[4:8] = self._buf[i + 4:i + 8] = b"\xff\xff\xff\xff"

    def pending(self) -> bytes:
        """Everything written since the last take (kept until taken: a failed append retries it)."""
        return bytes(self._buf)

    def take(self) -> bytes:
        """Everything written since the last take (and forget it)."""
        out, self._buf = bytes(self._buf), bytearray()
        self._base += len(out)
        return out


class AudioWriter:
    """Writes int16 frames to a new file (created 0640, never overwriting).

    With ``encrypt`` (see the module docstring), the file is the encrypted output it opens,
    and libsndfile's bytes reach it only through ``commit``/``sync``/``close``."""

    def __init__(self, path: Path, codec: str, rate: int, channels: int, *,
                 encrypt: OpenEncrypted | None = None) -> None:
        major, subtype, _ = FORMATS[codec]
        extra = {"compression_level": FLAC_COMPRESSION} if codec == "flac" else {}
        self._out: EncryptedOutput | None = None
        self._staging: Staging | None = None
        self._fd = -1
        if encrypt is not None:
            self._out = encrypt(path, rate)
            self._staging = Staging()
            target: object = self._staging
        else:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
            target = self._fd  # ours: libsndfile leaves it open, so the finished file can be fsynced
        try:
            self._f = sf.SoundFile(target, "w", samplerate=rate, channels=channels, format=major,
                                   subtype=subtype, closefd=False, **extra)
        except (sf.LibsndfileError, RuntimeError, TypeError) as e:
            if self._out is not None:
                self._out.close(0)
            else:
                os.close(self._fd)
            raise AudioError(f"{path}: {e}") from None
        snd, ffi = sf._snd, sf._ffi  # libsndfile commands soundfile does not wrap
        if codec == "wav" and self._out is None:  # encrypted: the header cannot be rewritten anyway
            snd.sf_command(self._f._file, _SFC_SET_UPDATE_HEADER_AUTO, ffi.NULL, 1)
        elif codec == "opus":
            latency = ffi.new("double*", OPUS_PAGE_LATENCY_MS)
            snd.sf_command(self._f._file, _SFC_SET_OGG_PAGE_LATENCY_MS, latency, ffi.sizeof("double"))
        self.frames = 0
        self.channels = channels
        self._wav = codec == "wav"

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

    def commit(self) -> None:
        """Encrypted: hand what the codec produced since the last commit to the file (one
        encrypted record, written but not fsynced: the caller syncs, alone or in a ``syncfs``).
        Plaintext: nothing to do, libsndfile writes to the file itself."""
        if self._out is None or self._staging is None:
            return
        self._out.append(self._pending(), self.frames)  # OSError: kept for the retry
        self._staging.take()

    def _pending(self) -> bytes:
        assert self._staging is not None
        if self._wav and self._staging.taken == 0:
            self._staging.mark_wav_length_unknown()
        return self._staging.pending()

    def sync(self) -> None:
        """Push everything written so far to the disk (libsndfile flush + fsync)."""
        try:
            self._f.flush()
        except (sf.LibsndfileError, RuntimeError) as e:
            raise AudioError(str(e)) from None
        if self._out is not None:
            self.commit()
            self._out.fsync()

    def close(self) -> None:
        """Finish the file and push all of it to the disk: what libsndfile writes on closing
        (the codec's last frames, FLAC's STREAMINFO, the Ogg end of stream) is not covered
        by the last ``sync()``, and a file renamed before it is on disk can come back empty
        after a power cut."""
        if self._out is not None:
            out, self._out = self._out, None
            try:
                self._f.close()
                out.append(self._pending(), self.frames)
            except (sf.LibsndfileError, RuntimeError) as e:
                raise AudioError(str(e)) from None
            finally:
                out.close(self.frames)  # fsyncs; what could not be appended is not in the file
            return
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
