"""Tasmota devices on MQTT: a (metering) plug and a dimmer/colour light, as Tasmota 13 firmware talks.

Topics follow the default FullTopic `%prefix%/%topic%/`: commands on `cmnd/<topic>/<Command>` (also the
GroupTopic `tasmotas` and the FallbackTopic `DVES_XXXXXX_fb`), replies on `stat/<topic>/RESULT` (+ `POWER<n>`
and `STATUS<n>`), telemetry on `tele/<topic>/STATE|SENSOR` every TelePeriod of simulated time, LWT on
`tele/<topic>/LWT`, and the retained discovery that Home Assistant's hatasmota reads from
`tasmota/discovery/<MAC>/config|sensors`. One module: the plug and the dimmer are one firmware, sharing its
commands, topics and telemetry.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from typing import Any

import aiomqtt

from simulators.base import SLOW_REPLY_S, Fault, Simulator, cancel_and_wait
from simulators.mqtt_session import MqttSession

FIRMWARE = "13.4.0(tasmota)"
GROUP_TOPIC = "tasmotas"
DEFAULT_TELE_PERIOD = 300
MAX_RELAYS = 8
POWER_WORDS = {"0": 0, "off": 0, "false": 0, "1": 1, "on": 1, "true": 1, "2": 2, "toggle": 2}
# Options hatasmota requires in the discovery `so` map (SetOption number -> value), all firmware defaults.
DISCOVERY_OPTIONS = {"4": 0, "11": 0, "13": 0, "17": 0, "20": 0, "30": 0, "68": 0, "73": 0, "82": 0, "114": 0,
                     "117": 0}


Replies = list[tuple[str, dict[str, Any] | str]]


def _json(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"))


def _duration(seconds: float) -> str:
    """Tasmota's uptime format: days T hh:mm:ss."""
    days, rest = divmod(int(seconds), 86400)
    return f"{days}T{time.strftime('%H:%M:%S', time.gmtime(rest))}"


