"""The Zigbee2MQTT 2.x bridge: one MQTT connection, as the real bridge holds, serving the devices paired with it.

The bridge publishes retained `bridge/state` (`{"state":"online"}`, will `offline`), `bridge/info`,
`bridge/devices` (with `definition.exposes` and access bits), `bridge/groups`, per-device JSON availability and
Home Assistant discovery configs. It accepts `<name>/set` (JSON, or a bare state word), `<name>/set/<attr>`,
`<name>/get`, and `bridge/request/<cmd>` with responses on `bridge/response/<cmd>` (`status`, `data`, `error`,
`transaction`). Errors go to `bridge/logging`. One module: what it publishes and the requests it answers share
its MQTT session and its device list.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiomqtt

from simulators.base import SLOW_REPLY_S, Fault, Simulator, cancel_and_wait
from simulators.mqtt_session import MqttSession
from simulators.tasmota import garble
from simulators.zigbee2mqtt.devices import ConverterError, ZigbeeDevice
from simulators.zigbee2mqtt.discovery import discovery_configs
from simulators.zigbee2mqtt.wire import VERSION, compact_json, ieee_address

log = logging.getLogger(__name__)
TICK_S = 30.0  # simulated seconds between physics steps
STATE_WORDS = {"on", "off", "toggle", "open", "close", "stop", "lock", "unlock"}


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
        self.coordinator_ieee = ieee_address(f"{device_id}/coordinator")
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
        will = aiomqtt.Will(f"{self.base_topic}/bridge/state", compact_json({"state": "offline"}), qos=1, retain=True)
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
                                                compact_json({"state": "offline"}), True)])
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
        text = payload if isinstance(payload, str) else compact_json(payload)
        data: str | bytes = garble(text) if garbled and self.fault == "garbage" and text else text
        await self._session.publish(f"{self.base_topic}/{topic}", data, qos=qos, retain=retain)

    async def log(self, level: str, message: str) -> None:
        await self._publish("bridge/logging", {"level": level, "message": message, "namespace": "z2m"})

    async def publish_info(self) -> None:
        until = self.permit_join_end if self.permit_join else None
        end = None if until is None else int(until * 1000)
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
        payload = compact_json(device.payload())
        if device.fault == "garbage":
            payload = garble(payload).decode("utf-8", "replace")
        await self._publish(device.friendly_name, payload, retain=bool(device.options.get("retain", False)))

    async def publish_discovery(self, device: ZigbeeDevice) -> None:
        configs = discovery_configs(device, self.base_topic, self.coordinator_ieee)
        for topic, config in configs:
            await self._session_publish(topic, config)
        self._discovered[device.ieee] = [topic for topic, _ in configs]

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
                raise ValueError(f"Invalid option '{key}': {compact_json(value)}")
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
        raise TypeError("Invalid payload")
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError("Invalid payload") from None
