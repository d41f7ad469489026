"""The LED patterns as a timing diagram (``docs/led-patterns.svg``), drawn from their definitions.

``scripts/gen-led-diagram`` writes the file; ``tests/test_leds.py`` checks that the committed
picture is what these definitions draw, so the picture cannot drift from the firmware.
"""

from __future__ import annotations

from .patterns import FAST_BLINK, FAST_BLINK_S, HEARTBEAT, HEARTBEAT_S, OFF, SLOW_PULSE, SLOW_PULSE_S, STEADY

SPAN_S = 3.0  # two heartbeats, one and a half breaths: enough to tell every pattern apart
ROWS = (
    (STEADY, "steady", "line: recording · status: a line records, nothing wrong"),
    (SLOW_PULSE, "slow pulse", "line: idle · status: all idle, nothing wrong"),
    (HEARTBEAT, "heartbeat", "status only: a warning (broker, clock, disk low, overrun, clipping)"),
    (FAST_BLINK, "fast blink", "critical: line not recorded · all LEDs: the box cannot record"),
    (OFF, "off", "line disabled · recorder stopped"),
)
LEFT_PX, WIDTH_PX, ROW_PX, WAVE_PX = 110, 600, 62, 30
PX_PER_S = WIDTH_PX / SPAN_S


def wave(pattern: str, span_s: float = SPAN_S) -> list[tuple[float, float]]:
    """(seconds, brightness 0..1) corners of ``pattern`` from its start to ``span_s``: a square
    wave for blinks (a vertical edge is two points at one time), a ramp for the pulse."""
    if pattern == STEADY:
        return [(0.0, 1.0), (span_s, 1.0)]
    if pattern == OFF:
        return [(0.0, 0.0), (span_s, 0.0)]
    if pattern == SLOW_PULSE:
        fade_in, fade_out = SLOW_PULSE_S
        pts, t = [(0.0, 0.0)], 0.0
        while t < span_s:
            t += fade_in
            pts.append((t, 1.0))
            t += fade_out
            pts.append((t, 0.0))
        return _clip(pts, span_s)
    steps = {FAST_BLINK: FAST_BLINK_S, HEARTBEAT: HEARTBEAT_S}[pattern]
    pts, t, k = [], 0.0, 0
    while t < span_s:
        level = 1.0 if k % 2 == 0 else 0.0
        pts += [(t, level), (t + steps[k % len(steps)], level)]
        t += steps[k % len(steps)]
        k += 1
    return _clip(pts, span_s)


def _clip(pts: list[tuple[float, float]], span_s: float) -> list[tuple[float, float]]:
    """The wave up to ``span_s`` (a ramp cut there is interpolated)."""
    out = [p for p in pts if p[0] <= span_s + 1e-9]
    if out[-1][0] < span_s - 1e-9:
        (t0, v0), (t1, v1) = out[-1], next(p for p in pts if p[0] > span_s)
        out.append((span_s, v0 + (v1 - v0) * (span_s - t0) / (t1 - t0)))
    return [(round(t, 6), v) for t, v in out]


def svg() -> str:
    """The diagram: one row per pattern, time across (0 to ``SPAN_S``), lit up."""
    height = ROW_PX * len(ROWS) + 40
    width = LEFT_PX + WIDTH_PX + 20
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>']
    for i, (pattern, label, meaning) in enumerate(ROWS):
        base = 10 + i * ROW_PX + WAVE_PX + 4
        pts = " ".join(f"{LEFT_PX + t * PX_PER_S:.1f},{base - v * WAVE_PX:.1f}" for t, v in wave(pattern))
        parts += [f'<text x="8" y="{base - 10}" font-weight="bold">{label}</text>',
                  f'<line x1="{LEFT_PX}" y1="{base}" x2="{LEFT_PX + WIDTH_PX}" y2="{base}" stroke="#ccc"/>',
                  f'<polyline points="{pts}" fill="none" stroke="#d08000" stroke-width="2"/>',
                  f'<text x="{LEFT_PX}" y="{base + 16}" fill="#444">{meaning}</text>']
    axis = 10 + len(ROWS) * ROW_PX + 8
    for s in range(int(SPAN_S) + 1):
        x = LEFT_PX + s * PX_PER_S
        parts.append(f'<text x="{x:.1f}" y="{axis}" text-anchor="middle" fill="#444">{s} s</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
