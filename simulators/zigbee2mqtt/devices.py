"""The Zigbee devices behind the bridge: their definitions, exposes, converters for /set and /get, and physics.

Each device is a Simulator of its own (its own id, state and faults for grading and steering). Sensor values
evolve over simulated time: a Room warms while a thermostat heats it. One module for the base class and
its six devices: each device is a short subclass, and the value converters below serve several of them.
"""

from __future__ import annotations

import math
import random
import re
from abc import abstractmethod
from typing import TYPE_CHECKING, Any

from simulators.base import Fault, Room, Simulator
from simulators.zigbee2mqtt.exposes import (
    ACCESS_GET,
    ACCESS_SET,
    ACCESS_STATE,
    battery,
    binary,
    enum,
    flat_features,
    linkquality,
    numeric,
    preset,
)
from simulators.zigbee2mqtt.wire import compact_json, ieee_address

if TYPE_CHECKING:
    from simulators.zigbee2mqtt.bridge import Zigbee2MqttBridge


class ConverterError(Exception):
    """A /set or /get the device cannot carry out; Zigbee2MQTT logs it to bridge/logging."""


class ZigbeeDevice(Simulator):
    """A device paired with a Zigbee2MQTT bridge. Subclasses give the definition, exposes and converters."""

    model = ""
    vendor = ""
    description = ""
    model_id = ""
    software_build_id: str | None = None
    device_type = "EndDevice"
    power_source = "Battery"
    report_every = 300.0  # simulated seconds between periodic reports

    def __init__(self, device_id: str, name: str = "", area: str = "", retain: bool = False) -> None:
        super().__init__(device_id, name, area)
        self.ieee = ieee_address(device_id)
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
        """getDefinitionPayload (2.1.3 lib/extension/bridge.ts l. 806-833): no icon unless one is set."""
        return {"model": self.model, "vendor": self.vendor, "description": self.description,
                "exposes": self.exposes(), "supports_ota": False, "options": []}

    def info(self) -> dict[str, Any]:
        """This device's entry in bridge/devices as 2.1.3 publishes it (lib/extension/bridge.ts l. 711-768):
        what is undefined is left out, and there is no `interview_state` nor endpoint `name` (later versions)."""
        return {"ieee_address": self.ieee, "type": self.device_type, "network_address": self.network_address,
                "supported": True, "friendly_name": self.friendly_name, "disabled": False,
                "definition": self.definition(), "power_source": self.power_source,
                **({"software_build_id": self.software_build_id} if self.software_build_id else {}),
                "date_code": "20230101", "model_id": self.model_id, "interviewing": False,
                "interview_completed": True, "manufacturer": self.vendor,
                "endpoints": {"1": {"scenes": [], "bindings": [], "configured_reportings": [],
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
        return {f["property"]: kinds[f["type"]] for f in flat_features(self.exposes())
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
        raise ConverterError(f"No converter available for '{key}' ({compact_json(value)})")

    def get(self, key: str) -> None:
        feature = next((f for f in flat_features(self.exposes()) if f.get("property") == key), None)
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


# The effects zigbee-herdsman-converters 23.2.0 (pinned by Zigbee2MQTT 2.1.3) gives a Hue colour light:
# src/lib/philips.ts l. 64-94.
HUE_EFFECTS = ["blink", "breathe", "okay", "channel_change", "candle", "fireplace", "colorloop", "finish_effect",
               "stop_effect", "stop_hue_effect"]


class Bulb(ZigbeeDevice):
    kind = "zigbee_bulb"
    model, vendor, model_id = "9290022166", "Philips", "LCA001"
    description = "Hue white and color ambiance E26/E27"
    software_build_id = "1.104.2"
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
                        presets=[preset("coolest", 153, "Coolest temperature supported"),
                                 preset("cool", 250, "Cool temperature (250 mireds / 4000 Kelvin)"),
                                 preset("neutral", 370, "Neutral temperature (370 mireds / 2700 Kelvin)"),
                                 preset("warm", 454, "Warm temperature (454 mireds / 2200 Kelvin)"),
                                 preset("warmest", 500, "Warmest temperature supported")]),
                {"type": "composite", "name": "color_xy", "property": "color", "label": "Color (X/Y)", "access": 7,
                 "description": "Color of this light in the CIE 1931 color space (x/y)",
                 "features": [numeric("x", "X", 7, ""), numeric("y", "Y", 7, "")]},
            ]},
            enum("effect", "Effect", ACCESS_SET, HUE_EFFECTS, "Triggers an effect on the light"),
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
            raise ConverterError(f"{key} must be a number, got {compact_json(value)}")
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
            _choice(value, HUE_EFFECTS)
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
    raise ConverterError(f"Value '{compact_json(color)}' is not a valid color")


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

