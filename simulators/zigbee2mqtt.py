"""A Zigbee2MQTT 2.x bridge with Zigbee devices behind it, on one MQTT connection as the real bridge holds.

The bridge publishes retained `bridge/state` (`{"state":"online"}`, will `offline`), `bridge/info`,
`bridge/devices` (with `definition.exposes` and access bits), `bridge/groups`, per-device JSON availability and
Home Assistant MQTT discovery configs shaped as Zigbee2MQTT's homeassistant extension shapes them. It accepts
`<name>/set` (JSON, or a bare state word), `<name>/set/<attr>`, `<name>/get`, and `bridge/request/<cmd>` with
responses on `bridge/response/<cmd>` (`status`, `data`, `error`, `transaction`). Errors go to `bridge/logging`.

Each Zigbee device is a Simulator of its own (its own id, state and faults for grading and steering); the
bridge serves them, and lists them as its children. Sensor values evolve over simulated time: a Room warms
while a thermostat heats it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import random
import re
from abc import abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiomqtt

from simulators.base import SLOW_REPLY_S, Fault, Room, Simulator, cancel_and_wait
from simulators.mqtt_session import MqttSession
from simulators.tasmota import garble

VERSION = "2.1.3"
ACCESS_STATE, ACCESS_SET, ACCESS_GET = 1, 2, 4
log = logging.getLogger(__name__)
TICK_S = 30.0  # simulated seconds between physics steps
STATE_WORDS = {"on", "off", "toggle", "open", "close", "stop", "lock", "unlock"}


class ConverterError(Exception):
    """A /set or /get the device cannot carry out; Zigbee2MQTT logs it to bridge/logging."""


def _compact(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)


def _ieee(seed: str) -> str:
    return "0x" + hashlib.sha1(seed.encode()).hexdigest()[:16]


# --- exposes (https://www.zigbee2mqtt.io/guide/usage/exposes.html) -------------------------------------------------

def binary(name: str, label: str, access: int, value_on: Any, value_off: Any, description: str,
           value_toggle: Any = None) -> dict[str, Any]:
    expose = {"type": "binary", "name": name, "property": name, "label": label, "access": access,
              "value_on": value_on, "value_off": value_off, "description": description}
    if value_toggle is not None:
        expose["value_toggle"] = value_toggle
    return expose


def numeric(name: str, label: str, access: int, description: str, unit: str | None = None,
            value_min: float | None = None, value_max: float | None = None, value_step: float | None = None,
            category: str | None = None, **extra: Any) -> dict[str, Any]:
    expose: dict[str, Any] = {"type": "numeric", "name": name, "property": name, "label": label, "access": access,
                              "description": description}
    for key, value in (("unit", unit), ("value_min", value_min), ("value_max", value_max),
                       ("value_step", value_step), ("category", category)):
        if value is not None:
            expose[key] = value
    return expose | extra


def enum(name: str, label: str, access: int, values: list[str], description: str,
         category: str | None = None) -> dict[str, Any]:
    expose = {"type": "enum", "name": name, "property": name, "label": label, "access": access, "values": values,
              "description": description}
    if category:
        expose["category"] = category
    return expose


def _preset(name: str, value: float, description: str) -> dict[str, Any]:
    return {"name": name, "value": value, "description": description}


def battery() -> dict[str, Any]:
    return numeric("battery", "Battery", ACCESS_STATE, "Remaining battery in %", "%", 0, 100,
                   category="diagnostic")


def linkquality() -> dict[str, Any]:
    return numeric("linkquality", "Linkquality", ACCESS_STATE, "Link quality (signal strength)", "lqi", 0, 255,
                   category="diagnostic")


def _features(exposes: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for expose in exposes:
        yield expose
        yield from _features(expose.get("features", []))


# --- devices -------------------------------------------------------------------------------------------------------

class ZigbeeDevice(Simulator):
    """A device paired with a Zigbee2MQTT bridge. Subclasses give the definition, exposes and converters."""

    model = ""
    vendor = ""
    description = ""
    model_id = ""
    device_type = "EndDevice"
    power_source = "Battery"
    report_every = 300.0  # simulated seconds between periodic reports

    def __init__(self, device_id: str, name: str = "", area: str = "", retain: bool = False) -> None:
        super().__init__(device_id, name, area)
        self.ieee = _ieee(device_id)
        self.network_address = int(self.ieee[-4:], 16)
        self.friendly_name = name or device_id
        self.values: dict[str, Any] = {"linkquality": 156}
        self.options: dict[str, Any] = {"retain": retain}  # Zigbee2MQTT's per-device retain option
        self.bridge: Zigbee2MqttBridge | None = None
        self._reported_at = 0.0

    @abstractmethod
    def exposes(self) -> list[dict[str, Any]]:
        """The device's capabilities in Zigbee2MQTT's exposes format."""

    def definition(self) -> dict[str, Any]:
        return {"source": "native", "model": self.model, "vendor": self.vendor, "description": self.description,
                "exposes": self.exposes(), "supports_ota": False, "options": [], "icon": None}

    def info(self) -> dict[str, Any]:
        """This device's entry in bridge/devices."""
        return {"ieee_address": self.ieee, "type": self.device_type, "network_address": self.network_address,
                "supported": True, "friendly_name": self.friendly_name, "disabled": False, "description": None,
                "definition": self.definition(), "power_source": self.power_source, "software_build_id": None,
                "date_code": "20230101", "model_id": self.model_id, "interviewing": False,
                "interview_completed": True, "interview_state": "SUCCESSFUL", "manufacturer": self.vendor,
                "endpoints": {"1": {"name": None, "scenes": [], "bindings": [], "configured_reportings": [],
                                    "clusters": {"input": ["genBasic"], "output": []}}}}

    def payload(self) -> dict[str, Any]:
        """What the bridge publishes on zigbee2mqtt/<friendly_name>."""
        return dict(self.values)

    def state(self) -> dict[str, Any]:
        return {"online": self.fault != "offline" and self.bridge is not None and self.bridge.online,
                "fault": self.fault, "friendly_name": self.friendly_name, **self.values}

    def address(self) -> str:
        base = self.bridge.base_topic if self.bridge else "zigbee2mqtt"
        return f"{base}/{self.friendly_name}"

    def settable(self) -> dict[str, type]:
        """Readings the admin API may set: every state property that /set cannot change."""
        kinds = {"numeric": float, "binary": bool}
        return {f["property"]: kinds[f["type"]] for f in _features(self.exposes())
                if f["type"] in kinds and f.get("access", 0) & ACCESS_STATE and not f.get("access", 0) & ACCESS_SET
                and isinstance(f.get("value_on", True), bool)}

    def set_value(self, key: str, value: Any) -> None:
        self.values[key] = value
        self.report()

    def set_fault(self, fault: Fault) -> None:
        was = self.fault
        super().set_fault(fault)
        if self.bridge and (was == "offline") != (fault == "offline"):
            self.bridge.spawn(self.bridge.publish_availability(self))

    def report(self) -> None:
        """The device reported its attributes: the bridge publishes its state."""
        if self.bridge:
            self.bridge.spawn(self.bridge.publish_state(self))

    def set(self, key: str, value: Any) -> dict[str, Any]:
        """Carry out one attribute of a /set; return the state it changes. Raise ConverterError otherwise."""
        raise ConverterError(f"No converter available for '{key}' ({_compact(value)})")

    def get(self, key: str) -> None:
        feature = next((f for f in _features(self.exposes()) if f.get("property") == key), None)
        if feature is None or not feature.get("access", 0) & ACCESS_GET:
            raise ConverterError(f"No converter available for '{key}' (\"\")")

    def tick(self, now: float) -> bool:
        """Advance to simulated time `now`; True when the device reports (periodically or on a change)."""
        if now - self._reported_at >= self.report_every:
            self._reported_at = now
            return True
        return False

    async def serve(self) -> None:
        """Power the device on: if its bridge runs, it announces availability and state."""
        if self.bridge and self.bridge.online:
            await self.bridge.publish_availability(self)
            await self.bridge.publish_state(self)

    async def stop(self) -> None:
        """Power the device off: the bridge marks it offline."""
        if self.bridge and self.bridge.online:
            await self.bridge.publish_availability(self, online=False)


