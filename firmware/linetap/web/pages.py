"""The HTML pages: pure functions from values to text (no template engine: five small pages).

Every value from the index or the request goes through :func:`esc` (``html.escape``, quotes too):
a caller name like ``<script>`` is shown, never run. Times are shown in the box's time zone
(``recorder.timezone``) with the stored UTC time on hover (``title``).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from ..clock import parse_iso
from .auth import Principal, allowed
from .timeline import timeline_svg

CSS = """body{font-family:system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#24405c;color:#fff;padding:.5em 1em;display:flex;gap:1.5em;align-items:center}
header a{color:#fff} main{padding:.5em 1em} h1{margin:.3em 0} h2{margin:.2em 0 .5em} table{border-collapse:collapse;width:100%;background:#fff}
td,th{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left;font-size:.9em}
.bad{color:#b00020;font-weight:bold} .ok{color:#1b7f3b} form.filters{display:flex;flex-wrap:wrap;gap:.5em;
margin-bottom:1em} form.filters label{display:flex;flex-direction:column;font-size:.8em}
.box{background:#fff;border:1px solid #ddd;padding:1em;margin-bottom:1em} code{word-break:break-all}"""


def esc(value: Any) -> str:
    return "" if value is None else html.escape(str(value), quote=True)


@dataclass(frozen=True, slots=True)
class View:
    recorder_id: str
    tz: ZoneInfo

    def when(self, iso_utc: str | None) -> str:
        """A stored UTC time as the box's local time, the UTC one on hover."""
        if not iso_utc:
            return ""
        try:
            local = datetime.fromtimestamp(parse_iso(iso_utc), tz=timezone.utc).astimezone(self.tz)
        except (ValueError, OverflowError):
            return esc(iso_utc)
        return (f'<time datetime="{esc(iso_utc)}" title="{esc(iso_utc)} (UTC)">'
                f'{esc(local.strftime("%Y-%m-%d %H:%M:%S %Z"))}</time>')

    def _doc(self, title: str, body: str, who: Principal | None = None) -> str:
        nav = ""
        if who is not None:
            links = ['<a href="/">Health</a>']
            if allowed(who.role, "calls"):
                links.append('<a href="/calls">Calls</a>')
            if allowed(who.role, "audit"):
                links.append('<a href="/audit">Audit</a>')
            if allowed(who.role, "erase"):
                links.append('<a href="/erasures">Erasures</a>')
            if allowed(who.role, "config"):
                links.append('<a href="/config">Config</a>')
            nav = (" ".join(links) + f' <span>{esc(who.user)} ({esc(who.role)})</span>'
                   f'<form method="post" action="/logout" style="margin:0"><input type="hidden" name="csrf" '
                   f'value="{esc(who.csrf)}"><button>Log out</button></form>')
        return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
                f'<meta name="viewport" content="width=device-width,initial-scale=1">'
                f'<title>{esc(title)} · linetap {esc(self.recorder_id)}</title><style>{CSS}</style></head>'
                f'<body><header><strong>linetap {esc(self.recorder_id)}</strong>{nav}</header>'
                f'<main><h1>{esc(title)}</h1>{body}</main></body></html>')

    def login(self, message: str = "") -> str:
        msg = f'<p class="bad" id="message">{esc(message)}</p>' if message else ""
        return self._doc("Log in", msg + """<form method="post" action="/login" class="box" id="login">
<p><label>User <input name="user" id="user" autocomplete="username" required maxlength="32"></label></p>
<p><label>Password <input name="password" id="password" type="password" autocomplete="current-password"
required maxlength="1024"></label></p><p><button id="submit">Log in</button></p></form>""")

    def error(self, status: int, message: str) -> str:
        return self._doc(f"Error {status}", f'<p class="bad">{esc(message)}</p>')

    def done(self, message: str, next_url: str) -> str:
        return self._doc("Done", f'<p id="message">{esc(message)}</p><p><a id="next" href="{esc(next_url)}">'
                                 f'Continue</a></p>')

    def health(self, who: Principal, doc: dict[str, Any], coverage: list[dict[str, Any]]) -> str:
        parts = []
        if doc.get("running") is False:
            parts.append('<p class="bad">The recorder has not reported its health (not running?).</p>')
        lines = doc.get("lines") or {}
        rows = "".join(f'<tr><td>{esc(name)}</td><td class="{"bad" if ln.get("state") == "fault" else "ok"}">'
                       f'{esc(ln.get("state"))}</td><td>{esc(", ".join(ln.get("alarms") or []))}</td>'
                       f'<td>{self.when(ln.get("last_audio_at"))}</td></tr>'
                       for name, ln in sorted(lines.items()))
        parts.append(f'<div class="box"><h2>Lines</h2><table><tr><th>line</th><th>state</th><th>alarms</th>'
                     f'<th>last audio</th></tr>{rows}</table></div>')
        gaps = "".join(f'<tr><td>{esc(c["line"])}</td><td>{self.when(g["started_at"])}</td>'
                       f'<td>{self.when(g["ended_at"])}</td><td>{esc(g["reason"])}</td></tr>'
                       for c in coverage for g in c["gaps"])
        parts.append(f'<div class="box"><h2>Coverage, last 7 days</h2>{timeline_svg(coverage, self.tz)}'
                     f'<table id="gaps"><tr><th>line</th><th>gap from</th><th>to</th><th>reason</th></tr>{gaps}'
                     f'</table></div>')
        alarms = "".join(f'<li class="bad">{esc(a.get("code"))} {esc(a.get("line") or "")} since '
                         f'{self.when(a.get("raised_at"))}: {esc(a.get("detail"))}</li>'
                         for a in doc.get("alarm_details") or [])
        parts.append(f'<div class="box"><h2>Active alarms</h2><ul id="alarms">{alarms or "<li>none</li>"}</ul></div>')
        disk = doc.get("disk") or {}
        parts.append(f'<div class="box"><h2>Disk</h2><p>free {esc(disk.get("free_mb"))} MB, '
                     f'{esc(disk.get("recordings"))} recordings, about {esc(disk.get("hours_left"))} hours of '
                     f'recording left</p></div>')
        web = doc.get("web") or {}
        cp = doc.get("checkpoint") or {}
        parts.append(f'<div class="box"><h2>This box</h2><p>HTTPS certificate SHA-256 fingerprint: '
                     f'<code id="fingerprint">{esc(web.get("fingerprint_sha256") or "(plain HTTP)")}</code></p>'
                     f'<p>Evidence chain head: entry {esc(cp.get("seq"))}, <code>{esc(cp.get("hash"))}</code></p>'
                     f'</div>')
        return self._doc("Health", "".join(parts), who)

    def calls(self, who: Principal, params: dict[str, str], lines: list[str], total: int,
              calls: list[dict[str, Any]], limit: int, offset: int) -> str:
        def field(name: str, label: str, kind: str = "text") -> str:
            return (f'<label>{esc(label)}<input name="{name}" id="f-{name}" type="{kind}" '
                    f'value="{esc(params.get(name, ""))}"></label>')

        def select(name: str, label: str, options: list[tuple[str, str]]) -> str:
            opts = "".join(f'<option value="{esc(v)}"{" selected" if params.get(name, "") == v else ""}>'
                           f'{esc(t)}</option>' for v, t in options)
            return f'<label>{esc(label)}<select name="{name}" id="f-{name}">{opts}</select></label>'

        form = ('<form class="filters" method="get" action="/calls">'
                + select("line", "line", [("", "any")] + [(n, n) for n in lines])
                + field("since", "from (local)", "datetime-local") + field("until", "to (local)", "datetime-local")
                + field("number", "caller number") + field("name", "caller name")
                + field("min_duration_s", "min s") + field("max_duration_s", "max s")
                + select("dtmf", "DTMF", [("", "any"), ("1", "yes"), ("0", "no")])
                + select("held", "held", [("", "any"), ("1", "yes"), ("0", "no")])
                + '<button id="search">Search</button></form>')
        rows = "".join(
            f'<tr><td><a href="/calls/{int(c["id"])}">{int(c["id"])}</a></td><td>{esc(c["line"])}</td>'
            f'<td>{self.when(c["started_at"])}</td><td>{esc(_dur(c["duration_s"]))}</td>'
            f'<td>{esc(c["caller_number"])}</td><td>{esc(c["caller_name"])}</td><td>{esc(c["dtmf"])}</td>'
            f'<td>{"held" if c.get("held") else ""}</td></tr>' for c in calls)
        keep = {k: v for k, v in params.items() if k not in ("offset",) and v}
        nav = []
        if offset > 0:
            nav.append(f'<a id="prev" href="/calls?{esc(urlencode({**keep, "offset": max(0, offset - limit)}))}">'
                       f'previous</a>')
        if offset + limit < total:
            nav.append(f'<a id="next" href="/calls?{esc(urlencode({**keep, "offset": offset + limit}))}">next</a>')
        shown = f"{offset + 1}–{offset + len(calls)} of {total}" if calls else f"none of {total}"
        return self._doc("Calls", form + f'<p id="count">{shown}</p><table id="calls"><tr><th>id</th><th>line</th>'
                         f'<th>started</th><th>duration</th><th>number</th><th>name</th><th>DTMF</th><th></th></tr>'
                         f'{rows}</table><p>{" ".join(nav)}</p>', who)

    def call(self, who: Principal, c: dict[str, Any]) -> str:
        cid = int(c["id"])
        meta = "".join(f'<tr><th>{esc(k)}</th><td>{v}</td></tr>' for k, v in [
            ("line", esc(c["line"])), ("started", self.when(c["started_at"])), ("ended", self.when(c["ended_at"])),
            ("duration", esc(_dur(c["duration_s"]))), ("caller number", esc(c["caller_number"])),
            ("caller name", esc(c["caller_name"])),
            *([("forwarded from", esc(c["caller_redirected_from"]))] if c.get("caller_redirected_from") else []),
            *([("call waiting", _waiting(c["waiting_callers"]))] if c.get("waiting_callers") else []),
            ("DTMF (as stored)", esc(c["dtmf"])), ("end", esc(c["end_reason"])), ("status", esc(c["status"])), ("format", esc(c["codec"])),
            ("size", f'{esc(c["bytes"])} bytes'), ("sha256", f'<code>{esc(c["sha256"])}</code>')])
        if c.get("encrypted"):
            player = (f'<p>This recording is sealed to the owner\'s public key: the box cannot play it. '
                      f'<a id="download" href="/api/calls/{cid}/audio?download=1">Download the sealed file</a> and '
                      f'decrypt it on a computer that holds the private key: <code>linetap decrypt FILE --key '
                      f'owner.key</code>. The private key never reaches the box.</p>')
        else:
            player = (f'<audio id="player" controls preload="metadata" src="/api/calls/{cid}/audio"></audio>'
                      f'<p><a id="download" href="/api/calls/{cid}/audio?download=1">Download the audio</a></p>')
        player += (f'<p><a id="proof" href="/api/calls/{cid}/proof">Download with its proof</a> (a zip: the '
                   f'recording, its metadata, the chain proof and <code>verify_export.py</code>)</p>')
        cp = c.get("checkpoint")
        proof = (f'<p>Evidence chain entry {esc(cp["seq"])}: <code>{esc(cp["hash"])}</code> (head '
                 f'{esc(cp["head_seq"])})</p>' if cp else '<p class="bad">Not in the evidence chain yet.</p>')
        signed = (cp or {}).get("signed")
        if signed:
            proof += (f'<p id="signed-checkpoint">Covered by the checkpoint the box signed at {self.when(signed["ts"])}'
                      f' (entries 1–{esc(signed["length"])}, head <code>{esc(signed["head"][:16])}…</code>, device '
                      f'key <code>{esc(signed["key"][:16])}…</code>).</p>')
        hold = c.get("hold")
        hold_text = (f'<p class="bad" id="hold-state">On legal hold since {self.when(hold["held_at"])} by '
                     f'{esc(hold["held_by"])}: {esc(hold["reason"])}</p>' if hold
                     else '<p id="hold-state">Not on hold.</p>')
        if allowed(who.role, "hold"):
            hold_text += (f'<form method="post" action="/calls/{cid}/hold"><input type="hidden" name="csrf" '
                          f'value="{esc(who.csrf)}"><input type="hidden" name="held" value="{0 if hold else 1}">'
                          + ('' if hold else '<input name="reason" id="reason" placeholder="reason" required '
                             'maxlength="500"> ')
                          + f'<button id="hold">{"Release hold" if hold else "Place on hold"}</button></form>')
        erase = ""
        if allowed(who.role, "erase"):
            number = ('<label><input type="radio" name="scope" value="number" id="erase-scope-number"> every call '
                      f'of {esc(c["caller_number"])} up to now</label> ' if c.get("caller_number") else "")
            erase = (f'<div class="box"><h2>Erase</h2><form method="post" action="/calls/{cid}/erase" id="erase-form">'
                     f'<input type="hidden" name="csrf" value="{esc(who.csrf)}">'
                     '<p><label><input type="radio" name="scope" value="call" id="erase-scope-call" checked> this '
                     f'call</label> {number}</p><p><input name="reason" id="erase-reason" required maxlength="500" '
                     'placeholder="reason (not the number)" size="40"> <input name="confirm" id="erase-confirm" '
                     'required pattern="ERASE" placeholder="type ERASE" size="12"> <button id="erase">Erase</button>'
                     '</p></form><p>The recorder deletes the audio, its metadata and its caller ID within seconds; '
                     'a call on legal hold is kept, one still being recorded once it ends. The evidence chain '
                     'keeps that it was erased, by whom and why.</p></div>')
        return self._doc(f"Call {cid}", f'<div class="box">{player}</div><div class="box"><table>{meta}</table>'
                         f'{proof}</div><div class="box"><h2>Legal hold</h2>{hold_text}</div>{erase}', who)

    def erasures(self, who: Principal, total: int, rows: list[dict[str, Any]]) -> str:
        form = (f'<form method="post" action="/erasures" class="box filters" id="erase-number-form">'
                f'<input type="hidden" name="csrf" value="{esc(who.csrf)}">'
                '<label>caller number<input name="number" id="erase-number" required maxlength="40"></label>'
                '<label>reason<input name="reason" id="erase-reason" required maxlength="500"></label>'
                '<label>confirm<input name="confirm" id="erase-confirm" required pattern="ERASE" '
                'placeholder="type ERASE"></label><button id="erase">Erase every call of this number</button></form>')
        body = "".join(f'<tr><td><a href="/erasures/{int(r["id"])}">{int(r["id"])}</a></td>'
                       f'<td>{self.when(r["requested_at"])}</td><td>{esc(r["requested_by"])}</td>'
                       f'<td>{_target(r)}</td><td>{esc(r["reason"])}</td><td class="{_state_class(r)}">'
                       f'{esc(_state(r))}</td><td>{esc(_outcome(r))}</td></tr>' for r in rows)
        return self._doc("Erasures", form + f'<p>{total} request(s); each is carried out by the recorder.</p>'
                         f'<table id="erasures"><tr><th>request</th><th>asked</th><th>by</th><th>what</th>'
                         f'<th>reason</th><th>state</th><th>outcome</th></tr>{body}</table>', who)

    def erasure(self, who: Principal, r: dict[str, Any]) -> str:
        rows = "".join(f'<tr><th>{esc(k)}</th><td>{v}</td></tr>' for k, v in [
            ("asked", self.when(r["requested_at"])), ("by", esc(r["requested_by"])), ("from", esc(r["address"])),
            ("what", _target(r)), ("reason", esc(r["reason"])),
            ("state", f'<span id="erasure-state" class="{_state_class(r)}">{esc(_state(r))}</span>'),
            ("done", self.when(r["done_at"])), ("outcome", f'<span id="erasure-outcome">{esc(_outcome(r))}</span>'),
            ("last error", esc(r["error"]))])
        doc = self._doc(f"Erasure request {int(r['id'])}", f'<div class="box"><table>{rows}</table></div>', who)
        if r["state"] == "pending":  # the recorder is on it: look again shortly, no script needed
            doc = doc.replace("<head>", '<head><meta http-equiv="refresh" content="2">', 1)
        return doc

    def config(self, who: Principal, text: str) -> str:
        return self._doc("Configuration", f'<p>Secrets are shown as ********. Change the config on the boot '
                         f'partition (see docs/INSTALLER.md).</p><pre class="box" id="config">{esc(text)}</pre>', who)

    def audit(self, who: Principal, params: dict[str, str], total: int, rows: list[dict[str, Any]]) -> str:
        form = ('<form class="filters" method="get" action="/audit">'
                f'<label>user<input name="user" value="{esc(params.get("user", ""))}"></label>'
                f'<label>action<input name="action" value="{esc(params.get("action", ""))}"></label>'
                f'<label>call<input name="call_id" value="{esc(params.get("call_id", ""))}"></label>'
                '<button>Filter</button></form>')
        body = "".join(f'<tr><td>{self.when(r["at"])}</td><td>{esc(r["user"])}</td><td>{esc(r["address"])}</td>'
                       f'<td>{esc(r["action"])}</td><td>{esc(r["call_id"])}</td><td>{esc(r["detail"])}</td></tr>'
                       for r in rows)
        return self._doc("Audit trail", form + f'<p>{total} entries</p><table id="audit"><tr><th>when</th>'
                         f'<th>user</th><th>address</th><th>action</th><th>call</th><th>detail</th></tr>{body}'
                         f'</table>', who)


def _target(r: dict[str, Any]) -> str:
    if r["scope"] == "call":
        return f'call <a href="/calls/{int(r["call_id"])}">{int(r["call_id"])}</a>'
    if r.get("number"):
        return f"every call of {esc(r['number'])}"
    return "every call of a number (forgotten once erased)"


def _state(r: dict[str, Any]) -> str:
    if r["state"] == "done":
        return "done"
    if r.get("error"):
        return "pending: failed, retried"
    if (r.get("result") or {}).get("recording"):
        return "pending: waiting for a call still being recorded"
    return "pending: the recorder carries it out within seconds"


def _state_class(r: dict[str, Any]) -> str:
    return "bad" if r.get("error") or (r.get("result") or {}).get("held") else "ok"


def _outcome(r: dict[str, Any]) -> str:
    """What was erased and kept, by call id."""
    res = r.get("result") or {}
    parts = []
    for key, label in (("erased", "erased"), ("held", "kept on legal hold"), ("recording", "still recording"),
                       ("unknown", "no longer there")):
        if res.get(key):
            parts.append(f"{label}: " + ", ".join(str(i) for i in res[key][:50])
                         + (f" and {len(res[key]) - 50} more" if len(res[key]) > 50 else ""))
    if r["state"] == "done" and not parts:
        parts.append("no recording matched")
    return "; ".join(parts)


def _waiting(callers: list[dict[str, Any]]) -> str:
    """The second callers announced during a call (call waiting): number, name, when in the
    recording (``m:ss``), one a line, escaped (a caller name is the caller's to choose)."""
    return '<br>'.join(f'<span class="waiting">{esc(w.get("number") or "number withheld")}'
                       f'{" " + esc(w.get("name")) if w.get("name") else ""} at {esc(_dur(w.get("at_s")))}</span>'
                       for w in callers if isinstance(w, dict))


def _dur(seconds: Any) -> str:
    if seconds is None:
        return ""
    s = int(round(float(seconds)))
    return f"{s // 60}:{s % 60:02d}"
