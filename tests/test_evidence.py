"""Tamper evidence, export, legal hold, privacy erasure and the access audit, on real files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from linetap import sign
from linetap.clock import FakeClock
from linetap.config import StorageConfig
from linetap.evidence import EvidenceError, UnknownCall, audit, chain, hold
from linetap.evidence.erase import erase_number
from linetap.evidence.export import export_call, verify_export
from linetap.evidence.export_verify import GENESIS, digest, link
from linetap.evidence.finalize import finalize_pending, finalize_recording
from linetap.evidence.verify import verify
from linetap.index import schema
from linetap.index.db import Index, open_index, public_call
from linetap.retention import deletions
from linetap.store.recordings import Recording, read_sidecar, sidecar_path

RATE = 8000
PLAIN = StorageConfig(codec="wav")
NUMBER = "5551234567"


def make_call(index: Index, data_dir: Path, clock: FakeClock, *, number: str | None = None,
              seconds: float = 1.0, finalize: bool = True, redirected_from: str | None = None,
              waiting: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    rec = Recording(data_dir, index, line="line1", codec="wav", rate=RATE, channels=1, started_at=clock.wall(),
                    sync_interval_s=0.5)
    rec.caller_number = number
    rec.caller_redirected_from, rec.waiting_callers = redirected_from, waiting or []
    tone = (np.sin(np.arange(int(seconds * RATE)) * 0.3) * 8000).astype(np.int16).reshape(-1, 1)
    rec.write(tone)
    row = rec.finish("onhook")
    if finalize:
        finalize_recording(index, data_dir, row, PLAIN, clock=clock)
    clock.advance(60)
    return row


@pytest.fixture
def store(index: Index, data_dir: Path, clock: FakeClock) -> list[dict[str, Any]]:
    """Five finished, chained recordings; calls 2 and 4 from NUMBER."""
    return [make_call(index, data_dir, clock, number=NUMBER if i in (2, 4) else "5550000") for i in range(1, 6)]


def problems(index: Index, data_dir: Path) -> list[tuple[str, int | None]]:
    return [(p.kind, p.call_id) for p in verify(index, data_dir).problems]


def device_fingerprint(data_dir: Path) -> str:
    """What the owner reads off the box (``linetap status``)."""
    return sign.load_or_create(data_dir).fingerprint


def drop_guard(index: Index, table: str) -> None:
    """What an attacker with write access to index.db would do first."""
    index.execute(f"DROP TRIGGER {table}_no_update")
    index.execute(f"DROP TRIGGER {table}_no_delete")


# --- the chain ---------------------------------------------------------------------------------

def test_each_entry_commits_to_the_previous_one(index: Index, store: list[dict[str, Any]]) -> None:
    es = list(chain.entries(index))
    assert all(link(prev.hash, e.digest) == e.hash and e.prev_hash == prev.hash for prev, e in zip(es, es[1:]))


def test_the_first_entry_follows_the_genesis_hash(index: Index, store: list[dict[str, Any]]) -> None:
    first = next(chain.entries(index))
    assert (first.prev_hash, first.hash) == (GENESIS, link(GENESIS, digest(first.payload)))


def test_the_chain_commits_to_the_file_hash(index: Index, store: list[dict[str, Any]]) -> None:
    assert chain.live_entry(index, 3).payload["sha256"] == index.get_call(3)["sha256"]


def test_the_chain_holds_no_caller_number(index: Index, store: list[dict[str, Any]]) -> None:
    assert NUMBER not in json.dumps([e.payload for e in chain.entries(index)])


def test_chaining_a_recording_twice_adds_one_entry(index: Index, store: list[dict[str, Any]]) -> None:
    chain.append_recording(index, index.get_call(1))
    assert chain.head(index)[0] == 5


def test_chain_table_is_append_only(index: Index, store: list[dict[str, Any]]) -> None:
    with pytest.raises(Exception, match="append-only"):
        index.execute("update chain set hash = 'x' where seq = 1")


def test_a_reused_call_id_is_chained_afresh(index: Index, data_dir: Path, clock: FakeClock,
                                           store: list[dict[str, Any]]) -> None:
    # SQLite hands the highest id out again once its row is deleted.
    deletions.delete_recordings(index, data_dir, [(5, "request")], by="test")
    again = make_call(index, data_dir, clock)
    assert (again["id"], problems(index, data_dir)) == (5, [])


def test_finalize_pending_chains_recordings_a_crash_left_unchained(index: Index, data_dir: Path,
                                                                   clock: FakeClock) -> None:
    make_call(index, data_dir, clock, finalize=False)
    finalize_pending(index, data_dir, PLAIN, clock=clock)
    assert problems(index, data_dir) == []


# --- verify: an untouched store, and each kind of tampering -------------------------------------

def test_an_untouched_store_verifies_clean(index: Index, data_dir: Path, store: list[dict[str, Any]]) -> None:
    assert problems(index, data_dir) == []


def test_an_empty_store_verifies_clean(index: Index, data_dir: Path) -> None:
    assert problems(index, data_dir) == []


def test_a_flipped_byte_names_the_altered_recording(index: Index, data_dir: Path,
                                                   store: list[dict[str, Any]]) -> None:
    f = data_dir / store[2]["path"]
    data = bytearray(f.read_bytes())
    data[1000] ^= 0x01
    f.write_bytes(bytes(data))
    assert problems(index, data_dir) == [("altered", 3)]


def test_a_deleted_file_names_the_missing_recording(index: Index, data_dir: Path,
                                                   store: list[dict[str, Any]]) -> None:
    (data_dir / store[1]["path"]).unlink()
    assert problems(index, data_dir) == [("missing", 2)]


def test_a_foreign_file_is_named_as_inserted(index: Index, data_dir: Path, store: list[dict[str, Any]]) -> None:
    foreign = (data_dir / store[0]["path"]).with_name("line1_20261118T000000.000Z_99.wav")
    shutil.copyfile(data_dir / store[0]["path"], foreign)
    report = verify(index, data_dir)
    assert [(p.kind, p.path) for p in report.problems] == [("inserted", str(foreign.relative_to(data_dir)))]


def test_an_edited_index_row_is_named(index: Index, data_dir: Path, store: list[dict[str, Any]]) -> None:
    index.update_call(4, started_at="2020-01-01T00:00:00.000Z")
    assert problems(index, data_dir) == [("row_edited", 4)]


def test_an_edited_caller_number_is_named(index: Index, data_dir: Path, store: list[dict[str, Any]]) -> None:
    index.update_call(2, caller_number="5559999")
    assert problems(index, data_dir) == [("row_edited", 2)]


def test_a_row_and_file_replaced_consistently_are_still_named(index: Index, data_dir: Path,
                                                              store: list[dict[str, Any]]) -> None:
    from linetap.store.recordings import sha256_file
    f = data_dir / store[0]["path"]
    f.write_bytes(f.read_bytes()[:-100])
    index.update_call(1, bytes=f.stat().st_size, sha256=sha256_file(f))
    assert problems(index, data_dir) == [("row_edited", 1), ("altered", 1)]


def test_a_deleted_index_row_is_named(index: Index, data_dir: Path, store: list[dict[str, Any]]) -> None:
    index.delete_call(3)
    assert problems(index, data_dir) == [("row_missing", 3)]


def test_an_inserted_index_row_is_named(index: Index, data_dir: Path, store: list[dict[str, Any]]) -> None:
    index.call_recovered(**{**index.get_call(1), "id": 42})
    assert problems(index, data_dir) == [("inserted", 42)]


def test_an_edited_chain_entry_is_named(index: Index, data_dir: Path, store: list[dict[str, Any]]) -> None:
    drop_guard(index, "chain")
    e = chain.live_entry(index, 2)
    forged = {**e.payload, "started_at": "2020-01-01T00:00:00.000Z"}
    index.execute("update chain set payload = ? where seq = ?", [json.dumps(forged), e.seq])
    assert ("chain_broken", 2) in problems(index, data_dir)


def test_a_rehashed_forged_chain_entry_breaks_the_next_link(index: Index, data_dir: Path,
                                                            store: list[dict[str, Any]]) -> None:
    drop_guard(index, "chain")
    e = chain.live_entry(index, 2)
    forged = {**e.payload, "started_at": "2020-01-01T00:00:00.000Z"}
    d = digest(forged)
    index.execute("update chain set payload = ?, digest = ?, hash = ? where seq = ?",
                  [json.dumps(forged), d, link(e.prev_hash, d), e.seq])
    assert [p.detail for p in verify(index, data_dir).problems if p.kind == "chain_broken"] == \
        ["entry 3 does not follow from entry 2 (one of them was rewritten)"]


def test_a_removed_chain_entry_is_named(index: Index, data_dir: Path, store: list[dict[str, Any]]) -> None:
    drop_guard(index, "chain")
    index.execute("delete from chain where seq = 3")
    assert ("chain_broken", None) in problems(index, data_dir)


def test_deletions_by_linetap_keep_the_store_verifiable(index: Index, data_dir: Path,
                                                        store: list[dict[str, Any]]) -> None:
    deletions.delete_recordings(index, data_dir, [(1, "space"), (2, "retention")], by="test")
    assert problems(index, data_dir) == []


def test_a_file_gone_before_linetap_deleted_it_stays_on_record(index: Index, data_dir: Path,
                                                               store: list[dict[str, Any]]) -> None:
    (data_dir / store[0]["path"]).unlink()
    deletions.delete_recordings(index, data_dir, [(1, "space")], by="test")
    assert problems(index, data_dir) == [("missing", 1)]


def test_verify_is_audited(index: Index, data_dir: Path, store: list[dict[str, Any]]) -> None:
    verify(index, data_dir, who="auditor")
    assert [(r.who, r.action) for r in audit.rows(index)] == [("auditor", "verify")]


# --- export ------------------------------------------------------------------------------------

def test_an_exported_call_verifies_with_only_the_exported_files(index: Index, data_dir: Path, tmp_path: Path,
                                                                store: list[dict[str, Any]]) -> None:
    export_call(index, data_dir, 3, tmp_path / "out", who="clerk")
    elsewhere = tmp_path / "received"
    shutil.copytree(tmp_path / "out", elsewhere)
    # -I: isolated; the checker sees no linetap, only the standard library.
    proc = subprocess.run([sys.executable, "-I", "verify_export.py", ".", "--fingerprint", device_fingerprint(data_dir)],
                          cwd=elsewhere, capture_output=True, text=True, timeout=30)
    assert (proc.returncode, proc.stdout.strip().splitlines()[-1]) == (0, "OK")


def test_export_writes_audio_sidecar_proof_and_checker(index: Index, data_dir: Path, tmp_path: Path,
                                                       store: list[dict[str, Any]]) -> None:
    res = export_call(index, data_dir, 3, tmp_path / "out", who="clerk")
    stem = Path(store[2]["path"]).stem
    assert sorted(p.name for p in res.files) == sorted([Path(store[2]["path"]).name, f"{stem}.json",
                                                        f"{stem}.chain.json", "verify_export.py"])


def test_export_proof_reaches_the_current_chain_head(index: Index, data_dir: Path, tmp_path: Path,
                                                     store: list[dict[str, Any]]) -> None:
    res = export_call(index, data_dir, 2, tmp_path / "out")
    proof = json.loads(res.proof.read_text())
    assert (proof["head"]["seq"], proof["head"]["hash"]) == chain.head(index)


def test_an_altered_exported_audio_file_fails_the_export_check(index: Index, data_dir: Path, tmp_path: Path,
                                                               store: list[dict[str, Any]]) -> None:
    res = export_call(index, data_dir, 3, tmp_path / "out")
    data = bytearray(res.audio.read_bytes())
    data[-1] ^= 0xFF
    res.audio.write_bytes(bytes(data))
    assert any("altered" in p for p in verify_export(tmp_path / "out"))


def test_an_edited_sidecar_caller_number_fails_the_export_check(index: Index, data_dir: Path, tmp_path: Path,
                                                                store: list[dict[str, Any]]) -> None:
    res = export_call(index, data_dir, 2, tmp_path / "out")
    meta = json.loads(res.sidecar.read_text())
    meta["call"]["caller_number"] = meta["private"]["caller_number"] = "5559999"
    res.sidecar.write_text(json.dumps(meta))
    assert any("caller number" in p for p in verify_export(tmp_path / "out"))


def test_a_forged_proof_link_fails_the_export_check(index: Index, data_dir: Path, tmp_path: Path,
                                                    store: list[dict[str, Any]]) -> None:
    res = export_call(index, data_dir, 2, tmp_path / "out")
    proof = json.loads(res.proof.read_text())
    proof["links"][1][1] = "0" * 64
    res.proof.write_text(json.dumps(proof))
    assert any("broken chain" in p for p in verify_export(tmp_path / "out"))


def test_an_altered_recording_is_not_exported(index: Index, data_dir: Path, tmp_path: Path,
                                              store: list[dict[str, Any]]) -> None:
    f = data_dir / store[0]["path"]
    f.write_bytes(f.read_bytes()[:-1] + b"\0")
    with pytest.raises(EvidenceError, match="altered"):
        export_call(index, data_dir, 1, tmp_path / "out")


def test_export_is_audited_with_who(index: Index, data_dir: Path, tmp_path: Path,
                                    store: list[dict[str, Any]]) -> None:
    export_call(index, data_dir, 3, tmp_path / "out", who="clerk")
    assert [(r.who, r.action, r.call_id) for r in audit.rows(index)] == [("clerk", "export", 3)]
    newest = list(chain.entries(index))[-1]
    assert (newest.kind, newest.call_id, newest.payload["action"], newest.payload["by"]) == ("audit", 3, "export",
                                                                                           "clerk")


# --- legal hold --------------------------------------------------------------------------------

def test_holding_an_unknown_call_is_refused(index: Index) -> None:
    with pytest.raises(UnknownCall):
        hold.hold(index, 404)


def test_hold_and_release_are_audited(index: Index, data_dir: Path, store: list[dict[str, Any]]) -> None:
    hold.hold(index, 1, reason="case 17", who="lawyer")
    hold.release(index, 1, who="lawyer")
    assert [(r.action, r.detail) for r in audit.rows(index, 1)] == [("hold", "case 17"), ("release", None)]


def test_a_released_call_can_be_deleted_again(index: Index, data_dir: Path, store: list[dict[str, Any]]) -> None:
    hold.hold(index, 1)
    hold.release(index, 1)
    assert deletions.delete_recordings(index, data_dir, [(1, "space")], by="t").refused == ()


def test_audit_who_defaults_to_the_unix_user(index: Index) -> None:
    assert audit.record(index, "play", None).who == audit.current_user()


# --- privacy erasure ---------------------------------------------------------------------------

def test_erase_deletes_every_recording_of_the_number(index: Index, data_dir: Path,
                                                     store: list[dict[str, Any]]) -> None:
    erase_number(index, data_dir, NUMBER, who="dpo")
    assert [r["id"] for r in index.calls()] == [1, 3, 5]


def test_erase_removes_the_files(index: Index, data_dir: Path, store: list[dict[str, Any]]) -> None:
    erase_number(index, data_dir, NUMBER, who="dpo")
    assert not any((data_dir / store[i]["path"]).exists() for i in (1, 3))


def test_erase_keeps_held_recordings_and_lists_them(index: Index, data_dir: Path,
                                                    store: list[dict[str, Any]]) -> None:
    hold.hold(index, 4)
    res = erase_number(index, data_dir, NUMBER, who="dpo")
    assert (res.erased, res.held) == ((2,), (4,))


def test_erase_is_logged_as_a_request_in_deletions(index: Index, data_dir: Path,
                                                   store: list[dict[str, Any]]) -> None:
    erase_number(index, data_dir, NUMBER, who="dpo")
    assert [(r["call_id"], r["why"], r["by"]) for r in index.query("select * from deletions")] == \
        [(2, "request", "dpo"), (4, "request", "dpo")]


def test_erase_is_recorded_in_the_chain_and_verifies_clean(index: Index, data_dir: Path,
                                                           store: list[dict[str, Any]]) -> None:
    erase_number(index, data_dir, NUMBER, who="dpo")
    kinds = [e.kind for e in chain.entries(index)]
    # the two erasures, then the request itself (who asked), as an audit entry
    assert (kinds[-3:], problems(index, data_dir)) == (["erasure", "erasure", "audit"], [])


def test_erased_number_is_gone_from_the_index_files(index: Index, data_dir: Path,
                                                    store: list[dict[str, Any]]) -> None:
    erase_number(index, data_dir, NUMBER, who="dpo")
    on_disk = b"".join(p.read_bytes() for p in data_dir.glob("index.db*"))
    assert NUMBER.encode() not in on_disk


def test_erase_clears_the_number_from_calls_it_was_forwarded_from_or_waited_on(
        index: Index, data_dir: Path, clock: FakeClock, store: list[dict[str, Any]]) -> None:
    other = make_call(index, data_dir, clock, number="5550000", redirected_from=NUMBER,
                      waiting=[{"number": NUMBER, "name": "ERASE ME", "at_s": 3.5},
                               {"number": "5559999", "name": "STAYS", "at_s": 9.0}])
    bystander = make_call(index, data_dir, clock, number="5550000", redirected_from="5558888")
    res = erase_number(index, data_dir, NUMBER, who="dpo")
    assert (res.erased, res.cleared) == ((2, 4), (other["id"],))  # the other call stays: not the number's
    row = public_call(index.get_call(other["id"]) or {})
    assert (row["caller_number"], row["caller_redirected_from"]) == ("5550000", None)
    assert row["waiting_callers"] == [{"number": None, "name": None, "at_s": 3.5},
                                      {"number": "5559999", "name": "STAYS", "at_s": 9.0}]
    assert public_call(index.get_call(bystander["id"]) or {})["caller_redirected_from"] == "5558888"
    doc = read_sidecar(sidecar_path(data_dir / other["path"])) or {}
    assert (doc["caller_redirected_from"], doc["waiting_callers"]) == (None, row["waiting_callers"])
    on_disk = b"".join(p.read_bytes() for p in data_dir.glob("index.db*"))
    sidecars = b"".join(p.read_bytes() for p in data_dir.rglob("*.json"))
    assert NUMBER.encode() not in on_disk and NUMBER.encode() not in sidecars and b"ERASE ME" not in on_disk
    assert problems(index, data_dir) == []  # not in the chain's commitment: the chain stays clean
    assert "cleared from 1 other call(s)" in res.summary()


def test_erase_is_audited(index: Index, data_dir: Path, store: list[dict[str, Any]]) -> None:
    erase_number(index, data_dir, NUMBER, who="dpo")
    assert [(r.who, r.action) for r in audit.rows(index)] == [("dpo", "erase")]


_RACE = """
import sys, time
from pathlib import Path
from linetap.index.db import Index
while time.time() < float(sys.argv[2]):  # all processes go at the same instant
    pass