class ClimateSensor(ZigbeeDevice):
    kind = "zigbee_climate_sensor"
    model, vendor, model_id = "WSDCGQ11LM", "Aqara", "lumi.weather"
    description = "Temperature, humidity and pressure sensor"

    def __init__(self, device_id: str, name: str = "", area: str = "", room: Room | None = None,
                 humidity: float = 45.0, retain: bool = False) -> None:
        super().__init__(device_id, name, area, retain)
        self.room = room or Room()
        self._drift = random.Random(self.ieee)
        self.values.update(temperature=round(self.room.temperature, 2), humidity=humidity, pressure=1013.2,
                           battery=100, voltage=3005)

    def exposes(self) -> list[dict[str, Any]]:
        return [numeric("temperature", "Temperature", ACCESS_STATE, "Measured temperature value", "°C"),
                numeric("humidity", "Humidity", ACCESS_STATE, "Measured relative humidity", "%"),
                numeric("pressure", "Pressure", ACCESS_STATE, "The measured atmospheric pressure", "hPa"),
                battery(), numeric("voltage", "Voltage", ACCESS_STATE, "Voltage of the battery in millivolts",
                                   "mV", category="diagnostic"), linkquality()]

    def set_value(self, key: str, value: Any) -> None:
        if key == "temperature":
            self.room.temperature = value
        super().set_value(key, value)

    def tick(self, now: float) -> bool:
        self.values["temperature"] = round(self.room.advance(now), 2)
        humidity = self.values["humidity"] + self._drift.uniform(-0.3, 0.3)
        self.values["humidity"] = round(min(max(humidity, 20.0), 80.0), 2)
        return super().tick(now)


class MotionSensor(ZigbeeDevice):
    kind = "zigbee_motion_sensor"
    model, vendor, model_id = "RTCGQ11LM", "Aqara", "lumi.sensor_motion.aq2"
    description = "Motion sensor"

    def __init__(self, device_id: str, name: str = "", area: str = "", occupancy_timeout: float = 90.0,
                 retain: bool = False) -> None:
        super().__init__(device_id, name, area, retain)
        self.options["occupancy_timeout"] = occupancy_timeout
        self.values.update(occupancy=False, illuminance=120, battery=100, voltage=3045)
        self._motion_at: float | None = None

    def exposes(self) -> list[dict[str, Any]]:
        return [binary("occupancy", "Occupancy", ACCESS_STATE, True, False,
                       "Indicates whether the device detected occupancy"),
                numeric("illuminance", "Illuminance", ACCESS_STATE, "Measured illuminance", "lx"),
                battery(), numeric("voltage", "Voltage", ACCESS_STATE, "Voltage of the battery in millivolts",
                                   "mV", category="diagnostic"), linkquality()]

    def set_value(self, key: str, value: Any) -> None:
        if key == "occupancy" and value:  # someone walked by; it clears after occupancy_timeout
            self._motion_at = self.context.clock.now()
        super().set_value(key, value)

    def tick(self, now: float) -> bool:
        if self._motion_at is not None and now - self._motion_at >= self.options["occupancy_timeout"]:
            self._motion_at = None
            self.values["occupancy"] = False
            return True
        return super().tick(now)


