"""Erasure from the web, carried out by the recorder: over real HTTP (uvicorn on loopback), a real index
shared by two connections (the web's and the recorder's, as two processes have), real recordings and
the recorder's own housekeeping step; and once end to end with a running Recorder.

The web may not delete audio (systemd/linetap-web.service), so an admin's erasure is a request the
web answers 202 to, and the recorder's housekeeping carries it out (evidence/erasure_requests.py).
"""

from __future__ import annotations

import queue
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from linetap.alarms.manager import AlarmManager
from linetap.clock import FakeClock
from linetap.evidence import audit as evidence_audit, checkpoint as evidence_checkpoint
from linetap.evidence import hold as evidence_hold
from linetap.evidence.export_verify import checkpoint_signed
from linetap.evidence.verify import verify
from linetap.health.board import StatusBoard
from linetap.housekeeping import Housekeeping
from linetap.index import evidence as ev_db, web as q
from linetap.index.db import open_index
from linetap.store.recordings import Recording
from linetap.web import auth

from helpers import wait_for
from web_box import RATE, WebBox, build_box, make_call, serve

ERASE = {"confirm": "ERASE", "reason": "the caller asked to be forgotten"}
SHARED = "0301112222"  # the number of calls 3..5 in the box below


@pytest.fixture
def box(tmp_path: Path) -> Iterator[WebBox]:
    """Calls 1-2 of distinct numbers, 3-5 all of SHARED; the web serves them over HTTP."""
    clock = FakeClock(wall=1_795_000_000.0)
    svc, index, rows = build_box(tmp_path, clock, calls=2)
    for _ in range(3):
        rows.append(make_call(index, tmp_path / "data", clock, number=SHARED))
    for port in serve(svc):
        yield WebBox(tmp_path / "data", index, svc, clock, port, rows)
    index.close()


@pytest.fixture
def recorder(box: WebBox) -> Iterator[Housekeeping]:
    """The recorder's housekeeping on its own connection to the same index.db (as the recorder
    process holds it); tests call its erasure step as its thread does every second."""
    index = open_index(box.data_dir)
    alarms = AlarmManager(index, box.clock, clear_after_s=30.0)
    cfg = box.svc.cfg
    board = StatusBoard(recorder_id=cfg.recorder.id, lines=cfg.lines, line_calls={}, alarms=alarms, clock=box.clock)
    yield Housekeeping(index=index, data_dir=box.data_dir, storage=cfg.storage, health=cfg.health, clock=box.clock,
                       alarms=alarms, sweeper=None, board=board, to_seal=queue.Queue(), heartbeat_s=1.0)
    index.close()


def audio_of(box: WebBox, call_id: int) -> Path:
    return box.data_dir / box.calls[call_id - 1]["path"]


def requests_total(box: WebBox) -> int:
    return ev_db.erase_requests_page(box.index, limit=1, offset=0)[0]


# --- who may ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("method,path", [("POST", "/api/erasures"), ("GET", "/api/erasures"),
                                         ("GET", "/api/erasures/1"), ("POST", "/calls/1/erase"),
                                         ("GET", "/erasures"), ("POST", "/erasures"), ("GET", "/erasures/1")])
def test_logged_out_erasure_requests_get_401(box: WebBox, method: str, path: str) -> None:
    r = box.client().request(method, path, body={"call_id": 1, **ERASE} if method == "POST" else None)
    assert r.status == 401 and requests_total(box) == 0


@pytest.mark.parametrize("user", ["lena", "vic"])
def test_a_listener_or_a_viewer_cannot_erase_or_see_erasures(box: WebBox, user: str) -> None:
    c = box.as_user(user)
    assert c.post("/api/erasures", body={"call_id": 1, **ERASE}).status == 403
    assert c.request("POST", "/calls/1/erase", form={"csrf": c.csrf, "scope": "call", **ERASE}).status == 403
    assert c.request("POST", "/erasures", form={"csrf": c.csrf, "number": SHARED, **ERASE}).status == 403
    assert [c.get(p).status for p in ("/api/erasures", "/api/erasures/1", "/erasures")] == [403] * 3
    assert requests_total(box) == 0 and audio_of(box, 1).exists()


