"""Encryption at rest: streaming sealed files, keys, and the recorder's finalize step."""

from __future__ import annotations

import os
import stat
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from linetap import crypto
from linetap.clock import FakeClock
from linetap.config import StorageConfig
from linetap.evidence import chain
from linetap.evidence.export import export_call, verify_export
from linetap.evidence.finalize import finalize_pending, finalize_recording
from linetap.evidence.verify import verify
from linetap.index.db import Index
from linetap.store import audio
from linetap.store.recordings import Recording, sha256_file


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return crypto.generate_keypair(tmp_path_factory.mktemp("keys"))


def record(index: Index, data_dir: Path, codec: str, storage: StorageConfig, *, channels: int = 1,
           finalize: bool = True) -> tuple[dict, np.ndarray]:
    rec = Recording(data_dir, index, line="line1", codec=codec, rate=8000, channels=channels,
                    started_at=FakeClock().wall(), sync_interval_s=0.5)
    t = np.arange(8000 * 3)
    frames = np.stack([(np.sin(t * 0.05 * (c + 1)) * 9000).astype(np.int16) for c in range(channels)], axis=1)
    rec.write(frames)
    row = rec.finish("onhook")
    if finalize:
        row = {**row, **finalize_recording(index, data_dir, row, storage)}
    return row, frames


def sealed_store(keys: tuple[Path, Path], codec: str = "opus") -> StorageConfig:
    return StorageConfig(codec=codec, encrypt_to=keys[0])


# --- the file format -----------------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, crypto.CHUNK_BYTES, 3 * crypto.CHUNK_BYTES + 17])
def test_round_trip_restores_the_bytes_exactly(tmp_path: Path, keys: tuple[Path, Path], size: int) -> None:
    src = tmp_path / "plain"
    src.write_bytes(os.urandom(size))
    crypto.encrypt_file(src, tmp_path / "sealed", keys[0])
    crypto.decrypt_file(tmp_path / "sealed", tmp_path / "back", keys[1])
    assert (tmp_path / "back").read_bytes() == src.read_bytes()


