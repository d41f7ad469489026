"""Encrypted from the first byte: recordings encrypted as they are written, decrypted off the box.

The oracle is the standard ``age`` tool (Debian's, installed by scripts/setup), driven by the
stand-alone ``firmware/linetap/unseal.py`` run with ``python -I -S`` (no site-packages: the
standard library only, as on an owner's Windows or macOS machine).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement

from linetap import crypto, unseal
from linetap.clock import FakeClock
from linetap.index.db import Index
from linetap.store import audio
from linetap.store.recordings import Recording, salvage, sha256_file

ROOT = Path(__file__).resolve().parents[1]
UNSEAL = ROOT / "firmware" / "linetap" / "unseal.py"
RATE = 8000
SYNC_S = 0.4

pytestmark = pytest.mark.skipif(shutil.which("age") is None, reason="the age tool (scripts/setup installs it)")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return crypto.generate_keypair(tmp_path_factory.mktemp("keys"))


def tone(seconds: float, channels: int = 1) -> np.ndarray:
    """Distinctive, incompressible-enough audio: a chirp plus seeded noise, int16 (n, channels)."""
    t = np.arange(int(seconds * RATE))
    rng = np.random.default_rng(7)
    cols = [(np.sin(t * (0.01 + t * 1e-6) * (c + 1)) * 8000 + rng.normal(0, 800, len(t))).astype(np.int16)
            for c in range(channels)]
    return np.stack(cols, axis=1)


def start(index: Index, data_dir: Path, keys: tuple[Path, Path], codec: str, channels: int = 1) -> Recording:
    return Recording(data_dir, index, line="line1", codec=codec, rate=RATE, channels=channels,
                     started_at=FakeClock().wall(), sync_interval_s=SYNC_S, encrypt=crypto.stream_opener(keys[0]))


def feed(rec: Recording, frames: np.ndarray, block: int = 160) -> None:
    for i in range(0, len(frames), block):  # as the pipeline does: 20 ms blocks
        rec.write(frames[i:i + block])


def age_decrypt(src: Path, key: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """The owner's way without linetap: unseal.py (standard library only) + the age tool."""
    return subprocess.run([sys.executable, "-I", "-S", str(UNSEAL), "--key", str(key), "--out", str(out), str(src)],
                          capture_output=True, text=True, timeout=60)