def test_an_erasure_without_the_csrf_token_is_refused(box: WebBox) -> None:
    c = box.as_user("alice")
    assert c.post("/api/erasures", body={"call_id": 1, **ERASE}, with_csrf=False).status == 403
    assert c.request("POST", "/calls/1/erase", form={"scope": "call", **ERASE}).status == 403  # no csrf field
    assert requests_total(box) == 0


def test_an_erasure_with_a_wrong_csrf_token_is_refused(box: WebBox) -> None:
    c = box.as_user("alice")
    assert c.post("/api/erasures", body={"call_id": 1, **ERASE}, headers={"X-CSRF-Token": "x" * 32}).status == 403
    assert c.request("POST", "/calls/1/erase", form={"csrf": "x" * 32, "scope": "call", **ERASE}).status == 403
    assert requests_total(box) == 0


def test_a_bearer_token_of_an_admin_erases_without_csrf(box: WebBox, recorder: Housekeeping) -> None:
    token = auth.new_token()
    q.user_set_token(box.index, "alice", auth.digest(token))
    r = box.client().post("/api/erasures", body={"call_id": 2, **ERASE}, headers={"Authorization": f"Bearer {token}"})
    assert r.status == 202
    recorder.carry_out_erasures()
    assert not audio_of(box, 2).exists()


# --- an admin asks, the recorder does --------------------------------------------------------------

def test_an_admin_erasure_is_accepted_then_carried_out_by_the_recorder(box: WebBox, recorder: Housekeeping) -> None:
    c = box.as_user("alice")
    r = c.post("/api/erasures", body={"call_id": 1, **ERASE})
    rid = r.json()["id"]
    assert (r.status, r.json()["state"], r.headers["location"]) == (202, "pending", f"/api/erasures/{rid}")
    pending = c.get(f"/api/erasures/{rid}").json()
    assert (pending["state"], pending["scope"], pending["call_id"], pending["requested_by"]) == \
        ("pending", "call", 1, "alice")
    assert audio_of(box, 1).exists()  # the web itself deletes nothing

    recorder.carry_out_erasures()

    done = c.get(f"/api/erasures/{rid}").json()
    assert done["state"] == "done" and done["done_at"]
    assert done["result"] == {"erased": [1], "held": [], "recording": [], "unknown": [], "events_purged": 0,
                              "freed_bytes": box.calls[0]["bytes"]}
    assert not audio_of(box, 1).exists() and not list(audio_of(box, 1).parent.glob("*_1.*"))
    assert c.get("/api/calls/1").status == 404 and c.get("/api/calls/2").status == 200
    assert verify(box.index, box.data_dir, record_audit=False).ok


def test_the_request_and_its_execution_are_in_the_web_audit_the_evidence_audit_and_the_chain(
        box: WebBox, recorder: Housekeeping) -> None:
    c = box.as_user("alice")
    rid = c.post("/api/erasures", body={"call_id": 1, **ERASE}).json()["id"]
    recorder.carry_out_erasures()
    _, rows = q.web_audit_rows(box.index, call_id=1)
    assert [(r["user"], r["address"], r["action"]) for r in reversed(rows)] == [
        ("alice", "127.0.0.1", "erase_request"), ("alice", "127.0.0.1", "erase")]
    assert f"request {rid}" in rows[1]["detail"] and ERASE["reason"] in rows[1]["detail"]
    assert "1 erased" in rows[0]["detail"]
    assert [(a.who, a.action) for a in evidence_audit.rows(box.index, 1)] == [
        ("web:alice", "erase_request"), ("web:alice", "erase")]
    kinds = [(r["kind"], r["call_id"]) for r in box.index.query("select kind, call_id from chain order by seq")]
    assert kinds[-3:] == [("audit", 1), ("erasure", 1), ("audit", 1)]
    log = box.index.query("select why, by, detail from deletions where call_id = 1")
    assert log == [{"why": "request", "by": "web:alice", "detail": f"privacy request (web request {rid})"}]