def test_wrong_private_key_is_refused(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    _, other = crypto.generate_keypair(tmp_path / "other")
    (tmp_path / "plain").write_bytes(b"hello")
    crypto.encrypt_file(tmp_path / "plain", tmp_path / "sealed", keys[0])
    with pytest.raises(crypto.CryptoError, match="does not open it"):
        crypto.decrypt_file(tmp_path / "sealed", tmp_path / "back", other)


def test_a_truncated_sealed_file_is_refused(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    (tmp_path / "plain").write_bytes(os.urandom(3 * crypto.CHUNK_BYTES))
    crypto.encrypt_file(tmp_path / "plain", tmp_path / "sealed", keys[0])
    (tmp_path / "cut").write_bytes((tmp_path / "sealed").read_bytes()[: -(crypto.CHUNK_BYTES // 2)])
    with pytest.raises(crypto.CryptoError, match="truncated|damaged"):
        crypto.decrypt_file(tmp_path / "cut", tmp_path / "back", keys[1])


def test_a_truncated_file_leaves_no_partial_output(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    (tmp_path / "plain").write_bytes(os.urandom(3 * crypto.CHUNK_BYTES))
    crypto.encrypt_file(tmp_path / "plain", tmp_path / "sealed", keys[0])
    sealed = (tmp_path / "sealed").read_bytes()
    (tmp_path / "cut").write_bytes(sealed[: -(crypto.CHUNK_BYTES + crypto.ABYTES)])  # the final chunk cut off
    with pytest.raises(crypto.CryptoError, match="truncated"):
        crypto.decrypt_file(tmp_path / "cut", tmp_path / "back", keys[1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut", "plain", "sealed"]


def test_an_altered_chunk_is_refused(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    (tmp_path / "plain").write_bytes(os.urandom(2 * crypto.CHUNK_BYTES))
    crypto.encrypt_file(tmp_path / "plain", tmp_path / "sealed", keys[0])
    data = bytearray((tmp_path / "sealed").read_bytes())
    data[-100] ^= 1
    (tmp_path / "sealed").write_bytes(bytes(data))
    with pytest.raises(crypto.CryptoError, match="chunk 1 is damaged or altered"):
        crypto.decrypt_file(tmp_path / "sealed", tmp_path / "back", keys[1])


def test_a_non_sealed_file_is_named_as_such(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    (tmp_path / "x.wav").write_bytes(b"RIFF....")
    with pytest.raises(crypto.CryptoError, match="not a linetap sealed file"):
        crypto.decrypt_file(tmp_path / "x.wav", tmp_path / "back", keys[1])


def test_memory_stays_flat_while_encrypting_and_decrypting_a_large_file(tmp_path: Path,
                                                                       keys: tuple[Path, Path]) -> None:
    src = tmp_path / "big"
    with open(src, "wb") as f:
        for _ in range(32):
            f.write(os.urandom(1 << 20))  # 32 MB: about 4 h of 8 kHz Opus, plenty more than a call
    tracemalloc.start()
    crypto.encrypt_file(src, tmp_path / "sealed", keys[0])
    crypto.decrypt_file(tmp_path / "sealed", tmp_path / "back", keys[1])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20


def test_keygen_writes_a_private_key_only_its_owner_can_read(keys: tuple[Path, Path]) -> None:
    assert (stat.S_IMODE(keys[1].stat().st_mode), stat.S_IMODE(keys[0].stat().st_mode)) == (0o600, 0o640)


def test_keygen_never_overwrites_a_key(keys: tuple[Path, Path]) -> None:
    with pytest.raises(crypto.CryptoError, match="already exists"):
        crypto.generate_keypair(keys[0].parent)


def test_a_bad_key_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "k").write_text("not a key\n")
    with pytest.raises(crypto.CryptoError, match="not a linetap public key"):
        crypto.load_public_key(tmp_path / "k")


def test_private_key_is_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    _pub, key = crypto.generate_keypair(tmp_path / "k")
    secret = key.read_text().splitlines()[-1]
    assert secret not in caplog.text


def test_sealed_suffix_is_what_the_chain_expects() -> None:
    assert crypto.SUFFIX == chain.SEALED_SUFFIX


# --- recordings on the box -----------------------------------------------------------------------

@pytest.mark.parametrize("codec", ["opus", "flac", "wav"])
@pytest.mark.parametrize("channels", [1, 2])
def test_every_codec_round_trips_through_encryption(index: Index, data_dir: Path, tmp_path: Path,
                                                    keys: tuple[Path, Path], codec: str, channels: int) -> None:
    row, frames = record(index, data_dir, codec, sealed_store(keys, codec), channels=channels)
    out = tmp_path / f"back.{audio.extension(codec)}"
    crypto.decrypt_file(data_dir / row["path"], out, keys[1])
    got, rate = audio.read(out)
    same = np.array_equal(got, frames) if codec != "opus" else got.shape[1] == channels and len(got) > 0
    assert (rate, same, sha256_file(out)) == (8000, True, chain.live_entry(index, row["id"]).payload["plain_sha256"])


@pytest.mark.parametrize("codec", ["opus", "flac", "wav"])
def test_no_plaintext_stays_on_the_box(index: Index, data_dir: Path, keys: tuple[Path, Path], codec: str) -> None:
    record(index, data_dir, codec, sealed_store(keys, codec))
    files = sorted(p.name for p in (data_dir / "recordings").rglob("*") if p.is_file())
    # The sealed audio and its metadata sidecar (<name>.<ext>.json: store/recordings.py), nothing else.
    assert [n.endswith(".sealed") for n in files] == [False, True]
    assert files[0] == files[1].removesuffix(".sealed") + ".json"


@pytest.mark.parametrize("codec", ["opus", "flac", "wav"])
def test_the_sealed_file_is_unreadable_without_the_key(index: Index, data_dir: Path, keys: tuple[Path, Path],
                                                       codec: str) -> None:
    row, _ = record(index, data_dir, codec, sealed_store(keys, codec))
    with pytest.raises(audio.AudioError):
        audio.info(data_dir / row["path"])


def test_the_sealed_file_holds_no_plaintext_run(index: Index, data_dir: Path, keys: tuple[Path, Path],
                                                tmp_path: Path) -> None:
    row, _ = record(index, data_dir, "wav", sealed_store(keys, "wav"))
    crypto.decrypt_file(data_dir / row["path"], tmp_path / "plain.wav", keys[1])
    plain, sealed = (tmp_path / "plain.wav").read_bytes(), (data_dir / row["path"]).read_bytes()
    assert not any(plain[i:i + 32] in sealed for i in range(0, len(plain) - 32, 4096))


def test_the_index_describes_the_sealed_file(index: Index, data_dir: Path, keys: tuple[Path, Path]) -> None:
    row, _ = record(index, data_dir, "opus", sealed_store(keys))
    call = index.get_call(row["id"])
    f = data_dir / call["path"]
    assert (call["path"].endswith(".opus.sealed"), call["bytes"], call["sha256"]) == \
        (True, f.stat().st_size, sha256_file(f))


def test_an_encrypted_store_verifies_clean(index: Index, data_dir: Path, keys: tuple[Path, Path]) -> None:
    record(index, data_dir, "flac", sealed_store(keys, "flac"))
    assert verify(index, data_dir).problems == ()


def test_an_encrypted_export_with_the_key_verifies_the_decrypted_audio(index: Index, data_dir: Path,
                                                                       tmp_path: Path,
                                                                       keys: tuple[Path, Path]) -> None:
    row, _ = record(index, data_dir, "opus", sealed_store(keys))
    res = export_call(index, data_dir, row["id"], tmp_path / "out", key_path=keys[1], who="clerk")
    assert (res.decrypted is not None, verify_export(tmp_path / "out")) == (True, [])


def test_a_crash_after_sealing_before_the_index_update_is_repaired(index: Index, data_dir: Path,
                                                                   keys: tuple[Path, Path]) -> None:
    storage = sealed_store(keys)
    row, _ = record(index, data_dir, "opus", storage, finalize=False)
    plain = data_dir / row["path"]
    crypto.encrypt_file(plain, plain.with_name(plain.name + ".sealed"), keys[0])
    plain.unlink()  # ...and then the power went
    finalize_pending(index, data_dir, storage)
    assert (index.get_call(row["id"])["path"].endswith(".sealed"), verify(index, data_dir).problems) == (True, ())