class ContactSensor(ZigbeeDevice):
    kind = "zigbee_contact_sensor"
    model, vendor, model_id = "MCCGQ11LM", "Aqara", "lumi.sensor_magnet.aq2"
    description = "Door and window sensor"

    def __init__(self, device_id: str, name: str = "", area: str = "", retain: bool = False) -> None:
        super().__init__(device_id, name, area, retain)
        self.values.update(contact=True, battery=100, voltage=3025)

    def exposes(self) -> list[dict[str, Any]]:
        return [binary("contact", "Contact", ACCESS_STATE, False, True,
                       "Indicates if the contact is closed (= true) or open (= false)"),
                battery(), numeric("voltage", "Voltage", ACCESS_STATE, "Voltage of the battery in millivolts",
                                   "mV", category="diagnostic"), linkquality()]


class Bulb(ZigbeeDevice):
    kind = "zigbee_bulb"
    model, vendor, model_id = "9290022166", "Philips", "LCA001"
    description = "Hue white and color ambiance E26/E27"
    device_type, power_source = "Router", "Mains (single phase)"
    report_every = 3600.0

    def __init__(self, device_id: str, name: str = "", area: str = "") -> None:
        super().__init__(device_id, name, area)
        self.values.update(state="OFF", brightness=254, color_temp=366, color_mode="color_temp",
                           color={"x": 0.4573, "y": 0.41}, power_on_behavior="on")

    def exposes(self) -> list[dict[str, Any]]:
        return [
            {"type": "light", "features": [
                binary("state", "State", 7, "ON", "OFF", "On/off state of this light", value_toggle="TOGGLE"),
                numeric("brightness", "Brightness", 7, "Brightness of this light", value_min=0, value_max=254),
                numeric("color_temp", "Color temp", 7, "Color temperature of this bulb", "mired", 153, 500,
                        presets=[_preset("coolest", 153, "Coolest temperature supported"),
                                 _preset("cool", 250, "Cool temperature (250 mireds / 4000 Kelvin)"),
                                 _preset("neutral", 370, "Neutral temperature (370 mireds / 2700 Kelvin)"),
                                 _preset("warm", 454, "Warm temperature (454 mireds / 2200 Kelvin)"),
                                 _preset("warmest", 500, "Warmest temperature supported")]),
                {"type": "composite", "name": "color_xy", "property": "color", "label": "Color (X/Y)", "access": 7,
                 "description": "Color of this light in the CIE 1931 color space (x/y)",
                 "features": [numeric("x", "X", 7, ""), numeric("y", "Y", 7, "")]},
            ]},
            enum("effect", "Effect", ACCESS_SET, ["blink", "breathe", "okay", "channel_change", "finish_effect",
                                                  "stop_effect"], "Triggers an effect on the light"),
            enum("power_on_behavior", "Power-on behavior", 7, ["off", "on", "toggle", "previous"],
                 "Controls the behavior when the device is powered on after power loss", category="config"),
            linkquality(),
        ]

    def set(self, key: str, value: Any) -> dict[str, Any]:
        values = self.values
        if key == "state":
            word = _choice(value, ["toggle", "off", "on"])
            on = values["state"] == "OFF" if word == "toggle" else word == "on"
            return {"state": "ON" if on else "OFF"}
        if key in ("brightness", "color_temp") and not isinstance(value, (int, float, str)):
            raise ConverterError(f"{key} must be a number, got {_compact(value)}")
        if key == "brightness":
            level = min(max(round(_number(value)), 0), 254)
            return {"brightness": level, "state": "ON"} if level else {"state": "OFF"}
        if key == "color_temp":
            presets = {"coolest": 153, "cool": 250, "neutral": 370, "warm": 454, "warmest": 500}
            mired = presets[value] if value in presets else min(max(round(_number(value)), 153), 500)
            return {"color_temp": mired, "color_mode": "color_temp", "color": _mired_to_xy(mired)}
        if key == "color":
            return {"color": _to_xy(value), "color_mode": "xy"}
        if key == "effect":
            _choice(value, ["blink", "breathe", "okay", "channel_change", "finish_effect", "stop_effect"])
            return {}
        if key == "power_on_behavior":
            return {"power_on_behavior": _choice(value, ["off", "on", "toggle", "previous"])}
        if key == "transition":
            return {}
        return super().set(key, value)


class DoorLock(ZigbeeDevice):
    kind = "zigbee_lock"
    model, vendor, model_id = "YRD226HA2619", "Yale", "YRD226 TSDB"
    description = "Assure lock"

    def __init__(self, device_id: str, name: str = "", area: str = "") -> None:
        super().__init__(device_id, name, area)
        self.values.update(state="LOCK", lock_state="locked", battery=90)

    def exposes(self) -> list[dict[str, Any]]:
        return [{"type": "lock", "features": [
                    binary("state", "State", 7, "LOCK", "UNLOCK", "State of the lock"),
                    enum("lock_state", "Lock state", ACCESS_STATE, ["not_fully_locked", "locked", "unlocked"],
                         "Actual state of the lock")]},
                battery(), linkquality()]

    def set(self, key: str, value: Any) -> dict[str, Any]:
        if key == "state":
            locked = _choice(value, ["lock", "unlock"]) == "lock"
            return {"state": "LOCK" if locked else "UNLOCK", "lock_state": "locked" if locked else "unlocked"}
        return super().set(key, value)