def test_a_held_call_is_kept_and_the_request_s_result_says_so(box: WebBox, recorder: Housekeeping) -> None:
    evidence_hold.hold(box.index, 2, reason="billing dispute", who="web:alice", clock=box.clock)
    c = box.as_user("alice")
    rid = c.post("/api/erasures", body={"call_id": 2, **ERASE}).json()["id"]
    recorder.carry_out_erasures()
    done = c.get(f"/api/erasures/{rid}").json()
    assert (done["state"], done["result"]["erased"], done["result"]["held"]) == ("done", [], [2])
    assert audio_of(box, 2).exists() and c.get("/api/calls/2").status == 200
    assert "kept on legal hold: 2" in c.get(f"/erasures/{rid}").body.decode()


def test_a_call_still_being_recorded_is_erased_once_it_ends(box: WebBox, recorder: Housekeeping) -> None:
    rec = Recording(box.data_dir, box.index, line="line1", codec="wav", rate=RATE, channels=1,
                    started_at=box.clock.wall(), sync_interval_s=0.5)
    rec.caller_number = SHARED
    rec.write(np.zeros((RATE, 1), dtype=np.int16))
    call_id = rec.id
    c = box.as_user("alice")
    rid = c.post("/api/erasures", body={"call_id": call_id, **ERASE}).json()["id"]
    recorder.carry_out_erasures()
    waiting = c.get(f"/api/erasures/{rid}").json()
    assert (waiting["state"], waiting["result"]["recording"]) == ("pending", [call_id])
    assert "waiting for a call still being recorded" in c.get(f"/erasures/{rid}").body.decode()
    recorder.carry_out_erasures()  # still recording: it waits, without writing
    assert c.get(f"/api/erasures/{rid}").json()["state"] == "pending"
    row = rec.finish("onhook")
    recorder.carry_out_erasures()
    done = c.get(f"/api/erasures/{rid}").json()
    assert (done["state"], done["result"]["erased"], done["result"]["recording"]) == ("done", [call_id], [])
    assert not (box.data_dir / row["path"]).exists()


def test_every_call_of_a_number_up_to_the_request_is_erased_and_the_number_forgotten(
        box: WebBox, recorder: Housekeeping) -> None:
    c = box.as_user("alice")
    r = c.post("/api/erasures", body={"number": "030 111-2222", **ERASE})  # as typed: spaces and dashes go
    rid = r.json()["id"]
    assert r.status == 202 and c.get(f"/api/erasures/{rid}").json()["number"] == SHARED
    box.clock.advance(60)
    later = make_call(box.index, box.data_dir, box.clock, number=SHARED)  # after the request: not asked about
    recorder.carry_out_erasures()
    done = c.get(f"/api/erasures/{rid}").json()
    assert (done["state"], done["scope"], done["number"]) == ("done", "number", None)
    assert done["result"]["erased"] == [3, 4, 5]
    assert [cid for cid in (1, 2, 3, 4, 5) if c.get(f"/api/calls/{cid}").status == 200] == [1, 2]
    assert c.get(f"/api/calls/{later['id']}").status == 200
    # The detail of every audit row names the request, never the number.
    _, rows = q.web_audit_rows(box.index, action="erase_request")
    assert rows and all(SHARED not in (r["detail"] or "") for r in q.web_audit_rows(box.index)[1])
    assert all(SHARED not in (a.detail or "") for a in evidence_audit.rows(box.index))


def test_once_done_the_number_is_gone_from_the_index_files(box: WebBox, recorder: Housekeeping) -> None:
    number = "0309998888"
    for _ in range(2):
        make_call(box.index, box.data_dir, box.clock, number=number)
    box.as_user("alice").post("/api/erasures", body={"number": number, **ERASE})
    recorder.carry_out_erasures()
    box.index.checkpoint_wal()  # the web's connection too: nothing of it left in the WAL
    files = [p for p in box.data_dir.glob("index.db*") if p.is_file()]
    assert files and all(number.encode() not in p.read_bytes() for p in files)


