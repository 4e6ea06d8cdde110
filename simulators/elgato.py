"""An Elgato Key Light: the REST API under `/elgato/` on port 9123, as python-elgato and the app use it."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from simulators.httpdevice import HttpDevice, mac_for, parse_json, serial_for
from simulators.mdns import MdnsService

ELGATO_OUI = "3C6A9D"
SERIAL_PREFIX = "CW29L1A"  # a Key Light's serial: production code, then a five-digit number
BRIGHTNESS = (0, 100)  # percent
TEMPERATURE = (143, 344)  # mired: 7000 K down to 2900 K
SETTINGS_TYPES = {"powerOnBehavior": int, "powerOnBrightness": int, "powerOnTemperature": int,
                  "switchOnDurationMs": int, "switchOffDurationMs": int, "colorChangeDurationMs": int}
RESTORE_LAST, USE_DEFAULTS = 1, 2


class ElgatoKeyLight(HttpDevice):
    kind = "elgato_light"

    def __init__(self, device_id: str = "key_light", name: str = "", area: str = "", mac: str | None = None,
                 host: str | None = None, port: int = 9123, serial: str | None = None) -> None:
        super().__init__(device_id, name, area, host, port)
        self.mac = (mac or mac_for(device_id, ELGATO_OUI)).upper()
        self.serial = serial or serial_for(device_id, SERIAL_PREFIX)
        self.on, self.brightness, self.temperature = False, 20, 213
        self.settings: dict[str, int] = {"powerOnBehavior": RESTORE_LAST, "powerOnBrightness": 20,
                                         "powerOnTemperature": 213, "switchOnDurationMs": 100,
                                         "switchOffDurationMs": 300, "colorChangeDurationMs": 100}
        self.identified = 0  # how often it was asked to flash

    # --- the Simulator contract -----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {"on": self.on, "brightness": self.brightness, "temperature": self.temperature,
                "kelvin": round(1_000_000 / self.temperature), "display_name": self.name,
                "identified": self.identified, "fault": self.fault}

    def settable(self) -> dict[str, type]:
        return {"on": bool, "brightness": int, "temperature": int}

    def set_value(self, key: str, value: Any) -> None:
        self._set_light({key: value})

    # --- the REST API ---------------------------------------------------------------------------------------

    def accessory_info(self) -> dict[str, Any]:
        mac = ":".join(self.mac[index:index + 2] for index in range(0, 12, 2))
        return {"productName": "Elgato Key Light", "hardwareBoardType": 53, "hardwareRevision": 1,
                "macAddress": mac, "firmwareBuildNumber": 218, "firmwareVersion": "1.0.3",
                "serialNumber": self.serial, "displayName": self.name, "features": ["lights"],
                "wifi-info": {"ssid": "pyuse-sim", "frequencyMHz": 2400, "rssi": -48}}

    def lights(self) -> dict[str, Any]:
        return {"numberOfLights": 1, "lights": [{"on": int(self.on), "brightness": self.brightness,
                                                  "temperature": self.temperature}]}

    def routes(self) -> Iterable[web.RouteDef]:
        return [web.get("/elgato/accessory-info", self._get_info),
                web.put("/elgato/accessory-info", self._put_info),
                web.get("/elgato/lights", self._get_lights), web.put("/elgato/lights", self._put_lights),
                web.get("/elgato/lights/settings", self._get_settings),
                web.put("/elgato/lights/settings", self._put_settings),
                web.post("/elgato/identify", self._identify), web.post("/elgato/restart", self._restart)]

    def mdns_hostname(self) -> str:
        return f"elgato-key-light-{self.mac[-4:].lower()}"

    def mdns_services(self) -> list[MdnsService]:
        txt = {"mf": "Elgato", "dt": "53", "id": self.accessory_info()["macAddress"],
               "md": "Elgato Key Light 20GAK9901", "pv": "1.0"}
        return [MdnsService("_elg._tcp.local.", f"Elgato Key Light {self.mac[-4:]}", txt)]

    async def _get_info(self, request: web.Request) -> web.Response:
        return web.json_response(self.accessory_info())

    async def _put_info(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        name = body.get("displayName") if body is not None else None
        if not isinstance(name, str):
            return web.Response(status=400)
        self.name = name
        return web.json_response(self.accessory_info())

    async def _get_lights(self, request: web.Request) -> web.Response:
        return web.json_response(self.lights())

    async def _put_lights(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        lights = body.get("lights") if body is not None else None
        if not isinstance(lights, list) or not lights or not isinstance(lights[0], dict):
            return web.Response(status=400)
        if not self._set_light(lights[0]):
            return web.Response(status=400)
        return web.json_response(self.lights())

    async def _get_settings(self, request: web.Request) -> web.Response:
        return web.json_response(self.settings)

    async def _put_settings(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        if body is None or not all(_is_int(body[key]) for key in SETTINGS_TYPES if key in body):
            return web.Response(status=400)
        self.settings.update({key: body[key] for key in SETTINGS_TYPES if key in body})
        return web.json_response(self.settings)

    async def _identify(self, request: web.Request) -> web.Response:
        self.identified += 1
        return web.Response()

    async def _restart(self, request: web.Request) -> web.Response:
        if self.settings["powerOnBehavior"] == USE_DEFAULTS:
            self._set_light({"on": 1, "brightness": self.settings["powerOnBrightness"],
                             "temperature": self.settings["powerOnTemperature"]})
        return web.Response()

    def _set_light(self, light: dict[str, Any]) -> bool:
        """Apply `on`, `brightness` and `temperature`, clamped to the light's range; False for wrong types."""
        values = {key: light[key] for key in ("on", "brightness", "temperature") if key in light}
        if not all(isinstance(value, (int, float)) and math.isfinite(value) for value in values.values()):
            return False
        if "on" in values:
            self.on = bool(values["on"])
        if "brightness" in values:
            self.brightness = _clamp(values["brightness"], BRIGHTNESS)
        if "temperature" in values:
            self.temperature = _clamp(values["temperature"], TEMPERATURE)
        return True


async def _json_object(request: web.Request) -> dict[str, Any] | None:
    try:
        body = parse_json(await request.read())
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _clamp(value: float, bounds: tuple[int, int]) -> int:
    return max(bounds[0], min(bounds[1], round(value)))
