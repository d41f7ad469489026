"""The coverage picture: one bar per line over the window, each gap a red span with its reason
on hover (SVG drawn on the server: no script, works in every browser, a few kB)."""

from __future__ import annotations

import html
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from ..clock import parse_iso

WIDTH, LABEL_W, ROW_H, BAR_H, AXIS_H = 800, 80, 26, 16, 18
MIN_GAP_PX = 1.0  # a gap of seconds in a week is still drawn, one pixel wide


def timeline_svg(coverage: list[dict[str, Any]], tz: ZoneInfo) -> str:
    """``coverage`` as produced by :meth:`linetap.web.service.WebService.coverage`."""
    if not coverage:
        return ""
    since, until = parse_iso(coverage[0]["since"]), parse_iso(coverage[0]["until"])
    span = max(1.0, until - since)
    plot_w = WIDTH - LABEL_W
    height = AXIS_H + ROW_H * len(coverage)

    def x(t: float) -> float:
        return LABEL_W + plot_w * (min(max(t, since), until) - since) / span

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" id="timeline" width="100%" viewBox="0 0 {WIDTH} {height}" '
           f'role="img" aria-label="coverage per line">']
    day = 86400.0
    t = since - (since % day) + day
    while t < until:  # a tick at each UTC midnight, labelled with the local date
        label = datetime.fromtimestamp(t, tz=timezone.utc).astimezone(tz).strftime("%a %d")
        out.append(f'<line x1="{x(t):.1f}" y1="0" x2="{x(t):.1f}" y2="{height}" stroke="#ccc"/>'
                   f'<text x="{x(t) + 2:.1f}" y="12" font-size="11">{html.escape(label)}</text>')
        t += day
    for i, c in enumerate(coverage):
        y = AXIS_H + i * ROW_H
        pct = f"{100.0 * c['covered_fraction']:.2f} %"
        out.append(f'<text x="0" y="{y + 12}" font-size="12">{html.escape(c["line"])}</text>'
                   f'<rect x="{LABEL_W}" y="{y}" width="{plot_w}" height="{BAR_H}" fill="#3c9d5d">'
                   f'<title>{html.escape(c["line"])}: {pct} covered</title></rect>')
        for g in c["gaps"]:
            x0, x1 = x(parse_iso(g["started_at"])), x(parse_iso(g["ended_at"]))
            out.append(f'<rect class="gap" x="{x0:.1f}" y="{y}" width="{max(MIN_GAP_PX, x1 - x0):.1f}" '
                       f'height="{BAR_H}" fill="#c62828"><title>{html.escape(g["reason"])}: '
                       f'{html.escape(g["started_at"])} – {html.escape(g["ended_at"])}</title></rect>')
    out.append("</svg>")
    return "".join(out)
