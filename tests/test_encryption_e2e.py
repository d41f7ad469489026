"""``linetap run`` with ``[storage] encrypt_to``, through the real CLI and ALSA path, killed mid-call.

The fed audio is scanned for on the disk while the call runs (no run of it may be there in
clear), and after the SIGKILL the cut ``.part`` is decrypted with the standard ``age`` tool
(through the stand-alone unseal.py) and must play, ending at most 1 s before the kill.
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from linetap import crypto, unseal
from linetap.evidence import chain
from linetap.evidence.verify import verify
from linetap.index.db import open_index
from linetap.sim.line import render
from linetap.store import audio
from helpers import RecorderProcess, expected_start_frame, offset_in, row_of, salvaged_after_restart, write_config
from test_encryption_stream import age_decrypt, pcm_needles, plaintext_hits

RATE = 8000
IDLE_S = 3.0  # idle before the call

pytestmark = pytest.mark.skipif(shutil.which("age") is None, reason="the age tool (scripts/setup installs it)")


@pytest.mark.parametrize("codec", ["wav", "opus"])
def test_an_encrypted_call_cut_by_sigkill_decrypts_with_age_to_all_but_the_last_second(
        alsa, tmp_path: Path, data_dir: Path, codec: str) -> None:
    pub, key = crypto.generate_keypair(tmp_path / "keys")
    (line,) = alsa.lines(1)
    cfg = write_config(tmp_path / "linetap.toml", data_dir, [{"name": "line1", "pcm": line.pcm}],
                       storage={"codec": codec, "encrypt_to": str(pub)})
    pcm_audio, _ = render([("idle", IDLE_S), ("call", 20)], seed=21)
    start_frame = expected_start_frame(cfg, pcm_audio)
    needles = pcm_needles(pcm_audio[int(IDLE_S * RATE):])
    feeder = line.feed(pcm_audio, speed=1.0, fast_head_s=IDLE_S)  # the call at real time
    rec = RecorderProcess(cfg, alsa.env(), tmp_path / "run1.log")
    scans: list[tuple[float, int, list[str]]] = []  # (seconds fed, .part bytes, plaintext hits)
    try:
        rec.started()
        killed = rec.until(lambda: row_of(data_dir, "recording"))
        part = data_dir / (killed["path"] + ".part")
        while feeder.sent_frames < (IDLE_S + 4.5) * RATE:  # scan the disk, again and again, mid-call
            scans.append((feeder.sent_frames / RATE, part.stat().st_size if part.exists() else 0,
                          plaintext_hits(data_dir, needles)))
            time.sleep(0.3)
        fed_at_kill = feeder.sent_frames
        rec.proc.send_signal(signal.SIGKILL)
    finally:
        feeder.stop()
        rec.kill()

    assert killed["path"].endswith(f".{audio.extension(codec)}.sealed")
    # at least two scans (each reads every file: few on a busy machine), the .part growing between them
    assert len(scans) >= 2 and scans[-1][1] > scans[0][1], scans
    assert [hits for _, _, hits in scans if hits] == []
    assert plaintext_hits(data_dir, needles) == []

    # Off the box, the cut file as the kill left it: the age tool decrypts its valid prefix.
    prefix = tmp_path / f"prefix.{audio.extension(codec)}"
    p = age_decrypt(part, key, prefix)
    assert (p.returncode, "cut by a crash" in p.stdout) == (0, True), p.stdout + p.stderr
    samples, rate = audio.read(prefix)
    assert rate == RATE and len(samples) > 0
    if codec == "wav":  # lossless: exactly a stretch of what was fed
        first = offset_in(pcm_audio, samples[:, 0])
        assert abs(first - start_frame) <= 0.05 * RATE, f"starts at frame {first}, not {start_frame}"
        assert np.array_equal(samples[:, 0], pcm_audio[first:first + len(samples)])
        assert plaintext_hits(tmp_path, needles)  # the scan above could have seen the audio
    else:
        first = start_frame
    lost_s = (fed_at_kill - (first + len(samples))) / RATE
    assert -0.1 <= lost_s <= 1.0, f"decrypted {len(samples) / RATE:.2f} s: ends {lost_s:.2f} s before the kill"

    # The next start salvages it as it is: the same prefix, indexed recovered, still encrypted.
    row = salvaged_after_restart(line, cfg, alsa.env(), tmp_path / "run2.log", data_dir, seed=22)
    final = data_dir / row["path"]
    assert (row["id"], row["path"], part.exists()) == (killed["id"], killed["path"], False)
    again = tmp_path / f"again.{audio.extension(codec)}"
    res = crypto.decrypt_file(final, again, key)
    assert (res.complete, again.read_bytes()) == (False, prefix.read_bytes())
    assert row["duration_s"] == pytest.approx(unseal.scan(final).frames / RATE, abs=0.001)
    assert row["duration_s"] == pytest.approx(len(samples) / RATE, abs=0.25)
    assert plaintext_hits(data_dir, needles) == []
    index = open_index(data_dir)
    try:  # the chain took the recovered, still encrypted file as it is
        assert (verify(index, data_dir).problems, chain.live_entry(index, row["id"]).payload["encrypted"]) == ((), True)
    finally:
        index.close()
