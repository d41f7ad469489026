"""broker_alarm: the health side's decision on the MQTT link's reported state (pure, exact)."""

from __future__ import annotations

from dataclasses import replace

from linetap.health.broker import broker_alarm
from linetap.mqtt.state import LinkState, refusal

UP = LinkState(broker="10.0.0.2:1883", connected=True, down_since_mono=None, refused=None, last_error=None,
               queued=0, dropped=0, outbox_max=10000)
DOWN = replace(UP, connected=False, down_since_mono=100.0,
               last_error="cannot connect to 10.0.0.2:1883: Connection refused")


def test_a_connected_link_raises_nothing() -> None:
    assert broker_alarm(UP, 1e6, 60.0) == (False, "")


def test_a_link_not_yet_started_raises_nothing() -> None:
    assert broker_alarm(replace(UP, connected=False), 1e6, 60.0) == (False, "")


def test_an_outage_shorter_than_unreachable_after_s_raises_nothing() -> None:
    assert broker_alarm(DOWN, 159.999, 60.0) == (False, "")


def test_an_outage_of_unreachable_after_s_raises_naming_broker_and_reason() -> None:
    assert broker_alarm(DOWN, 160.0, 60.0) == (
        True, "no connection to the MQTT broker 10.0.0.2:1883 for 60 s "
              "(cannot connect to 10.0.0.2:1883: Connection refused)")


def test_the_detail_does_not_change_while_the_outage_lasts() -> None:
    assert broker_alarm(DOWN, 160.0, 60.0) == broker_alarm(DOWN, 7200.0, 60.0)


def test_an_outage_without_a_known_reason_still_names_the_broker() -> None:
    assert broker_alarm(replace(DOWN, last_error=None), 200.0, 60.0) == (
        True, "no connection to the MQTT broker 10.0.0.2:1883 for 60 s")


def test_a_refusal_raises_at_once() -> None:
    refused = replace(DOWN, refused=refusal("10.0.0.2:1883", "Not authorized", username="recorder"))
    assert broker_alarm(refused, 100.0, 60.0) == (True, refused.refused)


def test_dropped_events_raise_even_while_connected() -> None:
    assert broker_alarm(replace(UP, dropped=5, queued=10000), 0.0, 60.0) == (
        True, "MQTT outbox full (10000 events): 5 oldest undelivered event(s) dropped")


def test_an_outage_and_dropped_events_are_both_named() -> None:
    active, detail = broker_alarm(replace(DOWN, dropped=3), 160.0, 60.0)
    assert active and detail == ("no connection to the MQTT broker 10.0.0.2:1883 for 60 s "
                                 "(cannot connect to 10.0.0.2:1883: Connection refused); "
                                 "MQTT outbox full (10000 events): 3 oldest undelivered event(s) dropped")


# --- the words for a refused CONNECT (mqtt/state.py ``refusal``) --------------------------------------

def test_a_refused_password_is_said_in_plain_words_naming_the_settings() -> None:
    """Mosquitto answers a wrong password with "Not authorized" (MQTT 5 reason 135; 3.1.1 return
    code 5), which does not say what was wrong: the detail does."""
    assert refusal("10.0.0.2:1883", "Not authorized", username="recorder") == (
        "broker 10.0.0.2:1883 refused the connection: it did not accept the user name 'recorder' with the "
        "password from mqtt.password_file (broker's answer: Not authorized); check mqtt.username and "
        "mqtt.password_file")
    assert refusal("h:1", "Bad user name or password", username="u").startswith(  # reason 134 / return code 4
        "broker h:1 refused the connection: it did not accept the user name 'u' with the password")


def test_a_broker_that_refuses_anonymous_clients_is_told_apart() -> None:
    assert refusal("h:1", "Not authorized", username=None) == (
        "broker h:1 refused the connection: it requires a user name and password and none is configured "
        "(broker's answer: Not authorized); set mqtt.username and mqtt.password_file")


def test_other_refusals_keep_the_broker_s_words() -> None:
    assert refusal("h:1", "Banned", username="u") == "broker h:1 refused the connection: Banned"
    assert refusal("h:1", "Unsupported protocol version", username=None) == (
        'broker h:1 refused the connection: Unsupported protocol version (set mqtt.protocol = "3.1.1" or "auto")')
