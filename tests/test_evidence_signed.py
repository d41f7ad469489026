"""The device key, checkpoints, chain coverage of holds/audits, exports a stranger can check,
and the background self-check: on a real index and real files."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from linetap import sign
from linetap.alarms.manager import AlarmManager
from linetap.clock import FakeClock
from linetap.config import StorageConfig
from linetap.evidence import EvidenceError, audit, chain, checkpoint, hold
from linetap.evidence.background import BackgroundCheck, chain_problems, files_per_step
from linetap.evidence.export import export_call
from linetap.evidence.export_verify import (GENESIS, check_export, checkpoint_message, checkpoint_signed,
                                            ed25519_verify, fingerprint)
from linetap.evidence.finalize import finalize_recording
from linetap.evidence.verify import verify
from linetap.index.db import Index
from linetap.store.recordings import Recording

RATE = 8000
PLAIN = StorageConfig(codec="wav")


def make_call(index: Index, data_dir: Path, clock: FakeClock, *, number: str = "5550000") -> dict[str, Any]:
    rec = Recording(data_dir, index, line="line1", codec="wav", rate=RATE, channels=1, started_at=clock.wall(),
                    sync_interval_s=0.5)
    rec.caller_number = number
    rec.write((np.sin(np.arange(RATE) * 0.3) * 8000).astype(np.int16).reshape(-1, 1))
    row = rec.finish("onhook")
    finalize_recording(index, data_dir, row, PLAIN, clock=clock)
    clock.advance(60)
    return row


@pytest.fixture
def store(index: Index, data_dir: Path, clock: FakeClock) -> list[dict[str, Any]]:
    return [make_call(index, data_dir, clock) for _ in range(4)]


@pytest.fixture
def key(data_dir: Path) -> sign.DeviceKey:
    return sign.load_or_create(data_dir)


# --- the device key ---------------------------------------------------------------------------------

def test_the_device_key_is_made_once_0640_and_reused(data_dir: Path) -> None:
    first = sign.load_or_create(data_dir)
    path = sign.key_path(data_dir)
    assert (oct(path.stat().st_mode & 0o777), sign.load_or_create(data_dir).public_hex) == ("0o640",
                                                                                           first.public_hex)


def test_the_key_never_shows_its_seed(key: sign.DeviceKey, data_dir: Path) -> None:
    seed = sign.key_path(data_dir).read_text().strip()
    assert seed not in repr(key) and seed not in str(key)


def test_the_fingerprint_is_the_grouped_start_of_the_public_keys_sha256(key: sign.DeviceKey) -> None:
    h = hashlib.sha256(bytes.fromhex(key.public_hex)).hexdigest()
    assert key.fingerprint == f"{h[0:4]}-{h[4:8]}-{h[8:12]}-{h[12:16]}"


def test_the_pure_python_verifier_checks_rfc8032_test_vector_1() -> None:
    public = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    sig = bytes.fromhex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b"
                        "46bd25bf5f0595bbe24655141438e7a100b")
    assert (ed25519_verify(public, b"", sig), ed25519_verify(public, b"x", sig)) == (True, False)


def test_the_pure_python_verifier_agrees_with_libsodium(key: sign.DeviceKey) -> None:
    results = []
    for i in range(5):
        msg = f"message {i}".encode()
        sig = bytes.fromhex(key.sign_hex(msg))
        bad = sig[:-1] + bytes([sig[-1] ^ 1])
        results.append((ed25519_verify(bytes.fromhex(key.public_hex), msg, sig),
                        ed25519_verify(bytes.fromhex(key.public_hex), msg, bad),
                        sign.verify_hex(key.public_hex, msg, bad.hex())))
    assert results == [(True, False, False)] * 5


# --- checkpoints ------------------------------------------------------------------------------------

def test_a_checkpoint_signs_the_contracts_canonical_json(key: sign.DeviceKey) -> None:
    cp = checkpoint.sign(key, recorder_id="box", length=3, head="ab" * 32, now=1_700_000_000.0)
    message = json.dumps({"id": "box", "ts": cp.ts, "length": 3, "head": "ab" * 32}, sort_keys=True,
                         separators=(",", ":")).encode()
    assert (checkpoint_message(cp.as_dict()), sign.verify_hex(key.public_hex, message, cp.signature),
            sorted(cp.as_dict())) == (message, True, ["head", "id", "key", "length", "signature", "ts"])


@pytest.mark.parametrize("field,value", [("length", 4), ("head", "cd" * 32), ("ts", "2030-01-01T00:00:00.000Z"),
                                         ("id", "other")])
def test_changing_any_signed_field_breaks_the_signature(key: sign.DeviceKey, field: str, value: Any) -> None:
    cp = checkpoint.sign(key, recorder_id="box", length=3, head="ab" * 32, now=1_700_000_000.0).as_dict()
    assert (checkpoint_signed(cp), checkpoint_signed({**cp, field: value})) == (True, False)


def test_a_checkpoint_is_read_from_a_file_json_text_or_an_event(key: sign.DeviceKey, tmp_path: Path) -> None:
    cp = checkpoint.sign(key, recorder_id="box", length=3, head="ab" * 32, now=1.0)
    f = tmp_path / "cp.json"
    f.write_text(json.dumps(cp.as_dict()))
    event = json.dumps({"type": "call_ended", "checkpoint": cp.as_dict()})
    assert [checkpoint.parse(x) for x in (str(f), json.dumps(cp.as_dict()), event)] == [cp] * 3


def test_a_non_checkpoint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EvidenceError, match="missing"):
        checkpoint.parse('{"id": "x"}')


def test_the_checkpointer_signs_only_when_the_chain_grew(index: Index, data_dir: Path, clock: FakeClock,
                                                         key: sign.DeviceKey) -> None:
    published: list[checkpoint.Checkpoint] = []
    cpr = checkpoint.Checkpointer(index, key, recorder_id="box", clock=clock, publish=published.append)
    cpr.tick()
    cpr.tick()
    make_call(index, data_dir, clock)
    cpr.tick()
    cpr.tick()
    assert [(c.length, c.head) for c in published] == [(0, GENESIS), chain.head(index)]
    # kept in the index: a restarted recorder starts from it and signs nothing new
    again = checkpoint.Checkpointer(index, key, recorder_id="box", clock=clock, publish=published.append)
    assert (again.latest, again.tick()) == (published[-1], None)


def test_check_passes_an_intact_chain_and_names_truncation(index: Index, data_dir: Path, clock: FakeClock,
                                                           store: list[dict[str, Any]], key: sign.DeviceKey) -> None:
    length, head = chain.head(index)
    cp = checkpoint.sign(key, recorder_id="box", length=length, head=head, now=clock.wall())
    longer = checkpoint.sign(key, recorder_id="box", length=length + 2, head=head, now=clock.wall())
    assert checkpoint.check(index, cp, recorder_id="box", device_key_hex=key.public_hex) == []
    assert [k for k, _ in checkpoint.check(index, longer)] == ["truncated"]


# --- everything that changes what exists is in the chain --------------------------------------------

def test_hold_and_release_are_chain_entries_with_the_actor(index: Index, store: list[dict[str, Any]]) -> None:
    hold.hold(index, 2, reason="case 17", who="lawyer")
    hold.release(index, 2, who="lawyer")
    tail = list(chain.entries(index))[-2:]
    assert [(e.kind, e.call_id, e.payload["by"], e.payload["reason"]) for e in tail] == [
        ("hold", 2, "lawyer", "case 17"), ("release", 2, "lawyer", None)]


def test_a_held_call_is_still_exportable_and_the_store_verifies(index: Index, data_dir: Path, tmp_path: Path,
                                                                store: list[dict[str, Any]]) -> None:
    hold.hold(index, 2, who="lawyer")
    export_call(index, data_dir, 2, tmp_path / "out", who="clerk")
    assert (verify(index, data_dir).problems, chain.live_entry(index, 2) is not None) == ((), True)


@pytest.mark.parametrize("action", ["play", "download", "decrypt"])
def test_reads_are_audit_chain_entries(index: Index, store: list[dict[str, Any]], action: str) -> None:
    audit.record(index, action, 1, who="web:alice", detail="from 10.0.0.5")
    e = list(chain.entries(index))[-1]
    assert (e.kind, e.call_id, e.payload["action"], e.payload["by"]) == ("audit", 1, action, "web:alice")


def test_verify_is_audited_but_not_chained(index: Index, data_dir: Path, store: list[dict[str, Any]]) -> None:
    before = chain.head(index)
    verify(index, data_dir)
    assert chain.head(index) == before


def test_the_actor_is_the_os_user_and_its_login_user() -> None:
    assert (audit.actor(0, None), audit.actor(0, 0), audit.actor(0, 65534)) == ("root", "root",
                                                                              f"root (login {audit._user_name(65534)})")


def test_the_actor_ignores_sudo_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUDO_USER", "mallory")
    assert "mallory" not in audit.current_user()


def test_an_unset_login_uid_is_none(tmp_path: Path) -> None:
    f = tmp_path / "loginuid"
    f.write_text("4294967295")
    g = tmp_path / "loginuid2"
    g.write_text("1000\n")
    assert (audit.login_uid(f), audit.login_uid(g), audit.login_uid(tmp_path / "none")) == (None, 1000, None)


# --- exports a stranger can check -------------------------------------------------------------------

def run_verifier(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # -I: isolated; no linetap, no site-packages: the standard library only.
    return subprocess.run([sys.executable, "-I", str(directory / "verify_export.py"), str(directory), *args],
                          capture_output=True, text=True, timeout=60)


def test_the_verifier_says_what_it_proved(index: Index, data_dir: Path, tmp_path: Path,
                                          store: list[dict[str, Any]], key: sign.DeviceKey) -> None:
    export_call(index, data_dir, 3, tmp_path / "out", recorder_id="box")
    proc = run_verifier(tmp_path / "out", "--fingerprint", key.fingerprint)
    entry = chain.live_entry(index, 3)
    assert entry is not None
    assert proc.returncode == 0, proc.stdout
    assert f"which is chain entry {entry.seq}" in proc.stdout and f"signed by box 'box' (key {key.fingerprint})" \
        in proc.stdout


def test_without_a_fingerprint_the_verifier_does_not_say_ok(index: Index, data_dir: Path, tmp_path: Path,
                                                            store: list[dict[str, Any]]) -> None:
    export_call(index, data_dir, 3, tmp_path / "out")
    proc = run_verifier(tmp_path / "out")
    assert (proc.returncode, "OK" in proc.stdout.splitlines(), "NOT VERIFIED" in proc.stdout) == (2, False, True)


def test_a_wrong_fingerprint_is_refused(index: Index, data_dir: Path, tmp_path: Path,
                                        store: list[dict[str, Any]]) -> None:
    export_call(index, data_dir, 3, tmp_path / "out")
    proc = run_verifier(tmp_path / "out", "--fingerprint", "0000-0000-0000-0000")
    assert (proc.returncode, "not by the box whose fingerprint you gave" in proc.stdout) == (1, True)


def test_a_kept_checkpoint_pins_the_key_and_the_chain(index: Index, data_dir: Path, tmp_path: Path, clock: FakeClock,
                                                      store: list[dict[str, Any]], key: sign.DeviceKey) -> None:
    length, head = chain.head(index)
    kept = checkpoint.sign(key, recorder_id="box", length=length, head=head, now=clock.wall())
    export_call(index, data_dir, 2, tmp_path / "out", recorder_id="box")
    proc = run_verifier(tmp_path / "out", "--checkpoint", json.dumps(kept.as_dict()))
    assert (proc.returncode, f"the chain up to your checkpoint of {kept.ts} ({length} entries)" in proc.stdout) == (
        0, True), proc.stdout


def test_a_forged_export_is_refused(index: Index, data_dir: Path, tmp_path: Path,
                                    store: list[dict[str, Any]], key: sign.DeviceKey) -> None:
    """Random bytes, a hand-written sidecar and proof, signed with the forger's own key."""
    real = export_call(index, data_dir, 2, tmp_path / "real")
    forged = tmp_path / "forged"
    forged.mkdir()
    audio = os.urandom(16000)
    meta = json.loads(real.sidecar.read_text())
    proof = json.loads(real.proof.read_text())
    payload = {**proof["payload"], "sha256": hashlib.sha256(audio).hexdigest(), "bytes": len(audio)}
    from linetap.evidence.export_verify import digest, link
    h = link(GENESIS, digest({**payload, "seq": 1}))
    payload["seq"] = 1
    meta["call"] = {**meta["call"], "sha256": payload["sha256"], "bytes": payload["bytes"]}
    forger = sign.load_or_create(tmp_path / "forger")
    cp = checkpoint.sign(forger, recorder_id="box", length=1, head=h, now=1.0)
    (forged / real.audio.name).write_bytes(audio)
    (forged / real.sidecar.name).write_text(json.dumps(meta))
    (forged / real.proof.name).write_text(json.dumps({**proof, "seq": 1, "prev_hash": GENESIS, "hash": h,
                                                      "payload": payload, "links": [],
                                                      "head": {"seq": 1, "hash": h}, "checkpoint": cp.as_dict()}))
    (forged / "verify_export.py").write_bytes((tmp_path / "real" / "verify_export.py").read_bytes())
    # Internally consistent: only the key gives it away.
    assert check_export(forged).problems == []
    proc = run_verifier(forged, "--fingerprint", key.fingerprint)
    assert (proc.returncode, "OK" in proc.stdout.splitlines(), f"signed by key {forger.fingerprint}" in proc.stdout
            ) == (1, False, True), proc.stdout