def garble(payload: str) -> bytes:
    """What a device with corrupted memory sends: a truncated payload followed by bytes that are not UTF-8."""
    return payload[: len(payload) // 2].encode() + b"\xff\xfe\x00"


class TasmotaPlug(Simulator):
    """A Tasmota relay plug; with `metering` it has an energy monitor (Power/Voltage/Current/Total)."""

    kind = "tasmota_plug"
    module = "Sonoff S31"
    relay_type = 1  # discovery `rl`: 1 relay, 2 light

    def __init__(self, device_id: str = "tasmota_plug", topic: str = "", broker_host: str | None = None,
                 broker_port: int | None = None, name: str = "", area: str = "", mac: str = "",
                 metering: bool = True, relays: int = 1, load_watts: float = 60.0, mains_volts: float = 230.0) -> None:
        super().__init__(device_id, name, area)
        if not 1 <= relays <= MAX_RELAYS:
            raise ValueError(f"relays: expected 1..{MAX_RELAYS}, got {relays}")
        self.mac = (mac or "CC50E3" + hashlib.sha1(device_id.encode()).hexdigest()[:6]).replace(":", "").upper()
        self.topic = topic or f"tasmota_{self.mac[-6:]}"
        self.hostname = f"{self.topic}-{int(self.mac[-4:], 16) % 10000:04d}"
        self.client_id = f"DVES_{self.mac[-6:]}"
        self.fallback_topic = f"{self.client_id}_fb"
        self.broker_host, self.broker_port = broker_host, broker_port
        self.metering = metering
        self.relays = [False] * relays
        self.load_watts, self.mains_volts = load_watts, mains_volts
        self.tele_period = DEFAULT_TELE_PERIOD
        self.energy_kwh = 0.0
        self.boot_count = 1
        self._session: MqttSession | None = None
        self._telemetry: asyncio.Task[None] | None = None
        self._started_at = 0.0
        self._metered_at = 0.0

    # --- state -------------------------------------------------------------------------------------------------

    @property
    def power(self) -> bool:
        return self.relays[0]

    @power.setter
    def power(self, value: bool) -> None:
        self._set_relay(0, value)

    @property
    def online(self) -> bool:
        # A pulled link is offline at once, before the client library notices the dead socket.
        return self.fault != "offline" and self._session is not None and self._session.connected.is_set()

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"online": self.online, "fault": self.fault, "power": self.power,
                                 "tele_period": self.tele_period}
        if len(self.relays) > 1:
            state["relays"] = list(self.relays)
        if self.metering:
            energy = self.energy()
            state.update(power_w=energy["Power"], voltage=energy["Voltage"], current=energy["Current"],
                         energy_kwh=energy["Total"])
        return state

    def address(self) -> str:
        return f"mqtt://{self._broker()[0]}:{self._broker()[1]} cmnd/{self.topic}/#"

    def settable(self) -> dict[str, type]:
        values: dict[str, type] = {"power": bool}
        if self.metering:
            values.update(load_watts=float, mains_volts=float)
        return values

    def set_value(self, key: str, value: Any) -> None:
        if key == "power":  # someone pressed the button: the device reports it as it does for a command
            self._set_relay(0, value)
            self.spawn(self._publish_power(0))
        else:
            self._meter()
            setattr(self, key, value)

    def set_fault(self, fault: Fault) -> None:
        super().set_fault(fault)
        if self._session is None:
            return
        if fault == "offline":
            self._session.drop()
        else:
            self._session.resume()

    def energy(self) -> dict[str, float]:
        """The energy monitor's reading now: the load draws `load_watts` while relay 1 is on."""
        self._meter()
        watts = self.load_watts if self.relays[0] else 0.0
        volts = self.mains_volts
        return {"Total": round(self.energy_kwh, 3), "Power": round(watts), "Voltage": round(volts),
                "Current": round(watts / volts, 3) if volts else 0.0}

    def _meter(self) -> None:
        now = self.context.clock.now()
        if self._metered_at and self.relays[0]:
            self.energy_kwh += self.load_watts * (now - self._metered_at) / 3_600_000
        self._metered_at = now

    def _set_relay(self, index: int, on: bool) -> None:
        if index == 0:
            self._meter()
        self.relays[index] = on

    # --- lifecycle ---------------------------------------------------------------------------------------------

    def _broker(self) -> tuple[str, int]:
        host = self.broker_host or self.context.mqtt_host
        port = self.broker_port or self.context.mqtt_port
        if port is None:
            raise ValueError(f"{self.id}: no MQTT broker (pass broker_port or a SimContext with mqtt_port)")
        return host, port

    async def serve(self) -> None:
        host, port = self._broker()
        self._started_at = self._metered_at = self.context.clock.now()
        will = aiomqtt.Will(self._tele("LWT"), "Offline", qos=1, retain=True)
        subscriptions = [f"cmnd/{self.topic}/#", f"cmnd/{GROUP_TOPIC}/#", f"cmnd/{self.fallback_topic}/#"]
        self._session = MqttSession(host, port, self.client_id, will, subscriptions, self._announce, self._receive,
                                    self.context.mqtt_connects)
        await self._session.start()
        self._restart_telemetry()

    async def stop(self) -> None:
        await cancel_and_wait(self._telemetry)
        await self.cancel_tasks()
        if self._session:
            await self._session.stop(farewell=[(self._tele("LWT"), "Offline", True)])
            self._session = None

    async def _announce(self) -> None:
        """What Tasmota publishes on every (re)connect: LWT Online, discovery, INFO1-3 and a first STATE."""
        session = self._session
        assert session is not None
        await session.publish(self._tele("LWT"), "Online", qos=1, retain=True)
        await session.publish(f"tasmota/discovery/{self.mac}/config", _json(self.discovery_config()), 1, True)
        await session.publish(f"tasmota/discovery/{self.mac}/sensors", _json(self.discovery_sensors()), 1, True)
        await self._send(self._tele("INFO1"), {"Info1": {"Module": self.module, "Version": FIRMWARE.split("(")[0],
                                                         "FallbackTopic": f"cmnd/{self.fallback_topic}/",
                                                         "GroupTopic": f"cmnd/{GROUP_TOPIC}/"}})
        await self._send(self._tele("INFO2"), {"Info2": {"WebServerMode": "Admin", "Hostname": self.hostname,
                                                         "IPAddress": "127.0.0.1"}})
        await self._send(self._tele("INFO3"), {"Info3": {"RestartReason": "Software/System restart",
                                                         "BootCount": self.boot_count}})
        await self._send(self._tele("STATE"), self.state_json())

    def _restart_telemetry(self) -> None:
        if self._telemetry:
            self._telemetry.cancel()
        self._telemetry = asyncio.create_task(self._report_periodically()) if self.tele_period else None

    async def _report_periodically(self) -> None:
        while True:
            await self.context.clock.sleep(self.tele_period)
            await self._send(self._tele("STATE"), self.state_json())
            if sensors := self.sensor_json():
                await self._send(self._tele("SENSOR"), sensors)

    # --- payloads ----------------------------------------------------------------------------------------------

    def _tele(self, suffix: str) -> str:
        return f"tele/{self.topic}/{suffix}"

    def _stat(self, suffix: str) -> str:
        return f"stat/{self.topic}/{suffix}"

    def _time(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.context.clock.now()))

    def _uptime(self) -> float:
        return self.context.clock.now() - self._started_at

    def power_key(self, index: int) -> str:
        """Tasmota says POWER when there is one relay and POWER<n> when there are several."""
        return "POWER" if len(self.relays) == 1 else f"POWER{index + 1}"

    def state_json(self) -> dict[str, Any]:
        uptime = self._uptime()
        state: dict[str, Any] = {"Time": self._time(), "Uptime": _duration(uptime), "UptimeSec": int(uptime),
                                 "Heap": 26, "SleepMode": "Dynamic", "Sleep": 50, "LoadAvg": 19, "MqttCount": 1}
        state.update({self.power_key(i): "ON" if on else "OFF" for i, on in enumerate(self.relays)})
        state["Wifi"] = {"AP": 1, "SSId": "pyuse-lab", "BSSId": "02:00:00:00:00:01", "Channel": 6, "Mode": "11n",
                         "RSSI": 86, "Signal": -57, "LinkCount": 1, "Downtime": "0T00:00:03"}
        return state

    def sensor_json(self) -> dict[str, Any]:
        """The tele/SENSOR body; empty when the device has no sensors."""
        if not self.metering:
            return {}
        energy = self.energy()
        return {"Time": self._time(), "ENERGY": {
            "TotalStartTime": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self._started_at)),
            "Total": energy["Total"], "Yesterday": 0.0, "Today": energy["Total"], "Period": 0,
            "Power": energy["Power"], "ApparentPower": energy["Power"], "ReactivePower": 0, "Factor": 1.0,
            "Voltage": energy["Voltage"], "Current": energy["Current"]}}

    def discovery_config(self) -> dict[str, Any]:
        relays = [self.relay_type] * len(self.relays) + [0] * (MAX_RELAYS - len(self.relays))
        names = [self.name] + [None] * (MAX_RELAYS - 1)
        return {"ip": "127.0.0.1", "dn": self.name, "fn": names, "hn": self.hostname, "mac": self.mac,
                "md": self.module, "ty": 0, "if": 0, "ofln": "Offline", "onln": "Online",
                "state": ["OFF", "ON", "TOGGLE", "HOLD"], "sw": FIRMWARE.split("(")[0], "t": self.topic,
                "ft": "%prefix%/%topic%/", "tp": ["cmnd", "stat", "tele"], "rl": relays, "swc": [-1] * MAX_RELAYS,
                "swn": [None] * MAX_RELAYS, "btn": [0] * MAX_RELAYS, "so": dict(DISCOVERY_OPTIONS), "lk": 0,
                "lt_st": self.light_subtype(), "bat": 0, "dslp": 0, "sho": [], "sht": [], "ver": 1}

    def discovery_sensors(self) -> dict[str, Any]:
        return {"sn": self.sensor_json() or {"Time": self._time()}, "ver": 1}

    def light_subtype(self) -> int:
        return 0

    def status(self, index: int | None) -> tuple[str, dict[str, Any]]:
        """The reply to `Status <index>`: (topic suffix, body)."""
        uptime = self._uptime()
        parts: dict[int, dict[str, Any]] = {
            1: {"StatusPRM": {"Baudrate": 115200, "SerialConfig": "8N1", "GroupTopic": GROUP_TOPIC,
                              "OtaUrl": "", "RestartReason": "Software/System restart", "Uptime": _duration(uptime),
                              "StartupUTC": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self._started_at)),
                              "Sleep": 50, "CfgHolder": 4617, "BootCount": self.boot_count, "SaveCount": 12}},
            2: {"StatusFWR": {"Version": FIRMWARE, "BuildDateTime": "2024-01-15T12:00:00", "Boot": 31,
                              "Core": "2_7_4_9", "SDK": "2.2.2-dev(38a443e)", "CpuFrequency": 80,
                              "Hardware": "ESP8266EX", "CR": "378/699"}},
            3: {"StatusLOG": {"SerialLog": 2, "WebLog": 2, "MqttLog": 0, "SysLog": 0, "LogHost": "",
                              "LogPort": 514, "TelePeriod": self.tele_period}},
            4: {"StatusMEM": {"ProgramSize": 629, "Free": 372, "Heap": 26, "ProgramFlashSize": 1024,
                              "FlashSize": 4096, "FlashMode": "DOUT"}},
            5: {"StatusNET": {"Hostname": self.hostname, "IPAddress": "127.0.0.1", "Gateway": "127.0.0.1",
                              "Subnetmask": "255.0.0.0", "DNSServer1": "127.0.0.1",
                              "Mac": ":".join(self.mac[i:i + 2] for i in range(0, 12, 2)), "Webserver": 2,
                              "HTTP_API": 1, "WifiConfig": 4, "WifiPower": 17.0}},
            6: {"StatusMQT": {"MqttHost": self._broker()[0], "MqttPort": self._broker()[1],
                              "MqttClientMask": "DVES_%06X", "MqttClient": self.client_id, "MqttUser": "DVES_USER",
                              "MqttCount": 1, "MAX_PACKET_SIZE": 1200, "KEEPALIVE": 30, "SOCKET_TIMEOUT": 4}},
            7: {"StatusTIM": {"UTC": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.context.clock.now())),
                              "Local": self._time(), "Timezone": "+00:00"}},
            8: {"StatusSNS": self.sensor_json() or {"Time": self._time()}},
            11: {"StatusSTS": self.state_json()},
        }
        parts[10] = parts[8]
        power_bits = sum(1 << i for i, on in enumerate(self.relays) if on)
        summary = {"Status": {"Module": 0, "DeviceName": self.name, "FriendlyName": [self.name],
                              "Topic": self.topic, "ButtonTopic": "0", "Power": str(power_bits),
                              "PowerOnState": 3, "LedState": 1, "LedMask": "FFFF", "SaveData": 1, "SaveState": 1,
                              "SwitchTopic": "0", "SwitchMode": [0] * 8, "ButtonRetain": 0, "SwitchRetain": 0,
                              "SensorRetain": 0, "PowerRetain": 0, "InfoRetain": 0, "StateRetain": 0}}
        if index == 0:
            everything = dict(summary)
            for number in (1, 2, 3, 4, 5, 6, 7, 10, 11):
                everything.update(parts[number])
            return "STATUS0", everything
        if index in parts:
            return f"STATUS{index}", parts[index]
        return "STATUS", summary

    # --- commands ----------------------------------------------------------------------------------------------

    async def _receive(self, topic: str, payload: bytes) -> None:
        if self.fault == "offline":
            return
        command = topic.rsplit("/", 1)[-1]
        if not command or topic.count("/") != 2:
            return
        if self.fault == "slow":
            await asyncio.sleep(SLOW_REPLY_S)
        await self.run_command(command, payload.decode("utf-8", "replace").strip())

    async def run_command(self, command: str, argument: str) -> None:
        """Run one command as if it arrived on cmnd/<topic>/<command>, publishing what Tasmota publishes."""
        name = command.strip().upper()
        if name in ("BACKLOG", "BACKLOG0"):
            for step in argument.split(";"):
                head, _, rest = step.strip().partition(" ")
                if head:
                    await self.run_command(head, rest.strip())
            return
        if name == "NODELAY":
            return
        argument = "" if argument == "?" else argument
        replies = self.execute(name, argument)
        for suffix, body in replies if replies is not None else [("RESULT", {"Command": "Unknown"})]:
            await self._send(self._stat(suffix), body)

    def execute(self, name: str, argument: str) -> Replies | None:
        """Apply one command; return the (stat topic suffix, body) messages to publish, None if it is unknown."""
        base, index = _split_index(name)
        if base == "POWER" and 1 <= (index or 1) <= len(self.relays):
            relay = (index or 1) - 1
            action = POWER_WORDS.get(argument.lower())
            if action is not None:
                self._set_relay(relay, not self.relays[relay] if action == 2 else bool(action))
                self.after_power(relay)
            return self.power_replies(relay)
        if name == "STATE":
            return [("RESULT", self.state_json())]
        if base == "STATUS" and index is None:
            return [self.status(_integer(argument))]
        if name == "TELEPERIOD":
            value = _integer(argument)
            if value is not None:
                self.tele_period = DEFAULT_TELE_PERIOD if value == 1 else 0 if value == 0 else min(max(value, 10),
                                                                                                    3600)
                self._restart_telemetry()
            return [("RESULT", {"TelePeriod": self.tele_period})]
        return None

    def after_power(self, relay: int) -> None:
        """Hook for devices whose other state follows the relay (a light's dimmer)."""

    def power_replies(self, relay: int) -> Replies:
        word = "ON" if self.relays[relay] else "OFF"
        return [("RESULT", {self.power_key(relay): word}), (self.power_key(relay), word)]

    async def _publish_power(self, relay: int) -> None:
        for suffix, body in self.power_replies(relay):
            await self._send(self._stat(suffix), body)

    async def _send(self, topic: str, body: dict[str, Any] | str) -> None:
        if self._session is None:
            return
        text = body if isinstance(body, str) else _json(body)
        await self._session.publish(topic, garble(text) if self.fault == "garbage" else text)