def test_a_number_request_also_clears_the_number_where_another_call_was_forwarded_from_or_waited_on(
        box: WebBox, recorder: Housekeeping) -> None:
    number = "0309997777"
    make_call(box.index, box.data_dir, box.clock, number=number)
    other = make_call(box.index, box.data_dir, box.clock, number="0301230000")
    box.index.update_call(other["id"], caller_redirected_from=number,
                          waiting_callers=[{"number": number, "name": "WAITER", "at_s": 2.0}])
    c = box.as_user("alice")
    rid = c.post("/api/erasures", body={"number": number, **ERASE}).json()["id"]
    recorder.carry_out_erasures()
    done = c.get(f"/api/erasures/{rid}").json()
    assert (done["state"], done["result"]["cleared"]) == ("done", [other["id"]])
    kept = c.get(f"/api/calls/{other['id']}").json()
    assert (kept["caller_number"], kept["caller_redirected_from"], kept["waiting_callers"]) == \
        ("0301230000", None, [{"number": None, "name": None, "at_s": 2.0}])
    box.index.checkpoint_wal()
    files = [p for p in box.data_dir.glob("index.db*") if p.is_file()]
    assert files and all(number.encode() not in p.read_bytes() for p in files)


# --- bad input -------------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    {"call_id": 1, "reason": "x"},  # no confirmation
    {"call_id": 1, "reason": "x", "confirm": "erase"},
    {"call_id": 1, "confirm": "ERASE"},  # no reason
    {"call_id": 1, "confirm": "ERASE", "reason": "   "},
    {"call_id": 1, "confirm": "ERASE", "reason": "x" * 501},
    {"call_id": 1, "confirm": "ERASE", "reason": "two\nlines"},
    {"confirm": "ERASE", "reason": "x"},  # neither
    {"call_id": 1, "number": SHARED, "confirm": "ERASE", "reason": "x"},  # both
    {"call_id": "../1", **ERASE}, {"call_id": -1, **ERASE}, {"call_id": 0, **ERASE}, {"call_id": 1.5, **ERASE},
    {"call_id": True, **ERASE}, {"call_id": 10**13, **ERASE}, {"call_id": [1], **ERASE},
    {"number": "../../etc/passwd", **ERASE}, {"number": "abc", **ERASE}, {"number": "1" * 100, **ERASE},
    {"number": 5551234, **ERASE}, {"number": "%", **ERASE},
])
def test_malformed_erasure_requests_are_400_and_queue_nothing(box: WebBox, body: dict[str, Any]) -> None:
    r = box.as_user("alice").post("/api/erasures", body=body)
    field = r.json()["error"].split(":")[0]
    assert r.status == 400 and field in ("confirm", "reason", "call_id", "number", "send {\"call_id\"")
    assert requests_total(box) == 0


def test_an_unknown_call_is_404_and_queues_nothing(box: WebBox) -> None:
    assert box.as_user("alice").post("/api/erasures", body={"call_id": 999, **ERASE}).status == 404
    assert requests_total(box) == 0


@pytest.mark.parametrize("path,status", [
    ("/api/erasures/..%2F..%2Fetc%2Fpasswd", 404), ("/api/erasures/../../etc/passwd", 404),
    ("/api/erasures/abc", 400), ("/api/erasures/0", 400), ("/api/erasures/-1", 400),
    ("/api/erasures/1%00", 400), ("/api/erasures/" + "9" * 40, 400), ("/api/erasures/99", 404),
    ("/erasures/..%2Fx", 404), ("/erasures/%2e%2e", 400), ("/erasures/99", 404), ("/calls/..%2F1/erase", 404),
    ("/calls/%2e%2e/erase", 400), ("/calls/1%00/erase", 400),
])
def test_bad_request_ids_are_refused_cleanly(box: WebBox, path: str, status: int) -> None:
    """(A %2F is decoded before routing: such a path matches no route, 404.)"""
    c = box.as_user("alice")
    r = c.post(path, form={"csrf": c.csrf, "scope": "call", **ERASE}) if path.endswith("/erase") else c.get(path)
    assert r.status == status and b"root:" not in r.body and requests_total(box) == 0


