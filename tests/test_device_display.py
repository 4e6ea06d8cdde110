"""A device's state in words and the controls a tap may use, read from the shipped docs (gateway/devices/display.py)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.devices.display import Controls, controls, readings
from gateway.devices.docs import DocLibrary

DOCS = DocLibrary.load()


@pytest.mark.parametrize("kind, state, shown", [
    ("zigbee_bulb", {"state": "ON", "brightness": 127, "color_temp": 300}, {"power": "on", "brightness": "50 %"}),
    ("wled_strip", {"on": False, "bri": 255}, {"power": "off", "brightness": "100 %"}),
    ("tasmota_plug", {"power": "OFF", "Heap": 26}, {"power": "off"}),
    ("shelly_switch", {"output": True, "apower": 1200.0}, {"power": "on", "load": "1200 W"}),
    ("zigbee_contact_sensor", {"contact": False, "battery": 90}, {"contact": "open"}),
    ("zigbee_motion_sensor", {"occupancy": True}, {"motion": "detected"}),
    ("zigbee_lock", {"state": "LOCK", "lock_state": "locked"}, {"lock": "locked"}),
    ("zigbee_climate_sensor", {"temperature": 21.37, "humidity": 45}, {"temperature": "21.4 °C", "humidity": "45 %"}),
    ("zigbee_thermostat", {"local_temperature": 19.5, "occupied_heating_setpoint": 21.0, "system_mode": "heat",
                           "running_state": "idle"},
     {"room": "19.5 °C", "target": "21 °C", "mode": "heat", "heating": "no"}),
    ("elgato_light", {"on": 1, "brightness": 40, "temperature": 200}, {"power": "on", "brightness": "40 %",
                                                                       "colour": "5000 K"}),
    ("scpi_psu", {"output": False, "voltage": 5.0, "current": 0.25}, {"power": "off", "voltage": "5 V",
                                                                      "current": "0.25 A"}),
    ("zigbee_bulb", {}, {}),  # nothing reported yet: nothing to show
])
def test_telling_fields_read_as_people_say_them(kind: str, state: dict[str, Any], shown: dict[str, str]) -> None:
    assert {reading.label: reading.value for reading in readings(DOCS.get(kind), state)} == shown


def test_a_tap_switches_what_the_fast_path_switches_and_dims_only_lights() -> None:
    assert controls(DOCS.get("tasmota_dimmer"), {"power": "ON", "dimmer": 30}) == Controls(True, True, True, 30)
    assert controls(DOCS.get("shelly_switch"), {"output": False}) == Controls(True, False, False, None)
    assert controls(DOCS.get("zigbee_bulb"), {}) == Controls(True, None, True, None)
    for kind in ("zigbee_contact_sensor", "zigbee_lock", "scpi_psu", "zigbee_thermostat"):
        assert controls(DOCS.get(kind), {}) == Controls(False, None, False, None)
    assert controls(None, {"power": "ON"}) == Controls(False, None, False, None)
    assert readings(None, {"power": "ON"}) == []