def test_an_unsigned_old_style_export_is_refused(index: Index, data_dir: Path, tmp_path: Path,
                                                 store: list[dict[str, Any]], key: sign.DeviceKey) -> None:
    res = export_call(index, data_dir, 2, tmp_path / "out")
    proof = json.loads(res.proof.read_text())
    del proof["checkpoint"]
    res.proof.write_text(json.dumps(proof))
    proc = run_verifier(tmp_path / "out", "--fingerprint", key.fingerprint)
    assert (proc.returncode, "no signed checkpoint" in proc.stdout) == (1, True)


def test_export_refuses_an_existing_directory_and_so_a_planted_verifier(index: Index, data_dir: Path,
                                                                        tmp_path: Path,
                                                                        store: list[dict[str, Any]]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    planted = out / "verify_export.py"
    planted.write_text("print('OK')\n")
    with pytest.raises(EvidenceError, match="already exists"):
        export_call(index, data_dir, 2, out)
    assert (planted.read_text(), audit.rows(index)) == ("print('OK')\n", [])


def test_export_does_not_follow_a_symlink_to_a_directory(index: Index, data_dir: Path, tmp_path: Path,
                                                         store: list[dict[str, Any]]) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "out").symlink_to(target)
    with pytest.raises(EvidenceError, match="already exists"):
        export_call(index, data_dir, 2, tmp_path / "out")
    assert list(target.iterdir()) == []