Index(Path(sys.argv[1])).close()  # opening applies the schema
"""


def test_tables_are_created_once_when_processes_start_together(tmp_path: Path) -> None:
    # The recorder and a CLI command (linetap hold, verify...) opening a fresh index at the same
    # moment: neither may fail with "table already exists" or "database is locked".
    for attempt in range(3):
        path = tmp_path / f"index{attempt}.db"
        go = f"{time.time() + 2.0:.3f}"
        procs = [subprocess.Popen([sys.executable, "-c", _RACE, str(path), go], stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
        for p in procs:
            _, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
        index = Index(path)
        assert {"chain", "audit", "deletions", "holds", "deleting", "chain_salts"} <= set(index.table_names())
        assert index.schema_version() == schema.LATEST


def test_erase_removes_every_file_of_a_salvaged_unreadable_recording(index: Index, data_dir: Path,
                                                                       clock: FakeClock,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """A crash left only ``.part`` garbage: salvage kept it aside as ``.unreadable`` (the row says
    0 s). Erasing the number removes that file too and does not call it "removed outside linetap"."""
    from linetap.store.recordings import salvage
    rec = Recording(data_dir, index, line="line1", codec="flac", rate=RATE, channels=1,
                    started_at=clock.wall(), sync_interval_s=0.5)
    rec.set_caller(NUMBER, None)
    rec.writer.close()
    rec.part.write_bytes(b"\0" * 100)  # a power cut before the header reached the disk
    salvage(data_dir, index)
    unreadable = rec.final.with_name(rec.final.name + ".unreadable")
    assert unreadable.exists() and not rec.final.exists()
    sidecar = rec.final.with_name(rec.final.name + ".json")  # any sidecar beside it goes too
    sidecar.write_text("{}")
    res = erase_number(index, data_dir, NUMBER, who="dpo")
    assert res.erased == (rec.id,)
    assert list((data_dir / "recordings").rglob("*")) == [p for p in (data_dir / "recordings").rglob("*")
                                                           if p.is_dir()]
    (deleted,) = index.query("select detail from deletions")
    assert "outside linetap" not in (deleted["detail"] or "")
    assert "already gone" not in caplog.text


def test_erase_purges_the_erased_calls_events_from_the_mqtt_outbox(index: Index, data_dir: Path,
                                                                   store: list[dict[str, Any]]) -> None:
    from linetap import events
    from linetap.mqtt.outbox import OUTBOX_FILE, Outbox
    box = Outbox(data_dir / OUTBOX_FILE, max_rows=100)  # a running recorder's, broker unreachable
    for row in store:
        ev = events.call_ended(call_id=row["id"], line="line1", started_at=0.0, ended_at=1.0, duration_s=1.0,
                               caller_number=NUMBER if row["id"] in (2, 4) else "5550000")
        box.append("linetap/box/event", lambda seq, ev=ev: json.dumps({**ev, "seq": seq}).encode())
    box.append("linetap/box/event", lambda seq: json.dumps({"type": "alarm_raised", "seq": seq}).encode())
    res = erase_number(index, data_dir, NUMBER, who="dpo")
    assert res.events_purged == 2
    left = [json.loads(r.payload) for r in box.rows()]
    assert [e.get("call_id") for e in left] == [1, 3, 5, None]
    assert len(box) == 4  # the recorder's own count follows what another process removed
    on_disk = b"".join(p.read_bytes() for p in data_dir.glob(OUTBOX_FILE + "*"))
    assert NUMBER.encode() not in on_disk
    box.close()
