"""Is the monitoring link an alarm? The decision on the MQTT link's reported state (pure).

The link (``mqtt/link.py``) only reports a ``LinkState``; the health thread asks for it on each
link tick (twice a second) and sets ``BROKER_UNREACHABLE`` from ``broker_alarm``. One alarm covers
every way the monitoring link fails the owner, because each means the same to them: what the box
does is no longer seen live (recordings are unaffected; the index keeps every call and alarm).
"""

from __future__ import annotations

from linetap.mqtt.state import LinkState

BROKER_UNREACHABLE = "BROKER_UNREACHABLE"


def broker_alarm(state: LinkState, now_mono: float, unreachable_after_s: float) -> tuple[bool, str]:
    """``(active, detail)`` of ``BROKER_UNREACHABLE`` for the link in ``state`` at ``now_mono``.

    - connected, nothing dropped: clear;
    - refused by the broker (bad user name or password, not authorised, unsupported protocol):
      raised at once, without waiting ``unreachable_after_s``: a refusal does not fix itself, and
      the owner has a setting to change (the detail names it);
    - down (not refused) for ``unreachable_after_s`` or more: raised, the detail naming the broker
      and the last error; shorter outages (a broker restart, a Wi-Fi hiccup) stay silent, since
      their events wait in the outbox and arrive afterwards;
    - events dropped by the full outbox: raised, saying how many, until the backlog is delivered
      (the outbox resets its count when it is empty), even if the link is connected again.

    The detail is the same for as long as the condition is (no running duration in it), so calling
    this on every tick does not rewrite the alarm.
    """
    reasons: list[str] = []
    if not state.connected:
        if state.refused:
            reasons.append(state.refused)
        elif state.down_since_mono is not None and now_mono - state.down_since_mono >= unreachable_after_s:
            why = f" ({state.last_error})" if state.last_error else ""
            reasons.append(f"no connection to the MQTT broker {state.broker} for {unreachable_after_s:g} s{why}")
    if state.dropped > 0:
        reasons.append(f"MQTT outbox full ({state.outbox_max} events): {state.dropped} oldest undelivered "
                       "event(s) dropped")
    return bool(reasons), "; ".join(reasons)
