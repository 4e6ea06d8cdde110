"""A Shelly Gen2 switch or plug (Plus Plug S, Plus 1PM) speaking RPC over HTTP, WebSocket and optionally MQTT.

Follows the Shelly Gen2 API docs (RPC protocol and channels, notifications, Switch, common errors) and the way
aioshelly drives a device: `GET /shelly`, `/rpc/<Method>` (result only), `POST /rpc` (full frames), WebSocket
`/rpc` with `NotifyStatus` pushes, and a power meter that integrates over simulated time. Like a real device
it serves on port 80 (aioshelly and Home Assistant assume it), each on a loopback address of its own. One
module, as the firmware is one: its HTTP, WebSocket and MQTT channels serve the same RPC methods on one state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiomqtt
from aiohttp import web

from simulators.base import SLOW_REPLY_S
from simulators.httpdevice import GARBAGE, HttpDevice, mac_for, parse_json
from simulators.mdns import MdnsService


@dataclass(frozen=True)
class ShellyModel:
    model: str
    has_input: bool
    power_limit_w: float
    current_limit_a: float


MODELS = {"PlusPlugS": ShellyModel("SNPL-00112EU", False, 2800.0, 12.0),
          "Plus1PM": ShellyModel("SNSW-001P16EU", True, 4480.0, 16.0)}
# The build date leads fw_id: aioshelly accepts Gen2 firmware from 20230803 on, and from 20240213 on it also
# asks for dynamic components.
FW_ID, FW_VERSION = "20241011-114455/1.4.4-g6d2a586", "1.4.4"
SHELLY_OUI = "C8F09E"
INITIAL_STATES = ("off", "on", "restore_last", "match_input")
SWITCH_CONFIG_TYPES: dict[str, type | tuple[type, ...]] = {
    "name": (str, type(None)), "in_mode": str, "initial_state": str, "auto_on": bool,
    "auto_on_delay": (int, float), "auto_off": bool, "auto_off_delay": (int, float),
    "power_limit": (int, float), "voltage_limit": (int, float), "current_limit": (int, float),
    "autorecover_voltage_errors": bool}
# Keys that change on their own: a NotifyStatus tells what an action changed; energy goes out once a minute.
VOLATILE_STATUS = {"uptime", "unixtime", "time", "last_sync_ts", "ram_free", "fs_free", "aenergy",
                   "temperature"}


class RpcError(Exception):
    """An RPC failure as the device reports it: `{"code": ..., "message": ...}`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message

    def frame(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


class EnergyMeter:
    """Integrates a piecewise-constant power draw over simulated time: the total and the recent minutes."""

    KEEP_S = 240.0  # by_minute looks three whole minutes back

    def __init__(self, now: float) -> None:
        self._steps: list[tuple[float, float]] = [(now, 0.0)]  # (since, watts), oldest first
        self._settled_wh = 0.0  # energy before the first kept step

    def set_power(self, now: float, watts: float) -> None:
        self._steps.append((now, watts))
        while len(self._steps) > 1 and self._steps[1][0] <= now - self.KEEP_S:
            (since, watts_then), (until, _) = self._steps[0], self._steps[1]
            self._settled_wh += watts_then * (until - since) / 3600
            del self._steps[0]

    def total_wh(self, now: float) -> float:
        return self._settled_wh + self.between_wh(self._steps[0][0], now)

    def between_wh(self, start: float, end: float) -> float:
        energy = 0.0
        for index, (since, watts) in enumerate(self._steps):
            until = self._steps[index + 1][0] if index + 1 < len(self._steps) else end
            overlap = min(until, end) - max(since, start)
            if overlap > 0:
                energy += watts * overlap / 3600
        return energy

    def reset(self, now: float) -> float:
        """Zero the total; returns what it was."""
        total = self.total_wh(now)
        self._settled_wh -= total
        return total

    def aenergy(self, now: float) -> dict[str, Any]:
        """The Switch status `aenergy` object: total Wh, and mWh for each of the last three whole minutes."""
        minute_ts = math.floor(now / 60) * 60 - 60
        by_minute = [round(self.between_wh(start, start + 60) * 1000, 3)
                     for start in (minute_ts, minute_ts - 60, minute_ts - 120)]
        return {"total": round(self.total_wh(now), 3), "by_minute": by_minute, "minute_ts": minute_ts}


class ShellySwitch(HttpDevice):
    kind = "shelly_switch"

    def __init__(self, device_id: str = "plug", name: str = "", area: str = "", mac: str | None = None,
                 host: str | None = None, port: int = 80, app: str = "PlusPlugS", load_w: float = 60.0,
                 voltage: float = 230.0, mqtt: bool = False) -> None:
        super().__init__(device_id, name, area, host, port)
        if app not in MODELS:
            raise ValueError(f"app: expected one of {', '.join(MODELS)}, got {app!r}")
        self.app, self.profile = app, MODELS[app]
        self.mac = (mac or mac_for(device_id, SHELLY_OUI)).upper()
        self.shelly_id = f"shelly{app.lower()}-{self.mac.lower()}"
        self.mqtt_enabled = mqtt
        self.output = False
        self.source = "init"
        self.errors: list[str] = []
        self.load_w, self.voltage = float(load_w), float(voltage)
        self.switch_config: dict[str, Any] = {
            "id": 0, "name": None, **({"in_mode": "follow"} if self.profile.has_input else {}),
            "initial_state": "off", "auto_on": False, "auto_on_delay": 60.0, "auto_off": False,
            "auto_off_delay": 60.0, "power_limit": self.profile.power_limit_w, "voltage_limit": 280.0,
            "autorecover_voltage_errors": False, "current_limit": self.profile.current_limit_a}
        self.cfg_rev = 0
        now = self.context.clock.now()
        self._boot = now
        self._meter = EnergyMeter(now)
        self._timer: tuple[float, float] | None = None  # (started_at, duration) of a toggle_after/auto timer
        self._timer_task: asyncio.Task[None] | None = None
        self._peers: dict[web.WebSocketResponse, str] = {}  # WebSocket peers that sent a src, and that src
        self._mqtt: aiomqtt.Client | None = None
        self._notified = self._notify_view()
        self._methods: dict[str, Callable[[dict[str, Any], str], Any]] = {
            "Shelly.GetDeviceInfo": lambda params, source: self.device_info(),
            "Shelly.GetStatus": lambda params, source: self.status(),
            "Shelly.GetConfig": lambda params, source: self.config(),
            "Shelly.ListMethods": lambda params, source: {"methods": sorted(self._methods)},
            "Shelly.GetComponents": lambda params, source: self._get_components(params),
            "Shelly.Reboot": lambda params, source: self._reboot_later(params),
            "Sys.GetStatus": lambda params, source: self.sys_status(),
            "Sys.GetConfig": lambda params, source: self.config()["sys"],
            "Sys.SetConfig": lambda params, source: self._sys_set_config(params),
            "Switch.Set": self._switch_set,
            "Switch.Toggle": lambda params, source: self._switch_toggle(params, source),
            "Switch.GetStatus": lambda params, source: self._switch_status(self._switch_id(params)),
            "Switch.GetConfig": lambda params, source: self._get_switch_config(params),
            "Switch.SetConfig": lambda params, source: self._switch_set_config(params),
            "Switch.ResetCounters": lambda params, source: self._reset_counters(params),
        }

    # --- the Simulator contract -----------------------------------------------------------------------------

    async def serve(self) -> None:
        await super().serve()
        now = self.context.clock.now()
        self._boot, self._meter = now, EnergyMeter(now)
        self._meter.set_power(now, self.apower)
        self._notified = self._notify_view()  # the address is known now
        self.spawn(self._every_minute())
        if self.mqtt_enabled and self.context.mqtt_port is not None:
            connected = asyncio.Event()
            channel = self.spawn(self._mqtt_channel(self.context.mqtt_port, connected))
            try:
                async with asyncio.timeout(10):
                    await connected.wait()
            except TimeoutError:
                channel.cancel()
                raise TimeoutError(f"Shelly simulator {self.id} could not reach the MQTT broker "
                                   f"{self.context.mqtt_host}:{self.context.mqtt_port}") from None

    def state(self) -> dict[str, Any]:
        status = self._switch_status(0)
        return {"output": self.output, "source": self.source, "apower": status["apower"],
                "voltage": status["voltage"], "current": status["current"],
                "aenergy_wh": status["aenergy"]["total"], "load_w": self.load_w, "errors": list(self.errors),
                "fault": self.fault}

    def settable(self) -> dict[str, type]:
        return {"load_w": float, "voltage": float, "output": bool}

    def set_value(self, key: str, value: Any) -> None:
        if key == "output":
            self._set_output(value, "button")  # someone pressed the device's own button
        else:
            setattr(self, key, value)
            self._power_changed()
        self._notify()

    # --- HTTP and WebSocket channels ------------------------------------------------------------------------

    def routes(self) -> Iterable[web.RouteDef]:
        return [web.get("/shelly", self._identity), web.get("/rpc", self._websocket),
                web.post("/rpc", self._frame), web.route("*", "/rpc/{method}", self._rest)]

    def mdns_hostname(self) -> str:
        return self.shelly_id

    def mdns_services(self) -> list[MdnsService]:
        txt = {"gen": "2", "app": self.app, "ver": FW_VERSION, "id": self.shelly_id}
        return [MdnsService("_shelly._tcp.local.", self.shelly_id, txt),
                MdnsService("_http._tcp.local.", self.shelly_id, txt)]

    async def _identity(self, request: web.Request) -> web.Response:
        return web.json_response(self.device_info())

    async def _rest(self, request: web.Request) -> web.Response:
        """`/rpc/<Method>`: params from the query (values JSON-decoded) and a JSON object body; replies the
        result alone."""
        params: dict[str, Any] = {key: _query_value(value) for key, value in request.query.items()}
        if request.can_read_body:
            try:
                body = parse_json(await request.read() or b"{}")
            except ValueError:
                return web.Response(status=400, text="Invalid request")
            if not isinstance(body, dict):
                return web.Response(status=400, text="Invalid request")
            params.update(body)
        try:
            result = self.call(request.match_info["method"], params, "HTTP_in")
        except RpcError as error:
            # As the firmware's HTTP channel does: 404 stays 404, other RPC errors are a 500, with the error.
            return web.json_response(error.frame(), status=404 if error.code == 404 else 500)
        finally:
            self._notify()
        return web.json_response(result)

    async def _frame(self, request: web.Request) -> web.Response:
        try:
            frame = parse_json(await request.read())
        except ValueError:
            return web.Response(status=400, text="Invalid request")
        reply = self.answer(frame, "HTTP_in")
        self._notify()
        if reply is None:
            return web.Response(status=400, text="Invalid request")
        return web.json_response(reply)

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        async def on_text(socket: web.WebSocketResponse, text: str) -> None:
            try:
                frame = parse_json(text)
            except ValueError:
                return  # the firmware drops frames it cannot parse
            if isinstance(frame, dict) and isinstance(frame.get("src"), str):
                self._peers[socket] = frame["src"]  # from now on this peer gets notifications
            reply = self.answer(frame, "WS_in")
            if reply is not None and "id" in frame:
                await self.send_text(socket, json.dumps(reply))
            self._notify()

        async def on_close(socket: web.WebSocketResponse) -> None:
            self._peers.pop(socket, None)

        return await self.websocket(request, on_text, on_close=on_close)

    # --- RPC ------------------------------------------------------------------------------------------------

    def answer(self, frame: Any, source: str) -> dict[str, Any] | None:
        """The response frame for a request frame, or None when the frame is not a request at all."""
        if not isinstance(frame, dict) or not isinstance(frame.get("method"), str):
            return None
        reply: dict[str, Any] = {"id": frame.get("id"), "src": self.shelly_id}
        if isinstance(frame.get("src"), str):
            reply["dst"] = frame["src"]
        params = frame.get("params")
        try:
            if params is not None and not isinstance(params, dict):
                raise RpcError(-103, "Invalid argument 'params'")
            reply["result"] = self.call(frame["method"], params or {}, source)
        except RpcError as error:
            reply["error"] = error.frame()
        return reply

    def call(self, method: str, params: dict[str, Any], source: str) -> Any:
        """Run one RPC method; raises RpcError as the device reports it."""
        handler = self._methods.get(method)
        if handler is None:
            raise RpcError(404, f"No handler for {method}")
        return handler(params, source)

    def device_info(self) -> dict[str, Any]:
        return {"name": self.name, "id": self.shelly_id, "mac": self.mac, "slot": 0,
                "model": self.profile.model, "gen": 2, "fw_id": FW_ID, "ver": FW_VERSION, "app": self.app,
                "auth_en": False, "auth_domain": None}

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "ble": {}, "cloud": {"connected": False}, "mqtt": {"connected": self._mqtt is not None},
            "switch:0": self._switch_status(0), "sys": self.sys_status(),
            "wifi": {"sta_ip": self.host, "status": "got ip", "ssid": "pyuse-sim", "rssi": -52},
            "ws": {"connected": False}}
        if self.profile.has_input:
            status["input:0"] = {"id": 0, "state": False}
        return dict(sorted(status.items()))

    def sys_status(self) -> dict[str, Any]:
        now = self.context.clock.now()
        return {"mac": self.mac, "restart_required": False, "time": time.strftime("%H:%M", time.gmtime(now)),
                "unixtime": int(now), "last_sync_ts": int(now), "uptime": int(now - self._boot),
                "ram_size": 246572, "ram_free": 148856, "fs_size": 458752, "fs_free": 147456,
                "cfg_rev": self.cfg_rev, "kvs_rev": 0, "schedule_rev": 0, "webhook_rev": 0,
                "available_updates": {}, "reset_reason": 3}

    def config(self) -> dict[str, Any]:
        broker = f"{self.context.mqtt_host}:{self.context.mqtt_port}" if self.mqtt_enabled else None
        config: dict[str, Any] = {
            "ble": {"enable": True, "rpc": {"enable": True}, "observer": {"enable": False}},
            "cloud": {"enable": False, "server": "iot.shelly.cloud:6012/jrpc"},
            "mqtt": {"enable": self.mqtt_enabled, "server": broker, "client_id": self.shelly_id, "user": None,
                     "ssl_ca": None, "topic_prefix": self.shelly_id, "rpc_ntf": True, "status_ntf": True,
                     "use_client_cert": False, "enable_rpc": True, "enable_control": True},
            "switch:0": dict(self.switch_config),
            "sys": {"device": {"name": self.name, "mac": self.mac, "fw_id": FW_ID, "discoverable": True,
                               "eco_mode": False},
                    "location": {"tz": "Europe/Berlin", "lat": 52.52, "lon": 13.405},
                    "debug": {"level": 2, "file_level": None, "mqtt": {"enable": False},
                              "websocket": {"enable": False}, "udp": {"addr": None}},
                    "ui_data": {}, "rpc_udp": {"dst_addr": None, "listen_port": None},
                    "sntp": {"server": "time.google.com"}, "cfg_rev": self.cfg_rev},
            "wifi": {"sta": {"ssid": "pyuse-sim", "is_open": False, "enable": True, "ipv4mode": "dhcp"}},
            "ws": {"enable": False, "server": None, "ssl_ca": "ca.pem"}}
        if self.profile.has_input:
            config["input:0"] = {"id": 0, "name": None, "type": "switch", "enable": True, "invert": False}
        return dict(sorted(config.items()))

    def _switch_id(self, params: dict[str, Any]) -> int:
        if "id" not in params:
            raise RpcError(-103, "Missing required 'id'")
        switch_id = params["id"]
        if not isinstance(switch_id, int) or isinstance(switch_id, bool):
            raise RpcError(-103, "Invalid argument 'id'")
        if switch_id != 0:
            raise RpcError(-105, f"Bad id={switch_id}")
        return switch_id

    def _switch_status(self, switch_id: int) -> dict[str, Any]:
        apower = self.apower
        current = apower / self.voltage if self.voltage else 0.0
        celsius = 28.0 + apower / 100  # the relay warms up with the load
        status: dict[str, Any] = {
            "id": switch_id, "source": self.source, "output": self.output, "apower": round(apower, 1),
            "voltage": round(self.voltage, 1), "current": round(current, 3),
            "aenergy": self._meter.aenergy(self.context.clock.now()),
            "temperature": {"tC": round(celsius, 1), "tF": round(celsius * 1.8 + 32, 1)}}
        if self._timer is not None:
            status["timer_started_at"], status["timer_duration"] = self._timer
        if self.errors:
            status["errors"] = list(self.errors)
        return status

    @property
    def apower(self) -> float:
        return self.load_w if self.output else 0.0

    def _switch_set(self, params: dict[str, Any], source: str) -> dict[str, bool]:
        self._switch_id(params)
        if "on" not in params:
            raise RpcError(-103, "Missing required 'on'")
        on, toggle_after = params["on"], params.get("toggle_after")
        if not isinstance(on, bool):
            raise RpcError(-103, "Invalid argument 'on'")
        if toggle_after is not None and (not _is_number(toggle_after) or toggle_after <= 0):
            raise RpcError(-103, "Invalid argument 'toggle_after'")
        was_on = self.output
        self._set_output(on, source, toggle_after)
        return {"was_on": was_on}

    def _switch_toggle(self, params: dict[str, Any], source: str) -> dict[str, bool]:
        self._switch_id(params)
        was_on = self.output
        self._set_output(not was_on, source)
        return {"was_on": was_on}

    def _get_switch_config(self, params: dict[str, Any]) -> dict[str, Any]:
        self._switch_id(params)
        return dict(self.switch_config)

    def _switch_set_config(self, params: dict[str, Any]) -> dict[str, bool]:
        self._switch_id(params)
        config = _config_param(params)
        for key, value in config.items():
            expected = SWITCH_CONFIG_TYPES.get(key)
            if expected is None:
                continue  # the firmware ignores keys it does not know
            if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
                raise RpcError(-103, f"Invalid argument 'config.{key}'")
            if key == "initial_state" and value not in INITIAL_STATES:
                raise RpcError(-103, f"Invalid argument 'config.{key}'")
        self.switch_config.update({key: value for key, value in config.items() if key in SWITCH_CONFIG_TYPES})
        self.cfg_rev += 1
        self._power_changed()
        return {"restart_required": False}

    def _reset_counters(self, params: dict[str, Any]) -> dict[str, Any]:
        self._switch_id(params)
        return {"aenergy": {"total": round(self._meter.reset(self.context.clock.now()), 3)}}

    def _sys_set_config(self, params: dict[str, Any]) -> dict[str, bool]:
        config = _config_param(params)
        device = config.get("device", {})
        if not isinstance(device, dict) or not isinstance(device.get("name", ""), (str, type(None))):
            raise RpcError(-103, "Invalid argument 'config.device'")
        if "name" in device:
            self.name = device["name"] or self.id
        self.cfg_rev += 1
        return {"restart_required": False}

    def _get_components(self, params: dict[str, Any]) -> dict[str, Any]:
        offset, include = params.get("offset", 0), params.get("include", ["config", "status"])
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise RpcError(-103, "Invalid argument 'offset'")
        if not isinstance(include, list):
            raise RpcError(-103, "Invalid argument 'include'")
        # Every component here is built in; dynamic (virtual) components would be all that is listed.
        keys = [] if params.get("dynamic_only") is True else [key for key in self.status() if key != "sys"]
        status, config = self.status(), self.config()
        components = [{"key": key, **({"status": status[key]} if "status" in include else {}),
                       **({"config": config[key]} if "config" in include else {})} for key in keys[offset:]]
        return {"components": components, "cfg_rev": self.cfg_rev, "offset": offset, "total": len(keys)}

    def _reboot_later(self, params: dict[str, Any]) -> None:
        delay_ms = params.get("delay_ms", 1000)
        if not _is_number(delay_ms) or delay_ms < 0:
            raise RpcError(-103, "Invalid argument 'delay_ms'")
        self.spawn(self._reboot(delay_ms / 1000))

    async def _reboot(self, delay_s: float) -> None:
        await self.context.clock.sleep(delay_s)
        for socket in self.websockets:
            await socket.close()
        self._cancel_timer()
        self._boot = self.context.clock.now()
        initial = self.switch_config["initial_state"]
        self.output = {"on": True, "off": False, "match_input": False}.get(initial, self.output)
        self.source = "init"
        self._power_changed()
        self._notify()

    # --- switching, timers and the meter --------------------------------------------------------------------

    def _set_output(self, on: bool, source: str, toggle_after: float | None = None) -> None:
        self._cancel_timer()
        self.output, self.source = on, source
        if on:
            self.errors = []
        self._power_changed()
        if toggle_after is None and self.switch_config["auto_off" if on else "auto_on"]:
            toggle_after = self.switch_config["auto_off_delay" if on else "auto_on_delay"]
        if toggle_after and self.output == on:
            self._start_timer(float(toggle_after))

    def _power_changed(self) -> None:
        if self.output and self.load_w > self.switch_config["power_limit"]:
            self.output, self.source, self.errors = False, "limit_switch", ["overpower"]
            self._cancel_timer()
        self._meter.set_power(self.context.clock.now(), self.apower)

    def _start_timer(self, duration: float) -> None:
        started = self.context.clock.now()
        self._timer = (round(started, 2), duration)
        if self.serving:
            self._timer_task = self.spawn(self._flip_after(started + duration))

    def _cancel_timer(self) -> None:
        self._timer = None
        if self._timer_task is not None and self._timer_task is not asyncio.current_task():
            self._timer_task.cancel()
        self._timer_task = None

    async def _flip_after(self, deadline: float) -> None:
        clock = self.context.clock
        # Wait in slices of at most a real second, so a change of clock speed is honoured.
        while (remaining := deadline - clock.now()) > 0:
            await clock.sleep(min(remaining, clock.speed))
        self._set_output(not self.output, "timer")
        self._notify()

    async def _every_minute(self) -> None:
        """Like the firmware, push the energy counters to subscribers once a (simulated) minute."""
        clock = self.context.clock
        while True:
            await clock.sleep(60 - clock.now() % 60)
            self._publish({"switch:0": {"id": 0, "aenergy": self._meter.aenergy(clock.now())}})

    # --- notifications --------------------------------------------------------------------------------------

    def _notify_view(self) -> dict[str, Any]:
        return {component: {key: value for key, value in fields.items() if key not in VOLATILE_STATUS}
                for component, fields in self.status().items()}

    def _notify(self) -> None:
        """Send what changed since the last notification to every subscriber, as NotifyStatus."""
        view = self._notify_view()
        changes = _changes(self._notified, view)
        self._notified = view
        if changes:
            self._publish(changes)

    def _publish(self, changes: dict[str, Any]) -> None:
        params = {"ts": round(self.context.clock.now(), 2), **changes}
        peers = list(self._peers.items())
        if peers:
            self.spawn(self._send_notifications(peers, params))
        if self._mqtt is not None:
            self.spawn(self._mqtt_notify(self._mqtt, params))

    async def _send_notifications(self, peers: list[tuple[web.WebSocketResponse, str]],
                                  params: dict[str, Any]) -> None:
        for socket, src in peers:
            frame = {"src": self.shelly_id, "dst": src, "method": "NotifyStatus", "params": params}
            await self.send_text(socket, json.dumps(frame))

    # --- MQTT channel -------------------------------------------------------------------------------------

    async def _mqtt_channel(self, port: int, connected: asyncio.Event) -> None:
        """RPC over MQTT: `<prefix>/rpc` in, `<src>/rpc` out; notifications, status and `online` published.

        Reconnects like the firmware when the broker goes away.
        """
        prefix = self.shelly_id
        while True:
            try:
                will = aiomqtt.Will(f"{prefix}/online", "false", qos=1, retain=True)
                async with aiomqtt.Client(self.context.mqtt_host, port, identifier=prefix,
                                          will=will) as client:
                    await client.subscribe(f"{prefix}/rpc", qos=1)
                    await client.subscribe(f"{prefix}/command/#", qos=1)
                    await client.publish(f"{prefix}/online", "true", qos=1, retain=True)
                    self._mqtt = client
                    connected.set()
                    self._notify()
                    await self._mqtt_send(client, f"{prefix}/status/switch:0", self._switch_status(0))
                    async for message in client.messages:
                        await self._on_mqtt(client, message.topic.value, bytes(message.payload))
            except aiomqtt.MqttError:
                self._mqtt = None
                await asyncio.sleep(1.0)

    async def _on_mqtt(self, client: aiomqtt.Client, topic: str, payload: bytes) -> None:
        if self.fault == "offline":
            return
        prefix, text = self.shelly_id, payload.decode("utf-8", "replace").strip()
        if topic == f"{prefix}/rpc":
            try:
                frame = parse_json(text)
            except ValueError:
                return
            reply = self.answer(frame, "MQTT")
            if reply is not None and "id" in frame and _is_topic_level(frame.get("src")):
                await self._mqtt_send(client, f"{frame['src']}/rpc", reply)
        elif topic == f"{prefix}/command/switch:0":
            if text in ("on", "off", "toggle"):
                self._set_output({"on": True, "off": False, "toggle": not self.output}[text], "MQTT")
            await self._mqtt_send(client, f"{prefix}/status/switch:0", self._switch_status(0))
        elif topic == f"{prefix}/command" and text == "status_update":
            for key, value in self.status().items():
                await self._mqtt_send(client, f"{prefix}/status/{key}", value)
        self._notify()

    async def _mqtt_notify(self, client: aiomqtt.Client, params: dict[str, Any]) -> None:
        prefix = self.shelly_id
        frame = {"src": prefix, "dst": f"{prefix}/events", "method": "NotifyStatus", "params": params}
        await self._mqtt_send(client, f"{prefix}/events/rpc", frame)
        if "switch:0" in params:
            await self._mqtt_send(client, f"{prefix}/status/switch:0", self._switch_status(0))

    async def _mqtt_send(self, client: aiomqtt.Client, topic: str, message: Any) -> None:
        """Publish as the device would under its current fault; a lost broker is for the reconnect loop."""
        if self.fault == "offline":
            return
        if self.fault == "slow":
            await asyncio.sleep(SLOW_REPLY_S)
        payload = GARBAGE if self.fault == "garbage" else json.dumps(message)
        # A broker that went away mid-publish never acknowledges it; the reconnect loop takes over from there.
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(5):
                await client.publish(topic, payload, qos=1)