class TasmotaDimmer(TasmotaPlug):
    """A Tasmota dimmer (one PWM channel); with `color` an RGBCW bulb that also takes CT and Color."""

    kind = "tasmota_dimmer"
    module = "Generic"
    relay_type = 2

    def __init__(self, device_id: str = "tasmota_dimmer", topic: str = "", broker_host: str | None = None,
                 broker_port: int | None = None, name: str = "", area: str = "", mac: str = "",
                 color: bool = False) -> None:
        super().__init__(device_id, topic, broker_host, broker_port, name, area, mac, metering=False)
        self.color_capable = color
        self.module = "Generic" if not color else "Sonoff B1"
        self.dimmer = 100
        self.ct = 153
        self.rgb = (255, 255, 255)
        self.fade = False
        self.speed = 1

    def state(self) -> dict[str, Any]:
        state = super().state() | {"dimmer": self.dimmer}
        if self.color_capable:
            state.update(ct=self.ct, color="#{:02X}{:02X}{:02X}".format(*self.rgb))
        return state

    def settable(self) -> dict[str, type]:
        return super().settable() | {"dimmer": int}

    def light_subtype(self) -> int:
        return 5 if self.color_capable else 1  # hatasmota LST_RGBCW / LST_SINGLE

    def light_json(self) -> dict[str, Any]:
        light: dict[str, Any] = {"POWER": "ON" if self.power else "OFF", "Dimmer": self.dimmer}
        if self.color_capable:
            scale = self.dimmer / 100
            r, g, b = (round(c * scale) for c in self.rgb)
            light.update(Color=f"{r:02X}{g:02X}{b:02X}0000", HSBColor=_hsb(self.rgb, self.dimmer), White=0,
                         CT=self.ct, Channel=[round(c * 100 / 255) for c in (r, g, b)] + [0, 0])
        light.update(Fade="ON" if self.fade else "OFF", Speed=self.speed, LedTable="ON")
        return light

    def state_json(self) -> dict[str, Any]:
        state = super().state_json()
        wifi = state.pop("Wifi")
        return state | self.light_json() | {"Wifi": wifi}

    def after_power(self, relay: int) -> None:
        if self.power and self.dimmer == 0:
            self.dimmer = 100

    def execute(self, name: str, argument: str) -> Replies | None:
        base, index = _split_index(name)
        if name == "DIMMER":
            if argument:
                value = _dimmer_value(argument, self.dimmer)
                if value is None:
                    return [("RESULT", self.light_json())]
                self.dimmer = value
                self._set_relay(0, value > 0)
            return [("RESULT", self.light_json())]
        if name == "CT" and self.color_capable:
            value = _integer(argument)
            if value is not None:
                self.ct = min(max(value, 153), 500)
            return [("RESULT", self.light_json())]
        if base == "COLOR" and index in (None, 1, 2) and self.color_capable:
            if argument:
                rgb = _parse_color(argument)
                if rgb is not None:
                    self.rgb = rgb
                    if index != 2:  # Color2 sets the colour without touching the power
                        self._set_relay(0, True)
            return [("RESULT", self.light_json())]
        if name == "FADE":
            if argument.lower() in POWER_WORDS:
                action = POWER_WORDS[argument.lower()]
                self.fade = not self.fade if action == 2 else bool(action)
            return [("RESULT", {"Fade": "ON" if self.fade else "OFF"})]
        if name == "SPEED":
            value = _integer(argument)
            if value is not None:
                self.speed = min(max(value, 1), 40)
            return [("RESULT", {"Speed": self.speed})]
        return super().execute(name, argument)


