"""The Zigbee2MQTT 2.x bridge: one MQTT connection, as the real bridge holds, serving the devices paired with it.

The bridge publishes retained `bridge/state` (`{"state":"online"}`, will `offline`), `bridge/info`,
`bridge/devices` (with `definition.exposes` and access bits), `bridge/groups`, `bridge/definitions`,
per-device JSON availability and Home Assistant discovery configs (the bridge's own device among them), and
republishes device states when Home Assistant comes online. It accepts `<name>/set` (JSON, or a bare state
word), `<name>/set/<attr>`, `<name>/get`, and `bridge/request/<cmd>`, which `requests` answers. Errors go to
`bridge/logging`. This module: what the bridge publishes and the commands it carries out, on one MQTT session.
"""

from __future__ import annotations

import asyncio
import copy
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
from simulators.zigbee2mqtt.discovery import Coordinator, bridge_configs, discovery_configs
from simulators.zigbee2mqtt.requests import BridgeRequests
from simulators.zigbee2mqtt.wire import (
    CLUSTERS,
    COMMIT,
    CONVERTERS_VERSION,
    HERDSMAN_VERSION,
    VERSION,
    compact_json,
    ieee_address,
)

log = logging.getLogger(__name__)
TICK_S = 30.0  # simulated seconds between physics steps
STATE_WORDS = {"on", "off", "toggle", "open", "close", "stop", "lock", "unlock"}
HA_STATUS_TOPIC = "homeassistant/status"
# After Home Assistant's `online`, 2.1.3 waits 30 s before republishing states (homeassistant.ts l. 1776-1788).
HA_REPUBLISH_DELAY_S = 30.0
COORDINATOR_REVISION = 20230507


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
        self.coordinator_ieee = ieee_address(f"{device_id}/coordinator")
        self.coordinator = Coordinator(self.coordinator_ieee, "zStack3x0", COORDINATOR_REVISION)
        self.settings: dict[str, Any] = {  # what bridge/info shows as `config`; bridge/request/options changes it
            "homeassistant": {"enabled": homeassistant, "discovery_topic": "homeassistant",
                              "status_topic": HA_STATUS_TOPIC},
            "mqtt": {"base_topic": base_topic}, "availability": {"enabled": True},
            "advanced": {"log_level": "info", "last_seen": "disable"}}
        self.devices: list[ZigbeeDevice] = []
        self.groups = list(groups)
        self.permit_join_end: float | None = None
        self.requests = BridgeRequests(self)
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

    @property
    def homeassistant(self) -> bool:
        return bool(self.settings["homeassistant"]["enabled"])

    def resolve(self, name: str) -> ZigbeeDevice | None:
        return next((d for d in self.devices if name in (d.friendly_name, d.ieee)), None)

    def resolve_group(self, name: Any) -> Group | None:
        """A group by friendly name or ID (a number, or its digits), as zigbee.resolveEntity finds one."""
        return next((g for g in self.groups if name == g.friendly_name or str(name) == str(g.id)), None)

    def name_taken(self, name: str, by: ZigbeeDevice | None = None) -> bool:
        return self.resolve(name) not in (None, by) or self.resolve_group(name) is not None

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
                                    [f"{self.base_topic}/#", HA_STATUS_TOPIC], self._announce, self._receive,
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
        await self.publish("bridge/state", {"state": "online"}, retain=True)
        await self.publish_info()
        await self.publish_devices()
        await self.publish_groups()
        await self.publish_definitions()
        if self.homeassistant:
            await self.publish_all_discovery()
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

    async def publish(self, topic: str, payload: Any, retain: bool = False, qos: int = 0,
                      garbled: bool = True) -> None:
        if self._session is None:
            return
        text = payload if isinstance(payload, str) else compact_json(payload)
        data: str | bytes = garble(text) if garbled and self.fault == "garbage" and text else text
        await self._session.publish(f"{self.base_topic}/{topic}", data, qos=qos, retain=retain)

    async def log(self, level: str, message: str) -> None:
        await self.publish("bridge/logging", {"level": level, "message": message, "namespace": "z2m"})

    async def publish_info(self) -> None:
        # permit_join_end is undefined, so left out, unless joining is permitted (lib/zigbee.ts l. 230-232).
        end = {"permit_join_end": int(self.permit_join_end * 1000)} if self.permit_join_end and self.permit_join else {}
        await self.publish("bridge/info", {  # lib/extension/bridge.ts l. 678-709
            "version": VERSION, "commit": COMMIT, "zigbee_herdsman_converters": {"version": CONVERTERS_VERSION},
            "zigbee_herdsman": {"version": HERDSMAN_VERSION},
            "coordinator": {"ieee_address": self.coordinator.ieee, "type": self.coordinator.type,
                            "meta": {"revision": self.coordinator.revision, "transportrev": 2, "product": 1,
                                     "majorrel": 2, "minorrel": 7, "maintrel": 1}},
            "network": {"pan_id": 6754, "extended_pan_id": "0xdddddddddddddddd", "channel": 11},
            "log_level": self.settings["advanced"]["log_level"], "permit_join": self.permit_join, **end,
            "restart_required": self.requests.restart_required,
            "config": copy.deepcopy(self.settings), "config_schema": {}}, retain=True)

    async def publish_devices(self) -> None:
        """bridge.ts l. 711-768: what is undefined (the coordinator's definition, description ...) is left out."""
        coordinator = {"ieee_address": self.coordinator.ieee, "type": "Coordinator", "network_address": 0,
                       "supported": True, "friendly_name": "Coordinator", "disabled": False,
                       "interviewing": False, "interview_completed": True,
                       "endpoints": {"1": {"scenes": [], "bindings": [], "configured_reportings": [],
                                           "clusters": {"input": [], "output": []}}}}
        await self.publish("bridge/devices", [coordinator] + [d.info() for d in self.devices], retain=True)

    async def publish_groups(self) -> None:
        await self.publish("bridge/groups", [  # bridge.ts l. 771-791
            {"id": g.id, "friendly_name": g.friendly_name, "scenes": [],
             "members": [{"ieee_address": m.ieee, "endpoint": 1} for m in g.members]} for g in self.groups],
            retain=True)

    async def publish_definitions(self) -> None:
        """bridge.ts l. 793-804: the ZCL clusters, and no device here has custom ones."""
        await self.publish("bridge/definitions", {"clusters": CLUSTERS, "custom_clusters": {}}, retain=True)

    async def publish_availability(self, device: ZigbeeDevice, online: bool | None = None) -> None:
        up = device.fault != "offline" if online is None else online
        await self.publish(f"{device.friendly_name}/availability", {"state": "online" if up else "offline"},
                            retain=True, garbled=False)

    async def publish_state(self, device: ZigbeeDevice) -> None:
        if device.fault == "slow":
            await asyncio.sleep(SLOW_REPLY_S)
        payload = compact_json(device.payload())
        if device.fault == "garbage":
            payload = garble(payload).decode("utf-8", "replace")
        await self.publish(device.friendly_name, payload, retain=bool(device.options.get("retain", False)))

    async def publish_all_discovery(self) -> None:
        """The bridge's own device first, then each device (homeassistant.ts l. 475-482)."""
        for topic, config in bridge_configs(self.base_topic, self.coordinator):
            await self._session_publish(topic, config)
        for device in self.devices:
            await self.publish_discovery(device)

    async def publish_discovery(self, device: ZigbeeDevice) -> None:
        configs = discovery_configs(device, self.base_topic, self.coordinator)
        for topic, config in configs:
            await self._session_publish(topic, config)
        self._discovered[device.ieee] = [topic for topic, _ in configs]

    async def _session_publish(self, topic: str, payload: str, retain: bool = True) -> None:
        if self._session:
            await self._session.publish(topic, payload, qos=1, retain=retain)

    async def clear_discovery(self, device: ZigbeeDevice) -> None:
        for topic in self._discovered.pop(device.ieee, []):
            await self._session_publish(topic, "")

    async def _republish_states_later(self) -> None:
        """Home Assistant came online: after a while, every device's last state again (l. 1776-1788)."""
        await self.context.clock.sleep(HA_REPUBLISH_DELAY_S)
        for device in self.devices:
            await self.publish_state(device)

    # --- changes the requests make -------------------------------------------------------------------------------

    async def rename(self, device: ZigbeeDevice, new: str) -> str:
        """Give `device` a new friendly name; returns the old one."""
        old = device.friendly_name
        await self._session_publish(f"{self.base_topic}/{old}", "")
        await self._session_publish(f"{self.base_topic}/{old}/availability", "")
        device.friendly_name = new
        await self.publish_devices()
        if self.homeassistant:
            await self.publish_discovery(device)
        await self.publish_availability(device)
        await self.publish_state(device)
        return old

    async def remove(self, device: ZigbeeDevice) -> None:
        self.devices.remove(device)
        device.bridge = None
        for group in self.groups:
            if device in group.members:
                group.members.remove(device)
        await self.clear_discovery(device)
        await self._session_publish(f"{self.base_topic}/{device.friendly_name}", "")
        await self._session_publish(f"{self.base_topic}/{device.friendly_name}/availability", "")
        await self.publish_groups()
        await self.publish_devices()
        await self.publish_definitions()
        await self.publish("bridge/event", {"type": "device_leave", "data": {
            "ieee_address": device.ieee, "friendly_name": device.friendly_name}})

    async def add_group(self, group_id: int, name: str) -> Group:
        group = Group(group_id, name, [])
        self.groups.append(group)
        await self.publish_groups()
        return group

    async def rename_group(self, group: Group, new: str) -> None:
        await self._session_publish(f"{self.base_topic}/{group.friendly_name}", "")
        group.friendly_name = new
        await self.publish_groups()
        await self.publish_info()

    async def remove_group(self, group: Group) -> None:
        self.groups.remove(group)
        await self._session_publish(f"{self.base_topic}/{group.friendly_name}", "")
        await self.publish_groups()

    async def restart_later(self) -> None:
        await asyncio.sleep(0.5)  # as Zigbee2MQTT does, so the response goes out first
        if self._session:
            await self.publish("bridge/state", {"state": "offline"}, retain=True, garbled=False)
            self._session.drop()
            self._session.resume()

    # --- receiving -----------------------------------------------------------------------------------------------

    async def _receive(self, topic: str, payload: bytes) -> None:
        if self.fault == "offline":
            return
        text = payload.decode("utf-8", "replace")
        if topic == HA_STATUS_TOPIC:
            if self.homeassistant and text.lower() == "online":
                self.spawn(self._republish_states_later())
            return
        prefix = f"{self.base_topic}/"
        if not topic.startswith(prefix):
            return
        rest = topic[len(prefix):]
        if rest.startswith("bridge/request/"):
            if self.fault == "slow":
                await asyncio.sleep(SLOW_REPLY_S)
            await self.requests.answer(rest[len("bridge/request/"):], text)
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