def _changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The keys of `new` that differ from `old`, recursively; a changed component keeps its `id`."""
    changed: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            inner = _changes(before, value)
            if inner:
                changed[key] = {"id": value["id"], **inner} if "id" in value else inner
        elif value != before:
            changed[key] = value
    return changed


def _is_topic_level(src: Any) -> bool:
    """Whether a caller's src can head a reply topic. Brokers such as mosquitto disconnect a client that
    publishes to a topic with wildcards, control characters, non-characters or broken UTF-8 in it."""
    if not isinstance(src, str) or not src or "+" in src or "#" in src:
        return False
    if any(ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F or 0xFDD0 <= ord(char) <= 0xFDEF
           or ord(char) & 0xFFFE == 0xFFFE for char in src):
        return False
    try:
        return len(src.encode()) < 60000
    except UnicodeEncodeError:
        return False


def _query_value(value: str) -> Any:
    """A query parameter as the firmware reads it: JSON when it parses (`true`, `0`, `"x"`), else the text."""
    try:
        return parse_json(value)
    except ValueError:
        return value


def _config_param(params: dict[str, Any]) -> dict[str, Any]:
    config = params.get("config")
    if not isinstance(config, dict):
        raise RpcError(-103, "Missing required 'config'" if config is None else "Invalid argument 'config'")
    return config


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
