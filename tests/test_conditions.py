"""Automation conditions on payloads and states, and the gateway clock's intervals and times of day."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.clock import Clock, parse_interval, parse_time_of_day
from gateway.conditions import Condition
from gateway.config import ConfigError, load_config


@pytest.mark.parametrize("condition, payload, expected", [
    ("occupancy == true", {"occupancy": True}, True),
    ("occupancy == true", {"occupancy": False}, False),
    ("occupancy == true", {}, False),
    ("temperature > 28 and state != 'OFF'", {"temperature": 29.5, "state": "ON"}, True),
    ("temperature > 28 and state != 'OFF'", {"temperature": 29.5, "state": "OFF"}, False),
    ("temperature > 28", {"temperature": None}, False),  # a comparison that cannot be made is false
    ("temperature > 28", {"temperature": "hot"}, False),
    ("action in ['single', 'double']", {"action": "double"}, True),
    ("not contact", {"contact": False}, True),
    ("update.state == 'available'", {"update": {"state": "available"}}, True),
    ('payload["battery low"] == true', {"battery low": True}, True),
    ("payload == 'ON'", "ON", True),
    ("occupancy == true", "not json", False),
    ("0 < level <= 100", {"level": 100}, True),
    ("level == -1", {"level": -1}, True),
    ("value == null", {}, True),
])
def test_conditions_compare_fields_of_the_payload(condition, payload, expected):
    assert Condition(condition)(payload) is expected


@pytest.mark.parametrize("condition, problem", [
    ("__import__('os').system('x')", "is not allowed"),
    ("occupancy = true", "is not valid"),
    ("state is None", "not a comparison it supports"),
    ("temperature + 1 > 3", "is not allowed"),
    ("payload[key] == 1", 'quoted name'),
    ("(lambda: 1)()", "is not allowed"),
    ("not " * 3000 + "x", "nests more than 32 levels deep"),  # past the parser's stack
    ("x == " + "[" * 40 + "]" * 40, "nests more than 32 levels deep"),  # past ours
    ("f(" + "-" * 500 + "x)", "nests more than 32 levels deep"),
])
def test_anything_but_a_comparison_is_refused_when_the_config_loads(condition, problem):
    with pytest.raises(ValueError, match=problem):
        Condition(condition)


def test_automation_config_errors_name_the_field(tmp_path):
    path = tmp_path / "pyuse.toml"
    path.write_text('[[automations]]\nname = "Bad Name"\naction = "x"\ntrigger = { mqtt = "a/#/b" }\n'
                    '[[automations]]\nname = "two"\naction = "x"\nskill = "y"\ntrigger = { every = "5 minutes" }\n'
                    '[[automations]]\nname = "three"\nskill = "y"\ntrigger = { at = "25:00", mqtt = "a" }\n')
    with pytest.raises(ConfigError) as error:
        load_config(path, env={})
    text = "\n".join(error.value.problems)
    assert "automations[0].name: expected lowercase letters" in text
    assert "automations[0].trigger: mqtt: 'a/#/b' is not a topic filter" in text
    assert "automations[1].trigger: '5 minutes' is not an interval" in text
    assert "exactly one of mqtt, device, every, at; this one has mqtt, at" in text


def test_intervals_and_times_of_day():
    assert parse_interval("30s") == 30 and parse_interval("5m") == 300 and parse_interval("1.5h") == 5400
    assert parse_time_of_day("07:30") == (7, 30)
    for bad in ("0s", "5", "m5"):
        with pytest.raises(ValueError, match="expected a number and a unit"):
            parse_interval(bad)
    with pytest.raises(ValueError, match="HH:MM"):
        parse_time_of_day("7.30")


async def test_a_fast_clock_runs_sleeps_and_time_faster():
    clock = Clock(speed=100.0)
    started, real = clock.now(), time.monotonic()
    await clock.sleep(20)  # 0.2 s of real time
    assert time.monotonic() - real >= 0.19
    assert clock.now() - started >= 19
    assert 0 < clock.until(*parse_time_of_day("00:00")) <= 86400
    await asyncio.sleep(0)
