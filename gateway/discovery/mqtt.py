"""MQTT discovery: Tasmota discovery, Zigbee2MQTT's bridge/devices, and Home Assistant MQTT discovery.

Each protocol's payload, validated, and the topics it lets a device own live in a module of its own (tasmota.py,
zigbee2mqtt.py, homeassistant.py); this one listens, keeps what lies between messages (which device topic is
whose, which entities make a Home Assistant device) and adopts the devices into the registry.

Every payload is untrusted: it is size-limited, validated, its text cleaned, and a malformed one is logged once
per topic and changes nothing. Each device's record carries the topics it owns, which become its handle's
allowlist, so discovery decides what a handle can reach: a device owns only topics in its own namespace. Only
the bridge's devices own topics under the Zigbee2MQTT base topic; `<base>/bridge` is the bridge's own.
Every Zigbee2MQTT instance on the broker is followed: `[discovery] zigbee2mqtt_topic` is the one expected from the
start, and any other base topic becomes a bridge once it shows itself as one (its retained `bridge/info`, or a
`bridge/devices` listing a coordinator) on a base topic nothing else holds; its devices' keys carry its base topic,
so devices of two bridges never share a key, and its topics become its devices' alone like the first one's.
The registry refuses what is already another device's or reserved (the gateway's `pyuse/` topics, `$` topics,
the discovery prefixes, the Zigbee2MQTT base topic for all but the bridge's devices); such a config is logged
once and changes nothing. Zigbee2MQTT also publishes Home Assistant configs for its devices; those are skipped
in favour of the native record, as are configs for a Tasmota device that announced itself natively.

One module, past 400 lines, because the three protocols' handlers share one listener's state: the topic owners,
the paced state requests, the refusal log and removal, and Home Assistant configs that defer to native records.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from functools import partial
from typing import Any

from pydantic import ValidationError

from gateway.config import DiscoverySection
from gateway.devices.docs import DocLibrary
from gateway.devices.model import Device
from gateway.devices.registry import ClaimRefused, DeviceLimit, Registry
from gateway.discovery.homeassistant import HA_COMPONENTS, HA_TOPICS, expand, ha_entity, with_base
from gateway.discovery.tasmota import TASMOTA_GROUP, TasmotaConfig, tasmota_topic, tasmota_topics
from gateway.discovery.zigbee2mqtt import Z2mDevice, check_bridge, z2m_device, z2m_exposes, z2m_readable
from gateway.transports.mqtt import MqttTransport, Subscription
from gateway.transports.mqtt_message import Message
from gateway.untrusted import one_line, valid_topic

log = logging.getLogger(__name__)

MAX_PAYLOAD = 256 * 1024
MAX_ENTITIES = 64
MAX_LOGGED = 1000  # topics whose refusal is logged: forged configs on ever new topics cannot flood the log
ASK_INTERVAL_S = 0.01
MAX_BRIDGES = 32  # forged bridges cannot reserve topics without end
NOT_BRIDGES = ("tele", "stat", "cmnd", "tasmota")  # Tasmota's: a forged bridge there would shut its devices out


class MqttDiscovery:
    def __init__(self, mqtt: MqttTransport, registry: Registry, docs: DocLibrary, settings: DiscoverySection) -> None:
        self.mqtt = mqtt
        self.registry = registry
        self.docs = docs
        self.settings = settings
        self.z2m = settings.zigbee2mqtt_topic.rstrip("/")
        registry.reserve(f"{settings.ha_prefix.rstrip('/')}/#", "Home Assistant discovery")
        registry.reserve("tasmota/discovery/#", "Tasmota discovery")
        registry.reserve(f"cmnd/{TASMOTA_GROUP}/#", "Tasmota's group topic, which every Tasmota device obeys")
        registry.reserve(f"{self.z2m}/bridge/#", "the Zigbee2MQTT bridge")
        # Only the bridge's devices (and those the config declares) own topics under its base topic: a Home
        # Assistant or Tasmota config there is a forgery, which could otherwise come first and squat a device's
        # topics (the bridge's own Home Assistant configs are skipped before).
        registry.reserve(f"{self.z2m}/#", "the Zigbee2MQTT bridge's devices", keys=("z2m:", "static:"))
        self._subscriptions: list[Subscription] = []
        self._tasmota_topics: dict[str, tuple[str, TasmotaConfig]] = {}  # device topic -> (key, config)
        self._bridges: dict[str, dict[str, str]] = {self.z2m: {}}  # base topic -> friendly name -> key
        self._ha_entities: dict[str, dict[str, dict[str, Any]]] = {}  # device key -> config topic -> entity
        self._ha_watch: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}  # topic -> [(key, role, entity)]
        self._ha_listened: set[str] = set()
        self._logged: set[str] = set()
        self._last_message = 0.0
        self._asks: asyncio.Queue[tuple[str, Any, str | None]] = asyncio.Queue()
        self._asker: asyncio.Task[None] | None = None
        self._heard: set[str] = set()  # Zigbee devices that reported their state: no need to ask them

    async def settle(self, quiet_s: float = 0.25, limit_s: float = 3.0) -> None:
        """Wait until the burst of retained discovery messages is over (for one-shot commands)."""
        if not self.mqtt.connected:
            return
        deadline = time.monotonic() + limit_s
        started = time.monotonic()
        while time.monotonic() < deadline:
            if time.monotonic() - max(self._last_message, started) >= quiet_s:
                return
            await asyncio.sleep(quiet_s / 5)

    async def start(self) -> None:
        prefix = self.settings.ha_prefix.rstrip("/")
        handlers = [("tasmota/discovery/+/config", self._tasmota_config), ("tele/+/+", self._tasmota_message),
                    ("stat/+/RESULT", self._tasmota_message),
                    (f"{self.z2m}/#", partial(self._z2m_message, self.z2m)), ("+/bridge/info", self._z2m_bridge),
                    ("+/bridge/devices", self._z2m_bridge), ("+/bridge/state", self._z2m_bridge),
                    (f"{prefix}/+/+/config", self._ha_config), (f"{prefix}/+/+/+/config", self._ha_config)]
        if "/" in self.z2m:  # a base topic of more than one level, which `+/bridge/...` does not match
            handlers += [(f"{self.z2m}/bridge/{leaf}", self._z2m_bridge) for leaf in ("devices", "state")]
        self._asker = asyncio.create_task(self._ask_in_turn())
        for topic_filter, handler in handlers:
            self._subscriptions.append(await self.mqtt.subscribe(topic_filter, self._guarded(handler)))

    def stop(self) -> None:
        for subscription in self._subscriptions:
            subscription.cancel()
        self._subscriptions.clear()
        if self._asker is not None:
            self._asker.cancel()

    def _ask(self, topic: str, payload: Any, key: str | None = None) -> None:
        """Ask a device for its state, as Home Assistant's integrations do when a device appears; not asked if the
        device `key` has reported meanwhile."""
        self._asks.put_nowait((topic, payload, key))

    async def _ask_in_turn(self) -> None:
        """A few asks at a time: a bridge's whole list at once would bury it (and its radio) while it starts."""
        while True:
            topic, payload, key = await self._asks.get()
            if key in self._heard or not self.mqtt.connected:
                continue
            with contextlib.suppress(ConnectionError):
                await self.mqtt.publish(topic, payload)
            await asyncio.sleep(ASK_INTERVAL_S)

    def _guarded(self, handler: Any) -> Any:
        def handle(message: Message) -> None:
            self._last_message = time.monotonic()
            if len(message.payload) > MAX_PAYLOAD:
                self._reject(message.topic, f"payload of {len(message.payload)} bytes")
                return
            try:
                handler(message)
            except DeviceLimit:
                pass  # the registry logs that once
            except (ValueError, ValidationError, TypeError, KeyError, AttributeError, RecursionError) as exc:
                self._reject(message.topic, str(exc).splitlines()[0][:300])
        return handle

    def _reject(self, topic: str, why: str) -> None:
        """Log a refused payload once per topic (a retained config comes again at every reconnect)."""
        if topic in self._logged or len(self._logged) > MAX_LOGGED:
            return
        self._logged.add(topic)
        if len(self._logged) > MAX_LOGGED:
            log.warning("more than %d discovery topics were refused: further refusals are not logged", MAX_LOGGED)
            return
        log.warning("ignoring the discovery payload on %s: %s", one_line(topic, 200), one_line(why, 300))

    # Tasmota
    def _tasmota_config(self, message: Message) -> None:
        mac = message.topic.split("/")[2].upper()
        if not message.payload:
            self._tasmota_unmap(f"tasmota:{mac}")
            self._remove(f"tasmota:{mac}")
            return
        config = TasmotaConfig.model_validate_json(message.payload)
        payload = json.loads(message.payload)
        found = self.docs.match("tasmota", {"fields": payload, "name": config.md})
        if found is None:
            raise ValueError(f"no device doc matches this Tasmota device (lt_st={config.lt_st})")
        doc, _ = found
        key = f"tasmota:{config.mac.upper()}"
        topics = tasmota_topics(config)
        name = one_line(config.dn or next((name for name in config.fn if name), "") or config.t)
        device = Device(key=key, name=name, kind=doc.kind, transport="mqtt", base_topic=config.t, topics=topics,
                        source="mqtt", api={"model": one_line(config.md)})
        copy = f"ha:{config.mac.upper()}"  # its Home Assistant configs, should it have announced those first
        reason = self.registry.conflict(device, replacing={copy})
        if reason:
            raise ClaimRefused(reason)
        self._drop_ha_copies(config.mac.upper())
        self.registry.upsert(device)
        self._tasmota_unmap(key)  # its topic may have changed
        self._tasmota_topics[config.t] = (key, config)
        self._ask(self._tasmota_command(config, "STATE"), "")

    def _tasmota_unmap(self, key: str) -> None:
        self._tasmota_topics = {topic: entry for topic, entry in self._tasmota_topics.items() if entry[0] != key}

    @staticmethod
    def _tasmota_command(config: TasmotaConfig, command: str) -> str:
        return tasmota_topic(config, config.tp[0]) + command

    def _tasmota_message(self, message: Message) -> None:
        _, topic, leaf = message.topic.split("/", 2)
        if topic not in self._tasmota_topics:
            return
        key, config = self._tasmota_topics[topic]
        text = message.payload.decode("utf-8", "replace").strip()
        if leaf == "LWT":
            if text in (config.onln, config.ofln):
                self.registry.set_online(key, text == config.onln)
                if text == config.onln:
                    self._ask(self._tasmota_command(config, "STATE"), "")
            return
        if leaf in ("STATE", "RESULT", "SENSOR"):
            data = json.loads(text) if text.startswith("{") else {}
            changes = {name.lower(): value for name, value in data.items()
                       if isinstance(value, (str, int, float, bool)) and name not in ("Time", "Uptime")}
            if changes:
                self.registry.update_state(key, changes)

    # Zigbee2MQTT
    def _z2m_bridge(self, message: Message) -> None:
        """A bridge's own topics, whatever its base topic."""
        base, _, leaf = message.topic.rpartition("/bridge/")
        if base not in self._bridges and not self._z2m_adopt(base, leaf, message.payload):
            return
        if leaf == "devices":
            self._z2m_devices(base, message)
        elif leaf == "state":
            self._z2m_bridge_state(base, message)

    def _z2m_adopt(self, base: str, leaf: str, payload: bytes) -> bool:
        """Follow the bridge on another base topic, once it shows itself as a Zigbee2MQTT bridge."""
        if leaf == "state":
            return False
        check_bridge(leaf, payload)
        if base in NOT_BRIDGES or not valid_topic(base) or base.startswith("$"):
            raise ValueError(f"{base!r} cannot be a Zigbee2MQTT base topic here")
        if len(self._bridges) >= MAX_BRIDGES:
            raise ValueError(f"more than {MAX_BRIDGES} Zigbee2MQTT bridges: this one is not followed")
        whole = Device(key=f"z2m:{base}:", name=base, kind="zigbee2mqtt", transport="mqtt", topics=[f"{base}/#"],
                       source="mqtt")
        reason = self.registry.conflict(whole)
        if reason:
            raise ClaimRefused(f"its base topic is taken: {reason}")
        self.registry.reserve(f"{base}/bridge/#", f"the Zigbee2MQTT bridge at {base}")
        self.registry.reserve(f"{base}/#", f"the devices of the Zigbee2MQTT bridge at {base}",
                              keys=(f"z2m:{base}:", "static:"))
        self._bridges[base] = {}
        self._subscriptions.append(self.mqtt.subscribe_soon(f"{base}/#",
                                                            self._guarded(partial(self._z2m_message, base))))
        log.info("following the Zigbee2MQTT bridge at %s", base)
        return True

    def _z2m_key(self, base: str, ieee_address: str) -> str:
        return f"z2m:{ieee_address}" if base == self.z2m else f"z2m:{base}:{ieee_address}"

    def _z2m_message(self, base: str, message: Message) -> None:
        """A bridge's devices' states and availability (its own topics come through `_z2m_bridge`)."""
        rest = message.topic[len(base) + 1:]
        names = self._bridges[base]
        if rest.endswith("/availability") and rest[:-13] in names:
            state = message.decoded()
            state = state.get("state") if isinstance(state, dict) else state
            if state in ("online", "offline"):
                self.registry.set_online(names[rest[:-13]], state == "online")
        elif rest in names:
            data = message.decoded()
            if isinstance(data, dict):
                self._heard.add(names[rest])
                self.registry.update_state(names[rest], {
                    name: value for name, value in data.items() if isinstance(value, (str, int, float, bool))})

    def _z2m_devices(self, base: str, message: Message) -> None:
        """The bridge's whole list. A device disappears only when a list of nothing but devices leaves it out: an
        entry that is not one could stand for any device, so a list holding one removes nothing."""
        entries = json.loads(message.payload)
        if not isinstance(entries, list):
            raise ValueError("bridge/devices is not a list")
        listed = [device for device in map(z2m_device, entries) if device is not None]
        unreadable = len(entries) - len(listed)
        if unreadable:
            self._reject(message.topic, f"{unreadable} of {len(entries)} entries are not devices, so the devices "
                                        "it leaves out are kept")
        records = self._z2m_records(base, message.topic, listed)
        refused = self.registry.upsert_all([record for record, _ in records])
        known = self._bridges[base]
        names: dict[str, str] = {}
        for record, device in records:
            if record.key in refused:
                self._reject(f"{message.topic} ({device.friendly_name})", refused[record.key])
            elif self.registry.by_key(record.key) is not None:  # not past the registry's limit
                names[device.friendly_name] = record.key
                self._z2m_read(device, record, known)
        for name, key in known.items():
            if key in names.values():
                continue
            if unreadable:
                names.setdefault(name, key)
            else:
                self._remove(key)
        self._bridges[base] = names

    def _z2m_records(self, base: str, topic: str, listed: list[Z2mDevice]) -> list[tuple[Device, Z2mDevice]]:
        """The records of the listed devices a doc knows (not the coordinator, nor one still being interviewed)."""
        records = []
        for device in listed:
            if device.type == "Coordinator" or not device.definition:
                continue
            found = self.docs.match("zigbee2mqtt", {"exposes": z2m_exposes(device.definition),
                                                    "name": device.friendly_name})
            if found is None:
                self._reject(f"{topic} ({device.friendly_name})", "no device doc matches its exposes")
                continue
            doc, _ = found
            device_topic = f"{base}/{device.friendly_name}"
            definition = device.definition
            records.append((Device(
                key=self._z2m_key(base, device.ieee_address), name=one_line(device.friendly_name), kind=doc.kind,
                transport="mqtt", base_topic=device_topic, topics=doc.owned_topics(device_topic), source="mqtt",
                api={"model": one_line(definition.get("model", "")),
                     "vendor": one_line(definition.get("vendor", ""))}), device))
        return records

    def _z2m_read(self, device: Z2mDevice, record: Device, known: dict[str, str]) -> None:
        """Ask a device that is new (or newly named) for what it can tell."""
        readable = z2m_readable(device.definition or {})
        if readable and device.friendly_name not in known:
            self._ask(f"{record.base_topic}/get", {name: "" for name in readable}, record.key)

    def _z2m_bridge_state(self, base: str, message: Message) -> None:
        state = message.decoded()
        state = state.get("state") if isinstance(state, dict) else state
        if state == "offline":
            for key in self._bridges[base].values():
                self.registry.set_online(key, False)

    # Home Assistant
    def _ha_config(self, message: Message) -> None:
        parts = message.topic.split("/")
        component = parts[1]
        if not message.payload:
            self._ha_forget(message.topic)
            return
        config = expand(json.loads(message.payload))
        if not isinstance(config, dict):
            raise ValueError("the config is not a JSON object")
        config = with_base(config)
        device: dict[str, Any] = config["device"] if isinstance(config.get("device"), dict) else {}
        origin: dict[str, Any] = config["origin"] if isinstance(config.get("origin"), dict) else {}
        identifiers = device.get("identifiers") or []
        identifiers = [identifiers] if isinstance(identifiers, str) else [str(item) for item in identifiers][:8]
        if origin.get("name") == "Zigbee2MQTT" or any(item.startswith("zigbee2mqtt_") for item in identifiers):
            return  # the native Zigbee2MQTT record covers it
        if origin.get("name") == "pyuse":
            return  # a pyuse gateway's own entities (gateway/api/homeassistant.py): its pyuse/ topics are reserved
        if any(self.registry.by_key(f"tasmota:{item.upper()}") for item in identifiers):
            return
        if component not in HA_COMPONENTS:
            raise ValueError(f"component {component!r} is not one pyuse controls")
        entity = ha_entity(component, config)
        identity = identifiers[0] if identifiers else str(config.get("unique_id") or message.topic)
        key = f"ha:{one_line(identity, 120)}"
        entities = self._ha_entities.setdefault(key, {})
        if len(entities) >= MAX_ENTITIES and message.topic not in entities:
            raise ValueError("too many entities for one device")
        previous = entities.get(message.topic)
        entities[message.topic] = entity
        name = one_line(device.get("name") or config.get("name") or identity)
        area = one_line(device.get("suggested_area") or "", 60)
        try:
            self._ha_register(key, name, area)
        except ValueError:  # refused (its topics are another's, or no doc fits): the device stays as it was
            self._ha_restore(key, message.topic, previous)
            raise

    def _ha_restore(self, key: str, config_topic: str, previous: dict[str, Any] | None) -> None:
        entities = self._ha_entities[key]
        if previous is not None:
            entities[config_topic] = previous
            return
        del entities[config_topic]
        if not entities:
            del self._ha_entities[key]

    def _ha_register(self, key: str, name: str, area: str) -> None:
        entities = list(self._ha_entities[key].values())
        main = min(entities, key=lambda entity: HA_COMPONENTS.index(entity["component"]))
        found = self.docs.match("homeassistant", {"component": main["component"], "name": name})
        if found is None:
            raise ValueError(f"no device doc for Home Assistant {main['component']} entities")
        doc, _ = found
        topics = sorted({value for entity in entities for field, value in entity.items() if field in HA_TOPICS})
        self.registry.upsert(Device(key=key, name=name, kind=doc.kind, transport="mqtt", area=area, topics=topics,
                                    source="mqtt", api={"main": main, "entities": entities}))
        for entity in entities:
            self._ha_listen(key, entity)

    def _ha_listen(self, key: str, entity: dict[str, Any]) -> None:
        watches = [(entity.get("state_topic"), "state")] + [(item["topic"], "availability")
                                                           for item in entity["availability"]]
        for topic, role in watches:
            if not valid_topic(topic):  # an entity without a state topic
                continue
            watchers = self._ha_watch.setdefault(topic, [])
            if (key, role, entity) not in watchers:
                watchers.append((key, role, entity))
            if topic not in self._ha_listened:
                self._ha_listened.add(topic)
                self._subscriptions.append(self.mqtt.subscribe_soon(topic, self._guarded(self._ha_update)))

    def _ha_update(self, message: Message) -> None:
        text = message.payload.decode("utf-8", "replace").strip()
        value: Any = message.decoded()
        for key, role, entity in self._ha_watch.get(message.topic, []):
            if role == "availability":
                state = value.get("state") if isinstance(value, dict) else text
                for item in entity["availability"]:
                    if item["topic"] == message.topic and state in (item["available"], item["unavailable"]):
                        self.registry.set_online(key, state == item["available"])
            else:
                reading = value if isinstance(value, (str, int, float, bool)) else one_line(text, 80)
                self.registry.update_state(key, {entity["name"]: reading})

    def _ha_forget(self, config_topic: str) -> None:
        for key, entities in list(self._ha_entities.items()):
            if entities.pop(config_topic, None) is not None:
                if entities:
                    device = self.registry.by_key(key)
                    self._ha_register(key, device.name if device else key, device.area if device else "")
                else:
                    del self._ha_entities[key]
                    self._remove(key)

    def _drop_ha_copies(self, identity: str) -> None:
        key = f"ha:{identity}"
        if key in self._ha_entities:
            del self._ha_entities[key]
            self._remove(key)

    def _remove(self, key: str) -> None:
        self.registry.remove(key)