def test_the_exported_verifier_is_linetaps_own(index: Index, data_dir: Path, tmp_path: Path,
                                               store: list[dict[str, Any]]) -> None:
    from linetap.evidence import export_verify
    export_call(index, data_dir, 2, tmp_path / "out")
    assert (tmp_path / "out" / "verify_export.py").read_bytes() == Path(export_verify.__file__).read_bytes()


def test_a_failed_export_leaves_no_directory(index: Index, data_dir: Path, tmp_path: Path,
                                             store: list[dict[str, Any]]) -> None:
    f = data_dir / store[0]["path"]
    f.write_bytes(f.read_bytes()[:-1] + b"\0")
    with pytest.raises(EvidenceError, match="altered"):
        export_call(index, data_dir, 1, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- background self-verification -------------------------------------------------------------------

def test_a_full_pass_at_100000_recordings_fits_in_a_week() -> None:
    per_step = files_per_step(100_000, 10.0)
    steps_per_week = 7 * 24 * 3600 / 10.0
    assert (per_step, per_step * steps_per_week >= 100_000, files_per_step(0, 10.0), files_per_step(3, 10.0)) == (
        2, True, 0, 1)


def test_chain_problems_accepts_a_continuation_and_names_a_gap(index: Index, store: list[dict[str, Any]]) -> None:
    from linetap.index import evidence as db
    rows = db.chain_entries(index, 0, 100)
    assert chain_problems(0, GENESIS, rows) == ([], rows[-1]["seq"], rows[-1]["hash"])
    problems, seq, _ = chain_problems(0, GENESIS, rows[:1] + rows[2:])
    assert (problems, seq) == (["chain entries 2..2 are missing"], 1)


def background(index: Index, data_dir: Path, clock: FakeClock) -> tuple[BackgroundCheck, AlarmManager]:
    alarms = AlarmManager(index, clock, clear_after_s=0)
    return BackgroundCheck(index, data_dir, alarms=alarms, clock=clock, step_s=10.0 * 7 * 24 * 360), alarms


def test_a_flipped_byte_raises_evidence_integrity_naming_the_call(index: Index, data_dir: Path, clock: FakeClock,
                                                                  store: list[dict[str, Any]]) -> None:
    check, alarms = background(index, data_dir, clock)
    f = data_dir / store[2]["path"]
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))
    for _ in range(3):
        check.step()
    (alarm,) = [a for a in alarms.active() if a.code == "EVIDENCE_INTEGRITY"]
    assert (alarm.severity, f"call {store[2]['id']}:" in alarm.detail, "differs" in alarm.detail) == (
        "critical", True, True)
    assert check.status().last_full_pass_ok is False