class Thermostat(ZigbeeDevice):
    """A radiator thermostat that heats its Room while the room is below the setpoint (0.5 °C hysteresis)."""

    kind = "zigbee_thermostat"
    model, vendor, model_id = "SPZB0001", "Eurotronic", "SPZB0001"
    description = "Spirit Zigbee wireless heater thermostat"
    report_every = 600.0
    heating_rate = 3.0  # °C per hour the radiator adds to the room

    def __init__(self, device_id: str, name: str = "", area: str = "", room: Room | None = None,
                 setpoint: float = 21.0) -> None:
        super().__init__(device_id, name, area)
        self.room = room or Room()
        self.room.heaters.append(lambda: self.heating_rate if self.values["running_state"] == "heat" else 0.0)
        self.values.update(occupied_heating_setpoint=setpoint, local_temperature=round(self.room.temperature, 2),
                           system_mode="heat", running_state="idle", pi_heating_demand=0, battery=100)

    def exposes(self) -> list[dict[str, Any]]:
        return [{"type": "climate", "features": [
                    numeric("occupied_heating_setpoint", "Occupied heating setpoint", 7,
                            "Temperature setpoint", "°C", 5, 30, 0.5),
                    numeric("local_temperature", "Local temperature", ACCESS_STATE | ACCESS_GET,
                            "Current temperature measured on the device", "°C"),
                    enum("system_mode", "System mode", 7, ["off", "auto", "heat"], "Mode of this device"),
                    enum("running_state", "Running state", ACCESS_STATE | ACCESS_GET, ["idle", "heat"],
                         "The current running state")]},
                numeric("pi_heating_demand", "PI heating demand", ACCESS_STATE | ACCESS_GET,
                        "Position of the valve (= demanded heat) where 0% is fully closed and 100% is fully open",
                        "%", 0, 100, category="diagnostic"),
                battery(), linkquality()]

    def set(self, key: str, value: Any) -> dict[str, Any]:
        if key == "occupied_heating_setpoint":
            setpoint = min(max(round(_number(value) * 2) / 2, 5.0), 30.0)
            return {"occupied_heating_setpoint": setpoint}
        if key == "system_mode":
            return {"system_mode": _choice(value, ["off", "auto", "heat"])}
        return super().set(key, value)

    def set_value(self, key: str, value: Any) -> None:
        if key == "local_temperature":
            self.room.temperature = value
        super().set_value(key, value)

    def tick(self, now: float) -> bool:
        temperature = self.room.advance(now)
        self.values["local_temperature"] = round(temperature, 2)
        setpoint = self.values["occupied_heating_setpoint"]
        running = self.values["running_state"] == "heat"
        wants_heat = self.values["system_mode"] != "off" and (
            temperature < setpoint + 0.2 if running else temperature < setpoint - 0.3)
        changed = wants_heat != running
        self.values["running_state"] = "heat" if wants_heat else "idle"
        self.values["pi_heating_demand"] = 100 if wants_heat else 0
        return super().tick(now) or changed


def _choice(value: Any, allowed: list[str]) -> str:
    if isinstance(value, str) and value.lower() in allowed:
        return value.lower()
    raise ConverterError(f"'{value}' not allowed, choose between: {','.join(allowed)}")


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConverterError(f"'{value}' is not a number") from None
    if not math.isfinite(number):
        raise ConverterError(f"'{value}' is not a number")
    return number


def _to_xy(color: Any) -> dict[str, float]:
    """Zigbee2MQTT accepts {"x","y"}, {"hex"} or {"r","g","b"}; the bulb reports x/y."""
    if isinstance(color, dict):
        if "x" in color and "y" in color:
            x, y = _number(color["x"]), _number(color["y"])
            if 0 <= x <= 1 and 0 <= y <= 1:
                return {"x": round(x, 4), "y": round(y, 4)}
        if isinstance(color.get("hex"), str) and re.fullmatch(r"#?[0-9a-fA-F]{6}", color["hex"]):
            code = color["hex"].lstrip("#")
            return _rgb_to_xy(int(code[0:2], 16), int(code[2:4], 16), int(code[4:6], 16))
        if all(k in color for k in "rgb"):
            r, g, b = (_number(color[k]) for k in "rgb")
            if all(0 <= c <= 255 for c in (r, g, b)):
                return _rgb_to_xy(r, g, b)
    raise ConverterError(f"Value '{_compact(color)}' is not a valid color")


def _rgb_to_xy(r: float, g: float, b: float) -> dict[str, float]:
    def linear(c: float) -> float:
        c /= 255
        return ((c + 0.055) / 1.055) ** 2.4 if c > 0.04045 else c / 12.92

    red, green, blue = linear(r), linear(g), linear(b)
    x = red * 0.4124 + green * 0.3576 + blue * 0.1805
    y = red * 0.2126 + green * 0.7152 + blue * 0.0722
    z = red * 0.0193 + green * 0.1192 + blue * 0.9505
    total = x + y + z
    return {"x": round(x / total, 4), "y": round(y / total, 4)} if total else {"x": 0.3127, "y": 0.329}


def _mired_to_xy(mired: int) -> dict[str, float]:
    """Planckian locus approximation (Kim et al.), good enough for a reported colour."""
    kelvin = 1_000_000 / mired
    x = (-3.0258469e9 / kelvin ** 3 + 2.1070379e6 / kelvin ** 2 + 0.2226347e3 / kelvin + 0.240390
         if kelvin > 4000 else
         -0.2661239e9 / kelvin ** 3 - 0.2343589e6 / kelvin ** 2 + 0.8776956e3 / kelvin + 0.179910)
    y = -1.1063814 * x ** 3 - 1.34811020 * x ** 2 + 2.18555832 * x - 0.20219683
    return {"x": round(x, 4), "y": round(y, 4)}