def test_a_body_that_is_not_an_object_is_400(box: WebBox) -> None:
    c = box.as_user("alice")
    r = c.request("POST", "/api/erasures", headers={"Content-Type": "application/json", "X-CSRF-Token": c.csrf},
                  body=None)
    assert r.status == 400
    r = c.post("/api/erasures", body=[1, 2])
    assert r.status == 400 and requests_total(box) == 0


# --- the pages -------------------------------------------------------------------------------------

def test_only_an_admin_sees_the_erase_form_on_the_call_page(box: WebBox) -> None:
    c = box.as_user("alice")
    page = c.get("/calls/3").body.decode()
    assert 'id="erase-form"' in page and f'name="csrf" value="{c.csrf}"' in page and 'pattern="ERASE"' in page
    assert f"every call of {SHARED}" in page and 'href="/erasures"' in page
    lena = box.as_user("lena").get("/calls/3").body.decode()
    assert "erase" not in lena.lower()


def test_the_call_page_form_erases_every_call_of_its_number(box: WebBox, recorder: Housekeeping) -> None:
    c = box.as_user("alice")
    r = c.request("POST", "/calls/4/erase", form={"csrf": c.csrf, "scope": "number", **ERASE})
    assert r.status == 202 and 'href="/erasures/1"' in r.body.decode()
    pending = c.get("/erasures/1").body.decode()
    assert 'http-equiv="refresh"' in pending and "pending" in pending and f"every call of {SHARED}" in pending
    recorder.carry_out_erasures()
    done = c.get("/erasures/1").body.decode()
    assert "erased: 3, 4, 5" in done and 'http-equiv="refresh"' not in done and SHARED not in done
    assert "erased: 3, 4, 5" in c.get("/erasures").body.decode()


def test_the_call_page_form_needs_the_typed_confirmation(box: WebBox) -> None:
    c = box.as_user("alice")
    r = c.request("POST", "/calls/1/erase", form={"csrf": c.csrf, "scope": "call", "reason": "x", "confirm": "yes"})
    assert r.status == 400 and b"type ERASE" in r.body and requests_total(box) == 0
    r = c.request("POST", "/calls/1/erase", form={"csrf": c.csrf, "scope": "all", **ERASE})
    assert r.status == 400 and requests_total(box) == 0


def test_the_erasures_page_form_takes_a_number(box: WebBox, recorder: Housekeeping) -> None:
    c = box.as_user("alice")
    assert 'id="erase-number-form"' in c.get("/erasures").body.decode()
    r = c.request("POST", "/erasures", form={"csrf": c.csrf, "number": "0305550001", **ERASE})
    assert r.status == 202
    recorder.carry_out_erasures()
    assert c.get("/api/erasures/1").json()["result"]["erased"] == [2]
    listing = c.get("/api/erasures").json()
    assert (listing["total"], listing["requests"][0]["id"]) == (1, 1)


# --- failure and retry -----------------------------------------------------------------------------