def test_an_intact_store_completes_a_clean_full_pass(index: Index, data_dir: Path, clock: FakeClock,
                                                     store: list[dict[str, Any]]) -> None:
    check, alarms = background(index, data_dir, clock)
    for _ in range(3):
        check.step()
    st = check.status()
    assert (alarms.active(), st.last_full_pass, st.last_full_pass_ok) == ([], clock.wall(), True)


def test_cutting_the_chain_back_is_noticed_at_the_next_step(index: Index, data_dir: Path, clock: FakeClock,
                                                             store: list[dict[str, Any]]) -> None:
    check, alarms = background(index, data_dir, clock)
    check.step()
    index.execute("DROP TRIGGER chain_no_delete")
    index.execute("delete from chain where seq = (select max(seq) from chain)")
    assert any("cut back" in p for p in check.step())
    assert alarms.is_active("EVIDENCE_INTEGRITY")


def test_a_slice_rehashes_only_its_budget(index: Index, data_dir: Path, clock: FakeClock,
                                          store: list[dict[str, Any]]) -> None:
    alarms = AlarmManager(index, clock, clear_after_s=0)
    check = BackgroundCheck(index, data_dir, alarms=alarms, clock=clock, step_s=10.0)  # 1 file per step here
    check.step()
    check.step()
    assert check.status().rehashed == 2