def sox_samples(path: Path) -> int:
    """Samples per channel that sox decodes (an independent decoder: 'plays')."""
    p = subprocess.run(["sox", str(path), "-t", "raw", "-e", "signed", "-b", "16", "-"], capture_output=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    return len(p.stdout) // 2


def pcm_needles(frames: np.ndarray, every_bytes: int = 1024, size: int = 48) -> list[bytes]:
    raw = np.ascontiguousarray(frames).tobytes()
    return [raw[i:i + size] for i in range(0, len(raw) - size, every_bytes)]


def plaintext_hits(root: Path, needles: list[bytes]) -> list[str]:
    """Every file under ``root`` holding a run of the PCM (``name: count``)."""
    hits = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            n = sum(1 for nd in needles if nd in data)
            if n:
                hits.append(f"{p.relative_to(root)}: {n}")
    return hits


# --- the framing, read without decrypting ------------------------------------------------------------

def test_staging_gives_the_codec_a_seekable_file_and_drops_patches_behind_what_was_taken() -> None:
    s = audio.Staging()
    s.write(b"HEADER--")
    s.write(b"audio1")
    assert (s.tell(), s.take()) == (14, b"HEADER--audio1")
    s.write(b"audio2")
    s.seek(0)
    s.write(b"PATCHED!")  # already taken (encrypted): cannot be rewritten
    s.seek(0, os.SEEK_END)
    s.write(b"3")
    assert (s.take(), s.dropped_writes, s.tell()) == (b"audio23", 1, 21)


def test_a_seek_back_inside_what_is_not_yet_taken_rewrites_it() -> None:
    s = audio.Staging()
    s.write(b"abcdef")
    s.seek(2)
    s.write(b"XY")
    assert (s.take(), s.dropped_writes) == (b"abXYef", 0)


def test_scan_finds_the_valid_prefix_of_a_stream_cut_anywhere(tmp_path: Path) -> None:
    recs = [b"A" * 10, b"B" * 20, b"C" * 30]
    whole = unseal.header(RATE) + b"".join(unseal.record(r, 100 * (i + 1)) for i, r in enumerate(recs))
    ends = [unseal.HEADER_BYTES + sum(unseal.RECORD.size + len(r) for r in recs[:k]) for k in range(4)]
    p = tmp_path / "s"
    for cut in range(unseal.HEADER_BYTES, len(whole) + 1):
        p.write_bytes(whole[:cut])
        k = max(i for i, e in enumerate(ends) if e <= cut)
        got = unseal.scan(p)
        assert (got.records, got.valid_bytes, got.frames, got.complete) == (k, ends[k], 100 * k, False), cut
    p.write_bytes(whole + unseal.end_record(321))
    assert unseal.scan(p) == unseal.Scan(RATE, 3, 321, len(whole) + unseal.RECORD.size, True)


def test_both_encrypted_formats_carry_the_suffix_the_chain_and_verify_know() -> None:
    from linetap.evidence import chain
    assert unseal.SUFFIX == crypto.SUFFIX == chain.SEALED_SUFFIX


def test_a_file_that_is_not_a_stream_is_named(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"RIFF....WAVE")
    with pytest.raises(unseal.StreamError, match="not a linetap age stream"):
        unseal.scan(tmp_path / "x")


# --- keys -------------------------------------------------------------------------------------------

def test_keygen_writes_age_keys_that_the_age_tool_reads_as_they_are(tmp_path: Path,
                                                                    keys: tuple[Path, Path]) -> None:
    (tmp_path / "m").write_bytes(b"hello owner")
    subprocess.run(["age", "-R", str(keys[0]), "-o", str(tmp_path / "m.age"), str(tmp_path / "m")], check=True)
    p = subprocess.run(["age", "-d", "-i", str(keys[1]), str(tmp_path / "m.age")], capture_output=True, check=True)
    assert p.stdout == b"hello owner"


def test_a_key_pair_made_before_age_encrypts_and_decrypts_streams(tmp_path: Path, index: Index,
                                                                  data_dir: Path) -> None:
    """Older linetap keys (one base64 line of 32 bytes) are X25519 keys too: converted, they keep
    working for encrypt_to, for linetap decrypt, and for the age tool through unseal.py."""
    sk = crypto.PrivateKey.generate()
    old_pub, old_key = tmp_path / "old.pub", tmp_path / "old.key"
    old_pub.write_bytes(b"# linetap public key\n" + base64.b64encode(bytes(sk.public_key)) + b"\n")
    old_key.write_bytes(b"# linetap private key\n" + base64.b64encode(bytes(sk)) + b"\n")
    rec = start(index, data_dir, (old_pub, old_key), "wav")
    frames = tone(1.0)
    feed(rec, frames)
    row = rec.finish("onhook")
    src = data_dir / row["path"]
    crypto.decrypt_file(src, tmp_path / "a.wav", old_key)
    assert age_decrypt(src, old_key, tmp_path / "b.wav").returncode == 0
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    assert np.array_equal(audio.read(tmp_path / "a.wav")[0], frames)


def test_recordings_sealed_the_old_way_still_decrypt_with_the_new_keys(tmp_path: Path,
                                                                       keys: tuple[Path, Path]) -> None:
    (tmp_path / "plain").write_bytes(os.urandom(100_000))
    crypto.encrypt_file(tmp_path / "plain", tmp_path / "old.sealed", keys[0])  # LTSEAL, PyNaCl
    res = crypto.decrypt_file(tmp_path / "old.sealed", tmp_path / "back", keys[1])
    assert ((tmp_path / "back").read_bytes() == (tmp_path / "plain").read_bytes(), res.complete) == (True, True)


# --- recordings encrypted as they are written ------------------------------------------------------

@pytest.mark.parametrize("codec", ["opus", "flac", "wav"])
@pytest.mark.parametrize("channels", [1, 2])
def test_each_codec_written_encrypted_decrypts_with_age_and_plays(index: Index, data_dir: Path, tmp_path: Path,
                                                                  keys: tuple[Path, Path], codec: str,
                                                                  channels: int) -> None:
    rec = start(index, data_dir, keys, codec, channels)
    frames = tone(3.0, channels)
    feed(rec, frames)
    row = rec.finish("onhook")
    src = data_dir / row["path"]
    assert row["path"].endswith(f".{audio.extension(codec)}.sealed") and unseal.scan(src).complete
    assert unseal.scan(src).records == pytest.approx(3.0 / SYNC_S, abs=1)  # one record per sync point
    ours, theirs = tmp_path / f"ours.{audio.extension(codec)}", tmp_path / f"age.{audio.extension(codec)}"
    res = crypto.decrypt_file(src, ours, keys[1])
    p = age_decrypt(src, keys[1], theirs)
    assert (p.returncode, "complete" in p.stdout) == (0, True), p.stderr
    assert ours.read_bytes() == theirs.read_bytes() and res.complete
    if codec != "opus":  # (Debian's sox has no Opus reader; libsndfile decodes it below)
        assert sox_samples(theirs) == len(frames) * channels
    got, rate = audio.read(theirs)
    assert (rate, got.shape[1]) == (RATE, channels)
    if codec == "wav":
        assert np.array_equal(got, frames)
    elif codec == "flac":  # STREAMINFO says "length unknown": libsndfile cannot read the very last sample
        assert len(frames) - len(got) <= 160 and np.array_equal(got, frames[:len(got)])


def test_no_plaintext_audio_is_on_disk_during_or_after_an_encrypted_call(index: Index, data_dir: Path,
                                                                         tmp_path: Path,
                                                                         keys: tuple[Path, Path]) -> None:
    rec = start(index, data_dir, keys, "wav")
    frames = tone(4.0)
    needles = pcm_needles(frames)
    feed(rec, frames[:RATE * 2])
    assert rec.part.stat().st_size > 2 * RATE  # mid-call: two seconds of audio are in the .part...
    assert plaintext_hits(data_dir, needles) == []  # ...and none of it in clear
    feed(rec, frames[RATE * 2:])
    row = rec.finish("onhook")
    assert plaintext_hits(data_dir, needles) == []
    crypto.decrypt_file(data_dir / row["path"], tmp_path / "out.wav", keys[1])
    # The scan can see audio: the decrypted file holds every needle.
    assert plaintext_hits(tmp_path, needles) == [f"out.wav: {len(needles)}"]


def test_the_index_and_chain_describe_the_encrypted_file(index: Index, data_dir: Path,
                                                         keys: tuple[Path, Path]) -> None:
    from linetap.config import StorageConfig
    from linetap.evidence.finalize import finalize_recording
    from linetap.evidence.verify import verify
    rec = start(index, data_dir, keys, "opus")
    feed(rec, tone(2.0))
    row = rec.finish("onhook")
    assert finalize_recording(index, data_dir, row, StorageConfig(codec="opus", encrypt_to=keys[0])) == {}
    call = index.get_call(row["id"])
    f = data_dir / call["path"]
    assert (call["bytes"], call["sha256"], verify(index, data_dir).problems) == (f.stat().st_size,
                                                                                   sha256_file(f), ())


def test_a_stream_refuses_the_wrong_key_and_names_an_altered_record(index: Index, data_dir: Path, tmp_path: Path,
                                                                    keys: tuple[Path, Path]) -> None:
    rec = start(index, data_dir, keys, "wav")
    feed(rec, tone(2.0))
    src = data_dir / rec.finish("onhook")["path"]
    _, other = crypto.generate_keypair(tmp_path / "other")
    with pytest.raises(crypto.CryptoError, match="does not open it"):
        crypto.decrypt_file(src, tmp_path / "a.wav", other)
    data = bytearray(src.read_bytes())
    second = unseal.HEADER_BYTES + unseal.RECORD.size + int.from_bytes(data[unseal.HEADER_BYTES:][:4], "big")
    data[second + unseal.RECORD.size + 300] ^= 1  # a bit of record 1's ciphertext
    src.write_bytes(bytes(data))
    with pytest.raises(crypto.CryptoError, match="record 1 is damaged or altered"):
        crypto.decrypt_file(src, tmp_path / "b.wav", keys[1])
    assert not (tmp_path / "a.wav").exists() and not (tmp_path / "b.wav").exists()
    assert age_decrypt(src, keys[1], tmp_path / "c.wav").returncode == 1  # the age tool refuses it too


# --- a crash mid-call ------------------------------------------------------------------------------

def crash_mid_call(index: Index, data_dir: Path, keys: tuple[Path, Path], codec: str,
                   seconds: float) -> tuple[Recording, np.ndarray]:
    """A call written for ``seconds`` and then abandoned as a SIGKILL would leave it: no close."""
    rec = start(index, data_dir, keys, codec)
    frames = tone(seconds)
    feed(rec, frames)
    return rec, frames


def test_a_cut_encrypted_part_decrypts_with_age_to_all_it_synced(index: Index, data_dir: Path, tmp_path: Path,
                                                                  keys: tuple[Path, Path]) -> None:
    rec, frames = crash_mid_call(index, data_dir, keys, "wav", 3.1)
    p = age_decrypt(rec.part, keys[1], tmp_path / "prefix.wav")
    assert (p.returncode, "cut by a crash" in p.stdout) == (0, True), p.stderr
    got, _ = audio.read(tmp_path / "prefix.wav")
    synced = int(3.1 // SYNC_S * SYNC_S * RATE)  # the last sync point before the "kill"
    assert np.array_equal(got, frames[:synced])
    res = crypto.decrypt_file(rec.part, tmp_path / "ours.wav", keys[1])
    assert (res.complete, (tmp_path / "ours.wav").read_bytes()) == (False, (tmp_path / "prefix.wav").read_bytes())


def test_a_record_cut_in_the_middle_is_dropped_and_the_prefix_stands(index: Index, data_dir: Path,
                                                                     tmp_path: Path, keys: tuple[Path, Path]) -> None:
    rec, frames = crash_mid_call(index, data_dir, keys, "wav", 2.0)
    whole = unseal.scan(rec.part)
    with open(rec.part, "ab") as f:  # a power cut while the next record was being written
        f.write(unseal.RECORD.pack(5000, 99999) + b"\0" * 1000)
    p = age_decrypt(rec.part, keys[1], tmp_path / "prefix.wav")
    assert p.returncode == 0, p.stderr
    assert np.array_equal(audio.read(tmp_path / "prefix.wav")[0], frames[:whole.frames])


def test_salvage_keeps_the_encrypted_prefix_as_it_is_and_indexes_it_recovered(index: Index, data_dir: Path,
                                                                             tmp_path: Path,
                                                                             keys: tuple[Path, Path]) -> None:
    rec, frames = crash_mid_call(index, data_dir, keys, "wav", 3.1)
    with open(rec.part, "ab") as f:
        f.write(unseal.RECORD.pack(5000, 99999) + b"\0" * 100)  # the incomplete record
    synced = unseal.scan(rec.part)
    (row,) = salvage(data_dir, index)
    final = data_dir / index.get_call(rec.id)["path"]
    assert (final == rec.final, rec.part.exists(), final.stat().st_size) == (True, False, synced.valid_bytes)
    call = index.get_call(rec.id)
    assert (call["status"], call["duration_s"], call["sha256"], call["bytes"]) == (
        "recovered", round(synced.frames / RATE, 3), sha256_file(final), synced.valid_bytes)
    assert age_decrypt(final, keys[1], tmp_path / "r.wav").returncode == 0
    assert np.array_equal(audio.read(tmp_path / "r.wav")[0], frames[:synced.frames])
    assert plaintext_hits(data_dir, pcm_needles(frames)) == []


def test_salvage_sets_aside_an_encrypted_part_without_one_whole_record(index: Index, data_dir: Path,
                                                                       keys: tuple[Path, Path]) -> None:
    rec, _ = crash_mid_call(index, data_dir, keys, "opus", 0.2)  # cut before the first sync point
    assert salvage(data_dir, index) == []
    assert (rec.final.with_name(rec.final.name + ".unreadable").exists(), rec.part.exists()) == (True, False)
    assert index.get_call(rec.id)["status"] == "recovered"


FILE_TOO_SMALL = """
import resource, signal, sys
from pathlib import Path
import numpy as np
from linetap import crypto
from linetap.index.db import open_index
from linetap.store.recordings import Recording
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
root, pub = Path(sys.argv[1]), Path(sys.argv[2])
index = open_index(root)
rec = Recording(root, index, line="line1", codec="wav", rate=8000, channels=1, started_at=1.7e9,
                sync_interval_s=0.4, encrypt=crypto.stream_opener(pub), retry_s=0.5)
frames = np.load(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (30000, hard))  # the disk "fills" after ~1.5 s of WAV
failed = False
for i in range(0, len(frames), 160):
    if i == 3 * 8000:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # and has room again
    rec.write(frames[i:i + 160])
    failed = failed or rec.error is not None
print(failed, rec.finish("onhook")["path"])
"""


def test_a_disk_that_fails_mid_call_loses_and_repeats_nothing_of_an_encrypted_recording(
        data_dir: Path, tmp_path: Path, keys: tuple[Path, Path]) -> None:
    """Writes fail for real (RLIMIT_FSIZE: EFBIG past 30 000 bytes) and work again 1.5 s later:
    the audio waits in RAM, a half-written record is cut back, and the file decrypts to exactly
    what was fed, once."""
    frames = tone(6.0)
    np.save(tmp_path / "frames.npy", frames)
    p = subprocess.run([sys.executable, "-c", FILE_TOO_SMALL, str(data_dir), str(keys[0]),
                        str(tmp_path / "frames.npy")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    failed, rel = p.stdout.split()
    assert (failed, "File too large" in p.stderr) == ("True", True), p.stderr
    crypto.decrypt_file(data_dir / rel, tmp_path / "out.wav", keys[1])
    assert unseal.scan(data_dir / rel).complete
    assert np.array_equal(audio.read(tmp_path / "out.wav")[0], frames)


def test_linetap_decrypt_of_a_cut_file_writes_its_prefix_and_says_so(index: Index, data_dir: Path, tmp_path: Path,
                                                                     keys: tuple[Path, Path]) -> None:
    rec, frames = crash_mid_call(index, data_dir, keys, "wav", 2.1)
    p = subprocess.run([sys.executable, "-m", "linetap", "decrypt", str(rec.part), "--key", str(keys[1]),
                        "--out", str(tmp_path / "o.wav")], capture_output=True, text=True, timeout=60)
    assert (p.returncode, "cut by a crash" in p.stdout) == (0, True), p.stdout + p.stderr
    assert np.array_equal(audio.read(tmp_path / "o.wav")[0], frames[:int(2.0 * RATE)])


# --- off the box: no hardware libraries, installable on Windows and macOS --------------------------

def test_linetap_decrypt_imports_no_hardware_or_box_library(index: Index, data_dir: Path, tmp_path: Path,
                                                           keys: tuple[Path, Path]) -> None:
    rec = start(index, data_dir, keys, "opus")
    feed(rec, tone(1.0))
    row = rec.finish("onhook")
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "linetap", "decrypt", str(data_dir / row["path"]),
                        "--key", str(keys[1]), "--out", str(tmp_path / "o.opus")], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    imported = {ln.rsplit("|", 1)[-1].strip().split(".")[0] for ln in p.stderr.splitlines()
                if ln.startswith("import time:")}
    assert "pyrage" in imported  # the trace is the real one
    assert imported & {"alsaaudio", "gpiozero", "sqlite_utils", "paho", "soundfile"} == set()


def test_the_stand_alone_decryptor_needs_only_the_standard_library(tmp_path: Path,
                                                                  keys: tuple[Path, Path]) -> None:
    w = crypto.StreamWriter(tmp_path / "rec.sealed", crypto.load_recipient(keys[0]), RATE)
    w.append(b"first sync interval ", 3200)
    w.append(b"and the second", 6400)
    w.close(6400)
    lone = tmp_path / "alone" / "unseal.py"
    lone.parent.mkdir()
    shutil.copy(UNSEAL, lone)  # as an owner would: the one file, no linetap package beside it
    run = ("import runpy, sys\n"
           f"sys.argv = ['unseal.py', '--key', {str(keys[1])!r}, '--out', {str(tmp_path / 'out')!r}, "
           f"{str(tmp_path / 'rec.sealed')!r}]\n"
           "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\nexcept SystemExit as e:\n"
           "    assert not e.code, e.code\n"
           "print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))\n")
    p = subprocess.run([sys.executable, "-I", "-S", "-c", run], cwd=lone.parent, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    loaded = set(p.stdout.splitlines()[-1].split())
    assert (tmp_path / "out").read_bytes() == b"first sync interval and the second"
    assert loaded - set(sys.stdlib_module_names) - {"__main__"} == set()


def test_keygen_and_decrypt_use_no_posix_only_os_call(index: Index, data_dir: Path, tmp_path: Path,
                                                      keys: tuple[Path, Path],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """What an owner runs on Windows, with the os functions Windows' Python lacks taken away."""
    rec = start(index, data_dir, keys, "wav")
    feed(rec, tone(1.0))
    row = rec.finish("onhook")
    for name in ("O_CLOEXEC", "O_DIRECTORY", "fchmod", "fchown", "chown", "sync", "getuid"):
        monkeypatch.delattr(os, name, raising=False)
    pub, key = crypto.generate_keypair(tmp_path / "win")
    res = crypto.decrypt_file(data_dir / row["path"], tmp_path / "out.wav", keys[1])
    assert (pub.is_file(), key.is_file(), res.complete, (tmp_path / "out.wav").stat().st_size) == (
        True, True, True, res.bytes)


@pytest.mark.parametrize("platform", ["win32", "darwin"])
def test_pip_install_on_windows_and_macos_asks_for_no_alsa_or_gpio(platform: str) -> None:
    """``pip install linetap`` cannot run here for those systems; its environment markers can be
    evaluated for them."""
    deps = [Requirement(d) for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    env = {"sys_platform": platform, "platform_system": {"win32": "Windows", "darwin": "Darwin"}[platform]}
    wanted = {r.name.lower() for r in deps if r.marker is None or r.marker.evaluate(env)}
    linux = {r.name.lower() for r in deps if r.marker is None or r.marker.evaluate({"sys_platform": "linux"})}
    assert (linux - wanted, "pyrage" in wanted) == ({"pyalsaaudio", "gpiozero"}, True)
