"""The storage commands: exit codes, one-line errors, and what they do to the store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from linetap import sign
from linetap.cli import main
from linetap.clock import FakeClock
from linetap.config import StorageConfig
from linetap.evidence import audit
from linetap.evidence.finalize import finalize_recording
from linetap.index.db import open_index
from linetap.store.recordings import Recording

from helpers import write_config

NUMBER = "5551234567"


@pytest.fixture
def cfg(tmp_path: Path, data_dir: Path) -> Path:
    return write_config(tmp_path / "linetap.toml", data_dir, [{"name": "line1", "pcm": "null"}],
                        storage={"codec": "wav"})


@pytest.fixture
def store(cfg: Path, data_dir: Path) -> list[dict[str, Any]]:
    """Three chained recordings; call 2 from NUMBER."""
    index = open_index(data_dir)
    clock = FakeClock()
    rows = []
    for i in range(1, 4):
        rec = Recording(data_dir, index, line="line1", codec="wav", rate=8000, channels=1, started_at=clock.wall(),
                        sync_interval_s=0.5)
        rec.caller_number = NUMBER if i == 2 else None
        rec.write(np.full((8000, 1), i * 100, dtype=np.int16))
        row = rec.finish("onhook")
        finalize_recording(index, data_dir, row, StorageConfig(codec="wav"))
        rows.append(row)
        clock.advance(60)
    index.close()
    return rows


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def audit_actions(data_dir: Path) -> list[tuple[str, int | None]]:
    index = open_index(data_dir)
    try:
        return [(r.action, r.call_id) for r in audit.rows(index)]
    finally:
        index.close()


# --- hold / release -------------------------------------------------------------------------------

def test_hold_puts_a_call_on_hold(capsys: pytest.CaptureFixture[str], cfg: Path, store: list) -> None:
    assert run(capsys, "hold", "2", "--reason", "case 17", "-c", str(cfg))[:2] == (0, "call 2 is on legal hold\n")


def test_release_lifts_a_hold(capsys: pytest.CaptureFixture[str], cfg: Path, store: list) -> None:
    run(capsys, "hold", "2", "-c", str(cfg))
    assert run(capsys, "release", "2", "-c", str(cfg))[:2] == (0, "call 2: legal hold released\n")


def test_holding_an_unknown_call_fails_in_one_line(capsys: pytest.CaptureFixture[str], cfg: Path,
                                                   store: list) -> None:
    assert run(capsys, "hold", "99", "-c", str(cfg)) == (1, "", "linetap: no recording with id 99\n")


def test_a_call_id_that_is_not_a_number_is_a_usage_error(capsys: pytest.CaptureFixture[str], cfg: Path) -> None:
    code, _, err = run(capsys, "hold", "abc", "-c", str(cfg))
    assert (code, "CALL_ID" in err, err.count("\n")) == (2, True, 1)


# --- verify ---------------------------------------------------------------------------------------

def test_verify_an_intact_store_exits_0(capsys: pytest.CaptureFixture[str], cfg: Path, store: list) -> None:
    code, out, _ = run(capsys, "verify", "-c", str(cfg))
    assert (code, out.strip().endswith("intact")) == (0, True)


def test_verify_names_an_altered_recording_and_exits_1(capsys: pytest.CaptureFixture[str], cfg: Path,
                                                       data_dir: Path, store: list) -> None:
    f = data_dir / store[1]["path"]
    f.write_bytes(f.read_bytes()[:-2] + b"\1\1")
    code, out, _ = run(capsys, "verify", "-c", str(cfg))
    assert (code, out.splitlines()[0].startswith(f"altered: call 2 ({store[1]['path']})")) == (1, True)


def test_verify_json_lists_each_problem(capsys: pytest.CaptureFixture[str], cfg: Path, data_dir: Path,
                                        store: list) -> None:
    (data_dir / store[0]["path"]).unlink()
    _, out, _ = run(capsys, "verify", "--json", "-c", str(cfg))
    assert [(p["kind"], p["call_id"]) for p in json.loads(out)["problems"]] == [("missing", 1)]


def test_verify_without_an_index_says_so(capsys: pytest.CaptureFixture[str], cfg: Path) -> None:
    code, _, err = run(capsys, "verify", "-c", str(cfg))
    assert (code, "no index at" in err) == (1, True)


def test_verify_with_a_bad_config_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[storage]\nkeep_free = 3\n")
    assert run(capsys, "verify", "-c", str(bad))[0] == 2


# --- export / erase -------------------------------------------------------------------------------

def test_export_writes_a_self_checking_export(capsys: pytest.CaptureFixture[str], cfg: Path, tmp_path: Path,
                                              data_dir: Path, store: list) -> None:
    out_dir = tmp_path / "evidence"
    code, _, _ = run(capsys, "export", "2", "--to", str(out_dir), "-c", str(cfg))
    fp = sign.load_or_create(data_dir).fingerprint  # read off the box, as the owner would
    proc = subprocess.run([sys.executable, "-I", str(out_dir / "verify_export.py"), str(out_dir),
                           "--fingerprint", fp], capture_output=True, text=True, timeout=30)
    assert (code, proc.returncode) == (0, 0)


def test_export_is_audited(capsys: pytest.CaptureFixture[str], cfg: Path, tmp_path: Path, data_dir: Path,
                           store: list) -> None:
    run(capsys, "export", "1", "--to", str(tmp_path / "e"), "-c", str(cfg))
    assert audit_actions(data_dir) == [("export", 1)]


def test_erase_by_number_deletes_its_recordings(capsys: pytest.CaptureFixture[str], cfg: Path, data_dir: Path,
                                                store: list) -> None:
    code, out, _ = run(capsys, "erase", "--number", NUMBER, "-c", str(cfg))
    assert (code, out.splitlines()[0]) == (0, f"erased 1 recording(s) with caller number {NUMBER}: 2")


def test_erase_lists_held_recordings_it_kept(capsys: pytest.CaptureFixture[str], cfg: Path, store: list) -> None:
    run(capsys, "hold", "2", "-c", str(cfg))
    _, out, _ = run(capsys, "erase", "--number", NUMBER, "-c", str(cfg))
    assert out.splitlines()[1].startswith("kept 1 on legal hold: 2")


def test_erase_then_verify_is_clean(capsys: pytest.CaptureFixture[str], cfg: Path, store: list) -> None:
    run(capsys, "erase", "--number", NUMBER, "-c", str(cfg))
    assert run(capsys, "verify", "-c", str(cfg))[0] == 0


def test_erase_refuses_a_number_that_is_not_digits(capsys: pytest.CaptureFixture[str], cfg: Path) -> None:
    code, _, err = run(capsys, "erase", "--number", "%", "-c", str(cfg))
    assert (code, err.startswith("linetap: --number:")) == (2, True)


# --- keys and decryption --------------------------------------------------------------------------

def test_keygen_then_decrypt_round_trip(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from linetap import crypto
    run(capsys, "keygen", "--out", str(tmp_path / "k"))
    (tmp_path / "a.wav").write_bytes(b"RIFF" + bytes(range(256)) * 10)
    crypto.encrypt_file(tmp_path / "a.wav", tmp_path / "a.wav.sealed", tmp_path / "k" / "linetap.pub")
    code, _, _ = run(capsys, "decrypt", str(tmp_path / "a.wav.sealed"), "--key", str(tmp_path / "k" / "linetap.key"),
                     "--out", str(tmp_path / "b.wav"))
    assert (code, (tmp_path / "b.wav").read_bytes()) == (0, (tmp_path / "a.wav").read_bytes())


def test_keygen_refuses_to_overwrite(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run(capsys, "keygen", "--out", str(tmp_path / "k"))
    code, _, err = run(capsys, "keygen", "--out", str(tmp_path / "k"))
    assert (code, "already exists" in err) == (1, True)


def test_decrypt_a_missing_file_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "decrypt", str(tmp_path / "nope"), "--key", "k", "--out", str(tmp_path / "o"))
    assert (code, err) == (2, f"linetap: FILE: {tmp_path / 'nope'}: no such file\n")


def test_decrypt_with_the_wrong_key_fails_in_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from linetap import crypto
    run(capsys, "keygen", "--out", str(tmp_path / "k1"))
    run(capsys, "keygen", "--out", str(tmp_path / "k2"))
    (tmp_path / "a").write_bytes(b"x")
    crypto.encrypt_file(tmp_path / "a", tmp_path / "a.sealed", tmp_path / "k1" / "linetap.pub")
    code, _, err = run(capsys, "decrypt", str(tmp_path / "a.sealed"), "--key", str(tmp_path / "k2" / "linetap.key"),
                       "--out", str(tmp_path / "o"))
    assert (code, err.count("\n"), "does not open it" in err) == (1, 1, True)


def test_decrypt_with_a_config_is_audited(capsys: pytest.CaptureFixture[str], cfg: Path, tmp_path: Path,
                                          data_dir: Path, store: list) -> None:
    from linetap import crypto
    run(capsys, "keygen", "--out", str(tmp_path / "k"))
    sealed = tmp_path / (Path(store[0]["path"]).name + ".sealed")
    crypto.encrypt_file(data_dir / store[0]["path"], sealed, tmp_path / "k" / "linetap.pub")
    run(capsys, "decrypt", str(sealed), "--key", str(tmp_path / "k" / "linetap.key"), "--out", str(tmp_path / "o"),
        "-c", str(cfg))
    assert audit_actions(data_dir) == [("decrypt", 1)]


# --- as a real process ----------------------------------------------------------------------------

def linetap(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "linetap", *argv], capture_output=True, text=True, timeout=60)


def test_verify_as_a_process_exits_1_and_names_the_tampering_without_a_traceback(cfg: Path, data_dir: Path,
                                                                                 store: list) -> None:
    (data_dir / store[2]["path"]).unlink()
    proc = linetap("verify", "-c", str(cfg))
    assert (proc.returncode, proc.stdout.startswith("missing: call 3"), "Traceback" in proc.stderr) == (1, True, False)


def test_a_missing_config_as_a_process_exits_2_in_one_line(tmp_path: Path) -> None:
    proc = linetap("hold", "1", "-c", str(tmp_path / "none.toml"))
    assert (proc.returncode, proc.stderr.count("\n")) == (2, 1)


def test_export_into_an_existing_directory_is_refused_and_a_planted_verifier_kept_out(
        capsys: pytest.CaptureFixture[str], cfg: Path, tmp_path: Path, store: list) -> None:
    out_dir = tmp_path / "evidence"
    out_dir.mkdir()
    (out_dir / "verify_export.py").write_text("print('OK')\n")
    code, _, err = run(capsys, "export", "2", "--to", str(out_dir), "-c", str(cfg))
    assert (code, "already exists; export into a new directory" in err, sorted(p.name for p in out_dir.iterdir())) \
        == (1, True, ["verify_export.py"])


def test_verify_with_a_malformed_checkpoint_is_a_usage_error(capsys: pytest.CaptureFixture[str], cfg: Path,
                                                            store: list) -> None:
    code, _, err = run(capsys, "verify", "-c", str(cfg), "--checkpoint", '{"id": "x"}')
    assert (code, "--checkpoint: not a checkpoint" in err) == (2, True)
