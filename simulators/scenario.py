"""Scenarios: which simulated devices exist, what they are called and where they are.

A scenario is a TOML file in simulators/scenarios/ (`home`, `lab`) or the generated `large` home:

    name = "home"
    [[devices]]
    id = "kitchen_light"        # stable id; also what the gateway's registry should end up calling it
    kind = "zigbee_bulb"        # a simulator kind, which is also the device doc kind
    name = "Kitchen Light"
    area = "kitchen"
    aliases = ["ceiling light"] # optional
    options = { ... }           # optional, passed to the simulator

`large_home(n)` builds a deterministic home of n devices spread over many rooms, with realistic duplicate names
("Ceiling Light" in every room), for the scale benchmarks and the prompt-retrieval tests.
"""

from __future__ import annotations

import importlib.resources
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DeviceSpec:
    id: str
    kind: str
    name: str
    area: str
    aliases: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass
class Scenario:
    name: str
    devices: list[DeviceSpec]


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.casefold()).strip("_")


def load_scenario(name_or_path: str, devices: int = 1000) -> Scenario:
    """`home`, `lab`, `large` (with `devices` devices), or a path to a scenario TOML file."""
    if name_or_path == "large":
        return Scenario("large", large_home(devices))
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        text = path.read_text(encoding="utf-8")
    else:
        resource = importlib.resources.files("simulators") / "scenarios" / f"{name_or_path}.toml"
        if not resource.is_file():
            raise ValueError(f"no scenario {name_or_path!r}: use home, lab, large, or a path to a .toml file")
        text = resource.read_text(encoding="utf-8")
    data = tomllib.loads(text)
    specs = [DeviceSpec(id=entry["id"], kind=entry["kind"], name=entry["name"], area=entry.get("area", ""),
                        aliases=tuple(entry.get("aliases", [])), options=entry.get("options", {}))
             for entry in data.get("devices", [])]
    duplicates = {spec.id for spec in specs if sum(other.id == spec.id for other in specs) > 1}
    if duplicates:
        raise ValueError(f"scenario {data.get('name', name_or_path)!r}: duplicate ids {sorted(duplicates)}")
    return Scenario(data.get("name", path.stem), specs)


# Rooms of a large building, each with the devices such a room has (kind, name).
ROOM_DEVICES: dict[str, list[tuple[str, str]]] = {
    "kitchen": [("zigbee_bulb", "Ceiling Light"), ("wled_strip", "Counter Lights"), ("shelly_switch", "Coffee Machine"),
                ("tasmota_plug", "Kettle"), ("zigbee_climate_sensor", "Climate Sensor"),
                ("zigbee_motion_sensor", "Motion Sensor"), ("zigbee_contact_sensor", "Window")],
    "living room": [("zigbee_bulb", "Ceiling Light"), ("tasmota_dimmer", "Floor Lamp"), ("wled_strip", "TV Backlight"),
                    ("tasmota_plug", "TV"), ("zigbee_thermostat", "Radiator"),
                    ("zigbee_climate_sensor", "Climate Sensor"), ("zigbee_contact_sensor", "Window")],
    "bedroom": [("zigbee_bulb", "Ceiling Light"), ("tasmota_dimmer", "Bedside Lamp"), ("shelly_switch", "Fan"),
                ("zigbee_thermostat", "Radiator"), ("zigbee_climate_sensor", "Climate Sensor"),
                ("zigbee_contact_sensor", "Window")],
    "office": [("zigbee_bulb", "Ceiling Light"), ("elgato_light", "Key Light"), ("tasmota_dimmer", "Desk Lamp"),
               ("shelly_switch", "Monitor Plug"), ("zigbee_thermostat", "Radiator"),
               ("zigbee_climate_sensor", "Climate Sensor"), ("zigbee_motion_sensor", "Motion Sensor")],
    "lab": [("scpi_psu", "Bench Supply"), ("scpi_dmm", "Multimeter"), ("shelly_switch", "Heater Relay"),
            ("tasmota_plug", "Soldering Station"), ("elgato_light", "Key Light"), ("zigbee_bulb", "Ceiling Light"),
            ("zigbee_climate_sensor", "Climate Sensor")],
    "hallway": [("zigbee_bulb", "Ceiling Light"), ("zigbee_motion_sensor", "Motion Sensor"),
                ("zigbee_lock", "Front Door Lock"), ("zigbee_contact_sensor", "Front Door")],
    "garage": [("zigbee_bulb", "Ceiling Light"), ("shelly_switch", "Door Opener"),
               ("tasmota_plug", "Freezer"), ("zigbee_contact_sensor", "Door"),
               ("zigbee_climate_sensor", "Climate Sensor")],
    "bathroom": [("zigbee_bulb", "Ceiling Light"), ("shelly_switch", "Towel Heater"),
                 ("zigbee_climate_sensor", "Climate Sensor"), ("zigbee_motion_sensor", "Motion Sensor")],
    "meeting room": [("zigbee_bulb", "Ceiling Light"), ("wled_strip", "Wall Lights"), ("tasmota_plug", "Projector"),
                     ("zigbee_thermostat", "Radiator"), ("zigbee_climate_sensor", "Climate Sensor"),
                     ("zigbee_motion_sensor", "Motion Sensor")],
}
# Rooms that exist once, then numbered rooms of each type in turn until the home is big enough.
SINGLE_ROOMS = ["kitchen", "living room", "hallway", "garage", "bathroom"]
NUMBERED_ROOMS = ["bedroom", "office", "lab", "meeting room"]


def large_home(devices: int = 1000) -> list[DeviceSpec]:
    """A deterministic home of exactly `devices` devices."""
    specs: list[DeviceSpec] = []
    rooms = [(room, room) for room in SINGLE_ROOMS]
    number = 0
    while sum(len(ROOM_DEVICES[kind]) for _, kind in rooms) < devices:
        number += 1
        rooms += [(f"{kind} {number}", kind) for kind in NUMBERED_ROOMS]
    for area, room_type in rooms:
        for kind, name in ROOM_DEVICES[room_type]:
            if len(specs) == devices:
                return specs
            full_name = f"{area.title()} {name}"
            specs.append(DeviceSpec(id=slugify(full_name), kind=kind, name=full_name, area=area))
    return specs