# --- config applied, first boot ---------------------------------------------------------------------

def test_a_changed_configuration_is_chained_once(index: Index) -> None:
    first = chain.config_applied(index, {"storage": {"codec": "wav"}}, source="/etc/linetap.toml", by="linetap",
                                 at=1.0)
    same = chain.config_applied(index, {"storage": {"codec": "wav"}}, source="/etc/linetap.toml", by="linetap",
                                at=2.0)
    changed = chain.config_applied(index, {"storage": {"codec": "opus"}}, source="/etc/linetap.toml",
                                   by="linetap", at=3.0)
    assert (first is not None, same, changed is not None, [e.kind for e in chain.entries(index)]) == (
        True, None, True, ["config", "config"])


def test_first_boot_makes_the_device_key(tmp_path: Path) -> None:
    from linetap import firstboot
    firstboot.make_device_key(tmp_path)
    assert oct(sign.key_path(tmp_path).stat().st_mode & 0o777) == "0o640"


def test_a_kept_checkpoint_older_than_the_entry_pins_the_key_only(index: Index, data_dir: Path, tmp_path: Path,
                                                                  clock: FakeClock, store: list[dict[str, Any]],
                                                                  key: sign.DeviceKey) -> None:
    first = list(chain.entries(index))[0]
    kept = checkpoint.sign(key, recorder_id="box", length=1, head=first.hash, now=clock.wall())
    export_call(index, data_dir, 3, tmp_path / "out", recorder_id="box")
    proc = run_verifier(tmp_path / "out", "--checkpoint", json.dumps(kept.as_dict()))
    assert (proc.returncode, "it pins the box's key only" in proc.stdout) == (0, True), proc.stdout
