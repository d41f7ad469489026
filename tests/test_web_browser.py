"""The owner's path in a real browser (Debian's headless Chromium, driven by selenium): log in, find a
call by number, play it (the audio element gets past 1 s), seek, download it with its proof and check
the proof with the export verifier; then erase a call from its page and watch the request get done.

``LINETAP_SCREENSHOTS=1`` also writes the screenshots the README shows (``docs/web-*.png``).
"""

from __future__ import annotations

import os
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from linetap.clock import FakeClock, iso
from linetap.health.snapshot import write_snapshot
from linetap.service import status_path
from linetap.evidence.erasure_requests import carry_out_pending
from linetap.evidence.export import verify_export
from linetap.index.db import open_index

from web_box import PASSWORDS, build_box, serve

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="needs Debian's chromium and chromium-driver (scripts/setup installs them)")
DOCS = Path(__file__).resolve().parents[1] / "docs"
SHOTS = os.environ.get("LINETAP_SCREENSHOTS") == "1"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--autoplay-policy=no-user-gesture-required", "--mute-audio", "--window-size=1100,900",
                f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {"download.default_directory": str(tmp_path / "downloads"),
                                           "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=opts, service=Service(DRIVER))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: Any, name: str) -> None:
    if SHOTS:
        driver.save_screenshot(str(DOCS / f"web-{name}.png"))


def wait(cond: Any, timeout: float = 10.0) -> Any:
    """``cond()`` once true; a page still loading (element missing or stale) counts as not yet."""
    from selenium.common.exceptions import WebDriverException  # also: missing, stale, from the previous page
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = cond()
        except WebDriverException:
            v = None
        if v:
            return v
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_owner_logs_in_finds_plays_seeks_and_downloads_a_call_with_its_proof(tmp_path: Path,
                                                                              browser: Any) -> None:
    from selenium.webdriver.common.by import By
    clock = FakeClock(wall=time.time() - 3 * 86400)  # calls over the last days, inside the 7-day timeline
    svc, index, rows = build_box(tmp_path, clock, calls=6, seconds=6.0)
    now = time.time()
    clock.advance(now - clock.wall())  # the box's clock is now: the timeline ends today
    index.set_meta("first_started_at", iso(now - 8 * 86400))
    index.set_meta("heartbeat", iso(now))
    index.gap("line2", iso(now - 2 * 86400), iso(now - 2 * 86400 + 3 * 3600), "line_dead")
    write_snapshot(status_path(svc.cfg), {
        "ts": iso(now), "id": "shop-01", "version": "0.1.0", "uptime_s": 3600.0,
        "lines": {"line1": {"state": "recording", "level_dbfs": -30.0, "last_audio_at": iso(now), "alarms": []},
                  "line2": {"state": "idle", "level_dbfs": -70.0, "last_audio_at": iso(now), "alarms": []}},
        "disk": {"free_mb": 28000.0, "used_mb": 1200.0, "recordings": 6, "hours_left": 4100.0},
        "alarms": [], "alarm_details": [], "clock_synced": True})
    try:
        for port in serve(svc):
            base = f"http://127.0.0.1:{port}"
            browser.get(base + "/calls")  # logged out: the login page
            assert browser.find_element(By.ID, "login")
            shot(browser, "login")
            browser.find_element(By.ID, "user").send_keys("alice")
            browser.find_element(By.ID, "password").send_keys(PASSWORDS["alice"])
            browser.find_element(By.ID, "submit").click()
            wait(lambda: browser.find_element(By.ID, "next").click() or True)

            wait(lambda: browser.find_element(By.ID, "f-number").send_keys("5550003") or True)
            wait(lambda: browser.find_element(By.ID, "search").click() or True)
            wait(lambda: "1–1 of 1" in browser.find_element(By.ID, "count").text)
            shot(browser, "calls")
            wait(lambda: browser.find_element(By.CSS_SELECTOR, "#calls a").click() or True)
            wait(lambda: browser.find_element(By.TAG_NAME, "h1").text == "Call 4")

            wait(lambda: browser.execute_script("return document.getElementById('player').readyState") >= 1)
            browser.execute_script("document.getElementById('player').play()")
            wait(lambda: browser.execute_script("return document.getElementById('player').currentTime") > 1)
            browser.execute_script("const p = document.getElementById('player'); p.pause(); p.currentTime = 4.5")
            wait(lambda: browser.execute_script(
                "const p = document.getElementById('player'); return !p.seeking && p.currentTime >= 4.5"))
            assert browser.execute_script("return document.getElementById('player').duration") == pytest.approx(6, abs=0.01)
            shot(browser, "call")

            browser.find_element(By.ID, "proof").click()
            downloads = tmp_path / "downloads"
            bundle = wait(lambda: next(iter(downloads.glob("*.zip")), None) if downloads.is_dir() else None)
            zipfile.ZipFile(bundle).extractall(tmp_path / "proof")
            assert verify_export(tmp_path / "proof" / "call-4") == []

            browser.set_window_size(1100, 1250)
            browser.get(base + "/")  # get() returns once the page has loaded
            assert len(browser.find_elements(By.CSS_SELECTOR, "#timeline rect.gap")) == 1
            assert "line_dead" in browser.find_element(By.ID, "gaps").text
            shot(browser, "health")
            browser.get(base + "/audit")
            assert "play" in browser.find_element(By.ID, "audit").text
            shot(browser, "audit")

            # An erasure: asked for on the call page, carried out by the recorder (its own connection to
            # the index, as its housekeeping thread does every second), seen on the request's page,
            # which reloads itself while pending.
            browser.get(base + "/calls/2")
            browser.find_element(By.ID, "erase-reason").send_keys("the caller asked to be forgotten")
            browser.find_element(By.ID, "erase-confirm").send_keys("ERASE")
            browser.find_element(By.ID, "erase").click()
            wait(lambda: browser.find_element(By.ID, "next").click() or True)
            wait(lambda: "pending" in browser.find_element(By.ID, "erasure-state").text)
            recorder_index = open_index(tmp_path / "data")
            try:
                carry_out_pending(recorder_index, tmp_path / "data")
            finally:
                recorder_index.close()
            wait(lambda: browser.find_element(By.ID, "erasure-state").text == "done", timeout=20)
            assert browser.find_element(By.ID, "erasure-outcome").text == "erased: 2"
            assert not (tmp_path / "data" / rows[1]["path"]).exists()
    finally:
        index.close()