def test_a_failed_erasure_is_kept_pending_with_its_error_and_retried(box: WebBox, recorder: Housekeeping) -> None:
    c = box.as_user("alice")
    rid = c.post("/api/erasures", body={"call_id": 1, **ERASE}).json()["id"]
    # The deletion's first write fails, as on a failing disk (a trigger: it works as root too, where
    # directory permissions would not).
    box.index.execute("CREATE TRIGGER test_fail BEFORE INSERT ON deleting BEGIN "
                      "SELECT RAISE(ABORT, 'disk I/O error (test)'); END")
    recorder.carry_out_erasures()
    failed = c.get(f"/api/erasures/{rid}").json()
    assert (failed["state"], failed["error"]) == ("pending", "disk I/O error (test)")
    assert audio_of(box, 1).exists() and "failed, retried" in c.get(f"/erasures/{rid}").body.decode()
    box.index.execute("DROP TRIGGER test_fail")
    recorder.carry_out_erasures()  # every second: a failed one waits for the slow check
    assert c.get(f"/api/erasures/{rid}").json()["state"] == "pending"
    recorder.carry_out_erasures(with_errors=True)  # the slow check retries it
    done = c.get(f"/api/erasures/{rid}").json()
    assert (done["state"], done["error"], done["result"]["erased"]) == ("done", None, [1])
    assert not audio_of(box, 1).exists() and verify(box.index, box.data_dir, record_audit=False).ok


# --- the signed checkpoint in the call object ------------------------------------------------------

def test_the_call_object_carries_the_signed_checkpoint_that_covers_it(box: WebBox) -> None:
    from linetap import sign
    c = box.as_user("lena")
    assert c.get("/api/calls/1").json()["checkpoint"]["signed"] is None  # none signed yet
    key = sign.load_or_create(box.data_dir)
    cp = evidence_checkpoint.Checkpointer(box.index, key, recorder_id="shop-01", clock=box.clock,
                                          publish=lambda _: None).tick()
    doc = c.get("/api/calls/1").json()["checkpoint"]
    signed = doc["signed"]
    assert signed == cp.as_dict() and set(signed) == {"id", "ts", "length", "head", "key", "signature"}
    assert checkpoint_signed(signed) and signed["length"] >= doc["seq"] and signed["key"] == key.public_hex
    assert ev_db.chain_entry(box.index, signed["length"])["hash"] == signed["head"]
    assert 'id="signed-checkpoint"' in c.get("/calls/1").body.decode()


# --- end to end: a running Recorder carries out what the web asked ---------------------------------

def test_a_running_recorder_carries_out_an_erasure_asked_for_on_the_web(alsa, tmp_path: Path) -> None:
    from linetap.config import load
    from linetap.recorder import Recorder
    from linetap.sim.line import render
    from linetap.web import service
    from helpers import write_config

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    index = open_index(data_dir)
    clock = FakeClock(wall=time.time() - 3600)
    calls = [make_call(index, data_dir, clock, number=f"55500{i}") for i in range(2)]
    service.add_user(index, "alice", "admin", "admin-pass-1")
    line = alsa.lines(1)[0]
    cfg = load(write_config(tmp_path / "c.toml", data_dir, [{"name": "l0", "pcm": line.pcm}],
                            recorder={"id": "shop-01"}))
    state = service.web_dir(cfg)
    svc = service.WebService(cfg, index, secret=service.box_secret(state), state_dir=state)
    rec = Recorder(cfg)
    audio, _ = render([("idle", 60)], seed=3)
    feeder = line.feed(audio, speed=1.0)
    rec.start()
    try:
        for port in serve(svc):
            c = WebBox(data_dir, index, svc, clock, port, calls).as_user("alice")
            r = c.post("/api/erasures", body={"call_id": calls[0]["id"], **ERASE})
            assert r.status == 202
            url = r.headers["location"]
            done = wait_for(lambda: (d := c.get(url).json())["state"] == "done" and d, timeout=60, every=0.2)
            assert done["result"]["erased"] == [calls[0]["id"]]
            assert not (data_dir / calls[0]["path"]).exists() and (data_dir / calls[1]["path"]).exists()
            page = c.get(f"/erasures/{done['id']}").body.decode()
            assert f"erased: {calls[0]['id']}" in page
    finally:
        rec.stop()
        feeder.stop()
    assert verify(index, data_dir, record_audit=False).ok
    log = index.query("select call_id, why, by from deletions")
    assert log == [{"call_id": calls[0]["id"], "why": "request", "by": "web:alice"}]
    index.close()