# --- Home Assistant discovery, as Zigbee2MQTT's homeassistant extension builds it ------------------------------------

BINARY_CLASSES = {"occupancy": "occupancy", "contact": "door", "battery_low": "battery"}
NUMERIC_CLASSES = {"temperature": {"device_class": "temperature", "state_class": "measurement"},
                   "local_temperature": {"device_class": "temperature", "state_class": "measurement"},
                   "humidity": {"device_class": "humidity", "state_class": "measurement"},
                   "pressure": {"device_class": "atmospheric_pressure", "state_class": "measurement"},
                   "illuminance": {"device_class": "illuminance", "state_class": "measurement"},
                   "battery": {"device_class": "battery", "state_class": "measurement"},
                   "voltage": {"device_class": "voltage", "entity_category": "diagnostic",
                               "state_class": "measurement", "enabled_by_default": False},
                   "linkquality": {"enabled_by_default": False, "entity_category": "diagnostic",
                                   "icon": "mdi:signal", "state_class": "measurement"}}


def discovery_entries(expose: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(component, object_id, partial payload) for one expose; topics are filled in by the bridge."""
    kind = expose["type"]
    features = {f["name"]: f for f in expose.get("features", [])}
    if kind == "light":
        modes = (["xy"] if "color_xy" in features else []) + (["color_temp"] if "color_temp" in features else [])
        payload: dict[str, Any] = {"name": None, "brightness": "brightness" in features, "schema": "json",
                                   "command_topic": True, "brightness_scale": 254, "supported_color_modes": modes}
        if "color_temp" in features:
            payload.update(min_mireds=features["color_temp"]["value_min"],
                           max_mireds=features["color_temp"]["value_max"])
        return [("light", "light", payload)]
    if kind == "lock":
        state = features["state"]
        return [("lock", "lock", {"name": None, "command_topic": True, "value_template": "{{ value_json.state }}",
                                  "state_locked": state["value_on"], "state_unlocked": state["value_off"]})]
    if kind == "climate":
        setpoint, temperature = features["occupied_heating_setpoint"], features["local_temperature"]
        payload = {"name": None, "state_topic": False, "temperature_unit": "C", "temp_step": setpoint["value_step"],
                   "min_temp": str(setpoint["value_min"]), "max_temp": str(setpoint["value_max"]),
                   "current_temperature_topic": True,
                   "current_temperature_template": f"{{{{ value_json.{temperature['property']} }}}}",
                   "temperature_command_topic": setpoint["name"],
                   "temperature_state_template": f"{{{{ value_json.{setpoint['property']} }}}}",
                   "temperature_state_topic": True}
        if "system_mode" in features:
            payload.update(mode_state_topic=True, mode_state_template="{{ value_json.system_mode }}",
                           modes=features["system_mode"]["values"], mode_command_topic=True)
        if "running_state" in features:
            payload.update(action_topic=True, action_template=(
                "{% set values = {None:None,'idle':'idle','heat':'heating','cool':'cooling','fan_only':'fan'} %}"
                "{{ values[value_json.running_state] }}"))
        return [("climate", "climate", payload)]
    name, prop, access = expose.get("name"), expose.get("property"), expose.get("access", 0)
    template = f"{{{{ value_json.{prop} }}}}"
    if kind == "binary" and not access & ACCESS_SET:
        payload = {"name": expose["label"], "value_template": template, "payload_on": expose["value_on"],
                   "payload_off": expose["value_off"]}
        if name in BINARY_CLASSES:
            payload["device_class"] = BINARY_CLASSES[name]
        return [("binary_sensor", name, payload)]
    if kind == "numeric":
        payload = {"name": expose["label"], "value_template": template, "enabled_by_default": not access & ACCESS_SET}
        if "unit" in expose:
            payload["unit_of_measurement"] = expose["unit"]
        payload.update(NUMERIC_CLASSES.get(name, {}))
        return [("sensor", name, payload)]
    if kind == "enum":
        entries: list[tuple[str, str, dict[str, Any]]] = []
        if access & ACCESS_STATE:
            entries.append(("sensor", prop, {"name": expose["label"], "value_template": template,
                                             "enabled_by_default": not access & ACCESS_SET}))
        if access & ACCESS_SET:
            select = {"name": expose["label"], "state_topic": bool(access & ACCESS_STATE), "command_topic": True,
                      "command_topic_postfix": prop, "options": expose["values"],
                      "enabled_by_default": len(expose["values"]) != 1}
            if access & ACCESS_STATE:
                select["value_template"] = template
            entries.append(("select", prop, select))
        return entries
    return []


# --- the bridge ----------------------------------------------------------------------------------------------------

@dataclass
class Group:
    id: int
    friendly_name: str
    members: list[ZigbeeDevice]


class Zigbee2MqttBridge(Simulator):
    kind = "zigbee2mqtt_bridge"

    def __init__(self, device_id: str = "zigbee2mqtt", devices: Iterable[ZigbeeDevice] = (),
                 broker_host: str | None = None, broker_port: int | None = None, base_topic: str = "zigbee2mqtt",
                 homeassistant: bool = True, groups: Iterable[Group] = (), name: str = "", area: str = "") -> None:
        super().__init__(device_id, name or "Zigbee2MQTT", area)
        self.broker_host, self.broker_port = broker_host, broker_port
        self.base_topic = base_topic
        self.homeassistant = homeassistant
        self.coordinator_ieee = _ieee(f"{device_id}/coordinator")
        self.devices: list[ZigbeeDevice] = []
        self.groups = list(groups)
        self.permit_join_end: float | None = None
        self._session: MqttSession | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._discovered: dict[str, list[str]] = {}  # ieee -> discovery topics
        for device in devices:
            self.add(device)

    def add(self, device: ZigbeeDevice) -> None:
        device.bridge = self
        self.devices.append(device)

    @property
    def online(self) -> bool:
        return self._session is not None and self._session.connected.is_set()

    @property
    def permit_join(self) -> bool:
        return self.permit_join_end is not None and self.context.clock.now() < self.permit_join_end

    def state(self) -> dict[str, Any]:
        return {"online": self.online, "fault": self.fault, "permit_join": self.permit_join,
                "devices": [device.friendly_name for device in self.devices]}

    def address(self) -> str:
        host, port = self._broker()
        return f"mqtt://{host}:{port} {self.base_topic}/#"

    def children(self) -> list[Simulator]:
        return list(self.devices)

    def resolve(self, name: str) -> ZigbeeDevice | None:
        return next((d for d in self.devices if name in (d.friendly_name, d.ieee)), None)

    # --- lifecycle -----------------------------------------------------------------------------------------------

    def _broker(self) -> tuple[str, int]:
        port = self.broker_port or self.context.mqtt_port
        if port is None:
            raise ValueError(f"{self.id}: no MQTT broker (pass broker_port or a SimContext with mqtt_port)")
        return self.broker_host or self.context.mqtt_host, port

    async def serve(self) -> None:
        for device in self.devices:
            device.context = self.context
        host, port = self._broker()
        will = aiomqtt.Will(f"{self.base_topic}/bridge/state", _compact({"state": "offline"}), qos=1, retain=True)
        self._session = MqttSession(host, port, f"zigbee2mqtt_{self.coordinator_ieee[-8:]}", will,
                                    [f"{self.base_topic}/#", "homeassistant/status"], self._announce, self._receive,
                                    self.context.mqtt_connects)
        await self._session.start()
        self._ticker = asyncio.create_task(self._tick_periodically())

    async def stop(self) -> None:
        await cancel_and_wait(self._ticker)
        await self.cancel_tasks()
        if self._session:
            await self._session.stop(farewell=[(f"{self.base_topic}/bridge/state",
                                                _compact({"state": "offline"}), True)])
            self._session = None

    def set_fault(self, fault: Fault) -> None:
        super().set_fault(fault)
        if self._session:
            self._session.drop() if fault == "offline" else self._session.resume()

    async def _announce(self) -> None:
        """What Zigbee2MQTT publishes on start: bridge state and inventory, discovery, availability, states."""
        await self._publish("bridge/state", {"state": "online"}, retain=True)
        await self.publish_info()
        await self.publish_devices()
        await self.publish_groups()
        if self.homeassistant:
            for device in self.devices:
                await self.publish_discovery(device)
        for device in self.devices:
            await self.publish_availability(device)
            await self.publish_state(device)

    async def _tick_periodically(self) -> None:
        while True:
            await self.context.clock.sleep(TICK_S)
            now = self.context.clock.now()
            for device in list(self.devices):
                try:
                    reports = device.tick(now)
                except Exception:  # one device's defect must not stop the others' clocks; the log shows it
                    log.exception("%s: tick failed", device.id)
                    continue
                if reports and device.fault != "offline":
                    await self.publish_state(device)
            if self.permit_join_end is not None and not self.permit_join:
                self.permit_join_end = None
                await self.publish_info()

    # --- publishing ----------------------------------------------------------------------------------------------

    async def _publish(self, topic: str, payload: Any, retain: bool = False, qos: int = 0,
                       garbled: bool = True) -> None:
        if self._session is None:
            return
        text = payload if isinstance(payload, str) else _compact(payload)
        data: str | bytes = garble(text) if garbled and self.fault == "garbage" and text else text
        await self._session.publish(f"{self.base_topic}/{topic}", data, qos=qos, retain=retain)

    async def log(self, level: str, message: str) -> None:
        await self._publish("bridge/logging", {"level": level, "message": message, "namespace": "z2m"})

    async def publish_info(self) -> None:
        end = int(self.permit_join_end * 1000) if self.permit_join else None
        await self._publish("bridge/info", {
            "version": VERSION, "commit": "b8a5a4e", "zigbee_herdsman_converters": {"version": "23.1.1"},
            "zigbee_herdsman": {"version": "3.2.5"},
            "coordinator": {"ieee_address": self.coordinator_ieee, "type": "zStack3x0",
                            "meta": {"revision": 20230507, "transportrev": 2, "product": 1, "majorrel": 2,
                                     "minorrel": 7, "maintrel": 1}},
            "network": {"pan_id": 6754, "extended_pan_id": "0xdddddddddddddddd", "channel": 11},
            "log_level": "info", "permit_join": self.permit_join, "permit_join_end": end,
            "restart_required": False,
            "config": {"homeassistant": {"enabled": self.homeassistant, "discovery_topic": "homeassistant"},
                       "mqtt": {"base_topic": self.base_topic}, "availability": {"enabled": True},
                       "advanced": {"log_level": "info", "last_seen": "disable"}},
            "config_schema": {}}, retain=True)

    async def publish_devices(self) -> None:
        coordinator = {"ieee_address": self.coordinator_ieee, "type": "Coordinator", "network_address": 0,
                       "supported": True, "friendly_name": "Coordinator", "disabled": False, "description": None,
                       "definition": None, "power_source": None, "software_build_id": None, "date_code": None,
                       "model_id": None, "interviewing": False, "interview_completed": True,
                       "interview_state": "SUCCESSFUL", "manufacturer": None,
                       "endpoints": {"1": {"name": None, "scenes": [], "bindings": [], "configured_reportings": [],
                                           "clusters": {"input": [], "output": []}}}}
        await self._publish("bridge/devices", [coordinator] + [d.info() for d in self.devices], retain=True)

    async def publish_groups(self) -> None:
        await self._publish("bridge/groups", [
            {"id": g.id, "friendly_name": g.friendly_name, "description": None, "scenes": [],
             "members": [{"ieee_address": m.ieee, "endpoint": 1} for m in g.members]} for g in self.groups],
            retain=True)

    async def publish_availability(self, device: ZigbeeDevice, online: bool | None = None) -> None:
        up = device.fault != "offline" if online is None else online
        await self._publish(f"{device.friendly_name}/availability", {"state": "online" if up else "offline"},
                            retain=True, garbled=False)

    async def publish_state(self, device: ZigbeeDevice) -> None:
        if device.fault == "slow":
            await asyncio.sleep(SLOW_REPLY_S)
        payload = _compact(device.payload())
        if device.fault == "garbage":
            payload = garble(payload).decode("utf-8", "replace")
        await self._publish(device.friendly_name, payload, retain=bool(device.options.get("retain", False)))

    def _device_payload(self, device: ZigbeeDevice) -> dict[str, Any]:
        return {"identifiers": [f"zigbee2mqtt_{device.ieee}"], "name": device.friendly_name,
                "model": f"{device.description} ({device.model})", "manufacturer": device.vendor,
                "via_device": f"zigbee2mqtt_bridge_{self.coordinator_ieee}"}

    def _origin(self) -> dict[str, str]:
        return {"name": "Zigbee2MQTT", "sw": VERSION, "url": "https://www.zigbee2mqtt.io"}

    async def publish_discovery(self, device: ZigbeeDevice) -> None:
        base = f"{self.base_topic}/{device.friendly_name}"
        topics = []
        for expose in device.exposes():
            for component, object_id, partial in discovery_entries(expose):
                payload = dict(partial)
                postfix = payload.pop("command_topic_postfix", None)
                command_topic = f"{base}/set" + (f"/{postfix}" if postfix else "")
                if payload.pop("state_topic", True):
                    payload["state_topic"] = base
                for key, suffix in (("command_topic", ""), ("mode_command_topic", "/system_mode")):
                    if payload.get(key) is True:
                        payload[key] = command_topic if key == "command_topic" else f"{base}/set{suffix}"
                for key in ("current_temperature_topic", "temperature_state_topic", "mode_state_topic",
                            "action_topic"):
                    if payload.get(key) is True:
                        payload[key] = base
                if isinstance(payload.get("temperature_command_topic"), str):
                    payload["temperature_command_topic"] = f"{base}/set/{payload['temperature_command_topic']}"
                if payload.get("device_class"):
                    payload.pop("name", None)
                suggested = device.friendly_name.replace(" ", "_").lower()
                payload["object_id"] = suggested if object_id == component else f"{suggested}_{object_id}"
                payload["unique_id"] = f"{device.ieee}_{object_id}_{self.base_topic}"
                payload["device"] = self._device_payload(device)
                payload["origin"] = self._origin()
                payload["availability"] = [
                    {"topic": f"{self.base_topic}/bridge/state", "value_template": "{{ value_json.state }}"},
                    {"topic": f"{base}/availability", "value_template": "{{ value_json.state }}"}]
                payload["availability_mode"] = "all"
                topic = f"homeassistant/{component}/{device.ieee}/{object_id}/config"
                topics.append(topic)
                await self._session_publish(topic, _compact(payload))
        self._discovered[device.ieee] = topics

    async def _session_publish(self, topic: str, payload: str, retain: bool = True) -> None:
        if self._session:
            await self._session.publish(topic, payload, qos=1, retain=retain)

    async def clear_discovery(self, device: ZigbeeDevice) -> None:
        for topic in self._discovered.pop(device.ieee, []):
            await self._session_publish(topic, "")

    # --- receiving -----------------------------------------------------------------------------------------------

    async def _receive(self, topic: str, payload: bytes) -> None:
        if self.fault == "offline":
            return
        prefix = f"{self.base_topic}/"
        if not topic.startswith(prefix):
            return
        rest = topic[len(prefix):]
        text = payload.decode("utf-8", "replace")
        if rest.startswith("bridge/request/"):
            if self.fault == "slow":
                await asyncio.sleep(SLOW_REPLY_S)
            await self._request(rest[len("bridge/request/"):], text)
            return
        match = re.fullmatch(r"(?!bridge/)(.+?)/(get|set)(?:/(.+))?", rest)
        if match:
            await self._command(match.group(1), match.group(2), match.group(3), text)

    async def _command(self, name: str, verb: str, attribute: str | None, text: str) -> None:
        device = self.resolve(name)
        if device is None:
            await self.log("error", f"Entity '{name}' is unknown")
            return
        message = _parse_message(attribute, text)
        if message is None:
            await self.log("error", "Invalid message 'undefined', skipping...")
            return
        # Like Zigbee2MQTT: switch on before setting brightness or colour, switch off after.
        turning_off = str(message.get("state", "")).lower() == "off"
        entries = sorted(message.items(), key=lambda item: (item[0] in ("state", "brightness")) == turning_off)
        changed = False
        for key, value in entries:
            try:
                if device.fault == "offline":
                    raise ConverterError("Error: Delivery failed (MAC channel access failure)")
                if verb == "set":
                    change = device.set(key, value)
                    device.values.update(change)
                    changed = changed or bool(change)
                else:
                    device.get(key)
                    changed = True
            except ConverterError as error:
                await self.log("error", f"Publish '{verb}' '{key}' to '{device.friendly_name}' failed: '{error}'")
        if changed:
            self.spawn(self.publish_state(device))

    async def _request(self, key: str, text: str) -> None:
        handlers = {"health_check": self._health_check, "permit_join": self._permit_join,
                    "device/rename": self._rename, "device/remove": self._remove, "device/options": self._options,
                    "restart": self._restart}
        handler = handlers.get(key.lower())
        if handler is None:
            return  # Zigbee2MQTT ignores requests it does not know
        try:
            message: Any = json.loads(text)
        except ValueError:
            message = text
        response: dict[str, Any]
        try:
            response = {"data": await handler(message), "status": "ok"}
        except (ConverterError, ValueError, TypeError, KeyError) as error:
            await self.log("error", f"Request '{self.base_topic}/bridge/request/{key}' failed with error: '{error}'")
            response = {"data": {}, "status": "error", "error": str(error)}
        if isinstance(message, dict) and "transaction" in message:
            response["transaction"] = message["transaction"]
        await self._publish(f"bridge/response/{key}", response)

    async def _health_check(self, message: Any) -> dict[str, Any]:
        return {"healthy": True}

    async def _permit_join(self, message: Any) -> dict[str, Any]:
        if isinstance(message, dict):
            if "time" not in message:
                raise ValueError("Invalid payload")
            seconds = _int(message["time"])
        else:
            seconds = _int(message)
        self.permit_join_end = self.context.clock.now() + seconds if seconds > 0 else None
        await self.publish_info()
        return {"time": seconds}

    def _entity(self, name: Any) -> ZigbeeDevice:
        device = self.resolve(str(name)) if isinstance(name, (str, int)) else None
        if device is None:
            raise ValueError(f"Device '{name}' does not exist")
        return device

    async def _rename(self, message: Any) -> dict[str, Any]:
        if not isinstance(message, dict) or "from" not in message or not isinstance(message.get("to"), str):
            raise ValueError("Invalid payload")
        device = self._entity(message["from"])
        new = message["to"].strip()
        if not new or self.resolve(new) not in (None, device):
            raise ValueError(f"Friendly name '{new}' is already in use" if new else "Invalid payload")
        old = device.friendly_name
        await self._session_publish(f"{self.base_topic}/{old}", "")
        await self._session_publish(f"{self.base_topic}/{old}/availability", "")
        device.friendly_name = new
        await self.publish_devices()
        if self.homeassistant:
            await self.publish_discovery(device)
        await self.publish_availability(device)
        await self.publish_state(device)
        return {"from": old, "to": new, "homeassistant_rename": bool(message.get("homeassistant_rename", False))}

    async def _remove(self, message: Any) -> dict[str, Any]:
        name = message.get("id") if isinstance(message, dict) else str(message).strip()
        device = self._entity(name)
        block = bool(message.get("block")) if isinstance(message, dict) else False
        force = bool(message.get("force")) if isinstance(message, dict) else False
        self.devices.remove(device)
        device.bridge = None
        await self.clear_discovery(device)
        await self._session_publish(f"{self.base_topic}/{device.friendly_name}", "")
        await self._session_publish(f"{self.base_topic}/{device.friendly_name}/availability", "")
        await self.publish_groups()
        await self.publish_devices()
        await self._publish("bridge/event", {"type": "device_leave", "data": {
            "ieee_address": device.ieee, "friendly_name": device.friendly_name}})
        return {"id": name, "block": block, "force": force}

    async def _options(self, message: Any) -> dict[str, Any]:
        if not isinstance(message, dict) or "id" not in message or not isinstance(message.get("options"), dict):
            raise ValueError("Invalid payload")
        device = self._entity(message["id"])
        for key, value in message["options"].items():
            if not _same_kind(device.options.get(key), value):
                raise ValueError(f"Invalid option '{key}': {_compact(value)}")
        before = dict(device.options)
        device.options.update(message["options"])
        await self.publish_info()
        return {"from": before, "to": dict(device.options), "id": message["id"], "restart_required": False}

    async def _restart(self, message: Any) -> dict[str, Any]:
        self.spawn(self._restart_later())
        return {}

    async def _restart_later(self) -> None:
        await asyncio.sleep(0.5)  # as Zigbee2MQTT does, so the response goes out first
        if self._session:
            await self._publish("bridge/state", {"state": "offline"}, retain=True, garbled=False)
            self._session.drop()
            self._session.resume()


def _parse_message(attribute: str | None, text: str) -> dict[str, Any] | None:
    """Zigbee2MQTT's parseMessage: `/set/<attr>` takes JSON or a bare value; `/set` takes JSON or a state word."""
    if attribute:
        try:
            return {attribute: json.loads(text)}
        except ValueError:
            return {attribute: text}
    try:
        message = json.loads(text)
    except ValueError:
        return {"state": text} if text.lower() in STATE_WORDS else None
    return message if isinstance(message, dict) else {}


def _same_kind(old: Any, new: Any) -> bool:
    """A known option keeps its kind: a flag stays a flag, a number stays a number."""
    if old is None:
        return True
    if isinstance(old, bool) or isinstance(new, bool):
        return isinstance(old, bool) and isinstance(new, bool)
    if isinstance(old, (int, float)):
        return isinstance(new, (int, float))
    return True


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("Invalid payload")
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError("Invalid payload") from None