def _split_index(name: str) -> tuple[str, int | None]:
    """`POWER2` -> ("POWER", 2); `POWER` -> ("POWER", None)."""
    base = name.rstrip("0123456789")
    digits = name[len(base):]
    return base, int(digits) if digits else None


def _integer(argument: str) -> int | None:
    """A plain decimal number (ASCII digits only: str.isdigit() also accepts '²')."""
    return int(argument) if re.fullmatch(r"[0-9]{1,9}", argument) else None


def _dimmer_value(argument: str, current: int) -> int | None:
    steps = {"+": current + 10, "-": current - 10, "<": 1, ">": 100, "!": current}
    if argument in steps:
        return min(max(steps[argument], 0), 100)
    value = _integer(argument)
    return None if value is None else min(value, 100)


def _parse_color(argument: str) -> tuple[int, int, int] | None:
    """`255,0,0`, `#FF0000` or `FF0000` (extra white channels ignored)."""
    text = argument.strip().lstrip("#")
    try:
        if "," in text:
            values = [int(part) for part in text.split(",")[:3]]
            if len(values) == 3 and all(0 <= v <= 255 for v in values):
                return values[0], values[1], values[2]
            return None
        if len(text) >= 6:
            return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)
    except ValueError:
        return None
    return None


def _hsb(rgb: tuple[int, int, int], brightness: int) -> str:
    r, g, b = (c / 255 for c in rgb)
    high, low = max(r, g, b), min(r, g, b)
    delta = high - low
    if delta == 0:
        hue = 0.0
    elif high == r:
        hue = 60 * (((g - b) / delta) % 6)
    elif high == g:
        hue = 60 * ((b - r) / delta + 2)
    else:
        hue = 60 * ((r - g) / delta + 4)
    saturation = 0 if high == 0 else delta / high * 100
    return f"{round(hue)},{round(saturation)},{brightness}"
