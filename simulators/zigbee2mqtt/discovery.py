"""Home Assistant MQTT discovery as Zigbee2MQTT 2.1.3 builds it (lib/extension/homeassistant.ts at tag 2.1.3):
entities from a device's exposes (`exposeToConfig`), the bridge's own device and its entities
(`getBridgeEntity`), the device block (`getDevicePayload`) and the topics filled in by `discover`.

Line numbers below are of that file at the tag, so each rule can be checked against its source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simulators.zigbee2mqtt.devices import ZigbeeDevice
from simulators.zigbee2mqtt.exposes import ACCESS_SET, ACCESS_STATE
from simulators.zigbee2mqtt.wire import VERSION, compact_json, encoded_base_topic

# The entries of BINARY_/NUMERIC_/ENUM_DISCOVERY_LOOKUP (l. 53, 110, 273) for the properties simulated here.
BINARY_LOOKUP: dict[str, dict[str, Any]] = {
    "battery_low": {"entity_category": "diagnostic", "device_class": "battery"},
    "contact": {"device_class": "door"},
    "occupancy": {"device_class": "occupancy"},
}
NUMERIC_LOOKUP: dict[str, dict[str, Any]] = {
    "battery": {"device_class": "battery", "state_class": "measurement"},
    "humidity": {"device_class": "humidity", "state_class": "measurement"},
    "illuminance": {"device_class": "illuminance", "state_class": "measurement"},
    "linkquality": {"enabled_by_default": False, "entity_category": "diagnostic", "icon": "mdi:signal",
                    "state_class": "measurement"},
    "local_temperature": {"device_class": "temperature", "state_class": "measurement"},
    "pressure": {"device_class": "atmospheric_pressure", "state_class": "measurement"},
    "temperature": {"device_class": "temperature", "state_class": "measurement"},
    "voltage": {"device_class": "voltage", "enabled_by_default": False, "entity_category": "diagnostic",
                "state_class": "measurement"},
}
ENUM_LOOKUP: dict[str, dict[str, Any]] = {
    "effect": {"enabled_by_default": False, "icon": "mdi:palette"},
    "power_on_behavior": {"entity_category": "config", "icon": "mdi:power-settings"},
}
LOG_LEVELS = ["error", "warning", "info", "debug"]  # lib/util/settings.ts l. 17


@dataclass
class Entry:
    """One DiscoveryEntry: the HA component, its object id, and the payload before topics are filled in."""

    component: str
    object_id: str
    payload: dict[str, Any]


def expose_entries(expose: dict[str, Any], all_exposes: list[dict[str, Any]]) -> list[Entry]:
    """exposeToConfig (l. 493-1251) for one expose of a device with no endpoints."""
    kind, features = expose["type"], {f["name"]: f for f in expose.get("features", [])}
    prop, access = expose.get("property", ""), expose.get("access", 0)
    template = f"{{{{ value_json.{prop} }}}}"
    entries: list[Entry] = []
    if kind == "light":  # l. 510-580
        modes = (["xy"] if "color_xy" in features else []) + (["color_temp"] if "color_temp" in features else [])
        payload: dict[str, Any] = {"name": None, "brightness": "brightness" in features, "schema": "json",
                                   "command_topic": True, "brightness_scale": 254,
                                   "supported_color_modes": modes or ["brightness"]}
        if "color_temp" in features:
            payload.update(max_mireds=features["color_temp"]["value_max"],
                           min_mireds=features["color_temp"]["value_min"])
        effects = _unique(value for e in all_exposes if e["type"] == "enum" and e["name"] == "effect"
                          for value in e["values"])
        if effects:
            payload.update(effect=True, effect_list=effects)
        entries.append(Entry("light", "light", payload))
    elif kind == "lock":  # l. 757-778
        state = features["state"]
        entries.append(Entry("lock", "lock", {
            "name": None, "command_topic": True, "value_template": f"{{{{ value_json.{state['property']} }}}}",
            "state_locked": state["value_on"], "state_unlocked": state["value_off"]}))
    elif kind == "climate":
        entries.extend(_climate(features))
    elif kind == "binary" and access & ACCESS_SET:  # l. 964-983
        entries.append(Entry("switch", f"switch_{expose['name']}", {
            "name": expose["label"], "command_topic": True, "command_topic_postfix": prop,
            "value_template": (f"{{% if value_json.{prop} %}}true{{% else %}}false{{% endif %}}"
                               if isinstance(expose["value_on"], bool) else template),
            "payload_on": _js_string(expose["value_on"]), "payload_off": _js_string(expose["value_off"]),
            **BINARY_LOOKUP.get(expose["name"], {})}))
    elif kind == "binary":  # l. 984-998
        entries.append(Entry("binary_sensor", expose["name"], {
            "name": expose["label"], "value_template": template, "payload_on": expose["value_on"],
            "payload_off": expose["value_off"], **BINARY_LOOKUP.get(expose["name"], {})}))
    elif kind == "numeric":
        entries.append(_numeric(expose, template))
    elif kind == "enum":
        entries.extend(_enum(expose, template))
    # l. 1227-1249: an expose's category wins; sensors cannot be `config`; a device class names the entity.
    for entry in entries:
        if expose.get("category") in ("config", "diagnostic"):
            entry.payload["entity_category"] = expose["category"]
        if entry.component in ("binary_sensor", "sensor") and entry.payload.get("entity_category") == "config":
            entry.payload["entity_category"] = "diagnostic"
        if entry.payload.get("device_class"):
            entry.payload.pop("name", None)
    return entries


def _climate(features: dict[str, dict[str, Any]]) -> list[Entry]:
    """l. 615-755, for a heating-only thermostat (no cooling setpoint, fan, swing or preset)."""
    setpoint = features.get("occupied_heating_setpoint") or features["current_heating_setpoint"]
    temperature = features["local_temperature"]
    payload: dict[str, Any] = {
        "name": None, "state_topic": False, "temperature_unit": "C",
        **({"temp_step": setpoint["value_step"]} if "value_step" in setpoint else {}), "min_temp": _js_string(setpoint["value_min"]), "max_temp": _js_string(setpoint["value_max"]),
        "current_temperature_topic": True,
        "current_temperature_template": f"{{{{ value_json.{temperature['property']} }}}}",
        "temperature_command_topic": setpoint["name"],
        "temperature_state_template": f"{{{{ value_json.{setpoint['property']} }}}}",
        "temperature_state_topic": True}
    if mode := features.get("system_mode"):
        payload.update(mode_state_topic=True, mode_state_template=f"{{{{ value_json.{mode['property']} }}}}",
                       modes=[value for value in mode["values"] if value != "sleep"], mode_command_topic=True)
    if state := features.get("running_state"):
        payload.update(action_topic=True, action_template=(
            "{% set values = {None:None,'idle':'idle','heat':'heating','cool':'cooling','fan_only':'fan'} %}"
            f"{{{{ values[value_json.{state['property']}] }}}}"))
    return [Entry("climate", "climate", payload)]


def _numeric(expose: dict[str, Any], template: str) -> Entry:
    """l. 1003-1089: a settable number is a `number`, any other a `sensor`."""
    name, unit = expose["name"], expose.get("unit")
    lookup = NUMERIC_LOOKUP.get(name, {})
    if expose.get("access", 0) & ACCESS_SET:
        payload = {"name": expose["label"], "value_template": template, "command_topic": True,
                   "command_topic_postfix": expose["property"], **({"unit_of_measurement": unit} if unit else {}),
                   **({"step": expose["value_step"]} if expose.get("value_step") else {}), **lookup}
        if lookup.get("device_class") != "temperature":
            payload.pop("device_class", None)
        payload.update({key: expose[field] for key, field in (("min", "value_min"), ("max", "value_max"))
                        if expose.get(field) is not None})
        return Entry("number", name, payload)
    by_unit = ({"device_class": "energy", "state_class": "total_increasing"} if unit in ("Wh", "kWh") else
               {"device_class": "current", "state_class": "measurement"} if unit in ("A", "mA") else
               {"device_class": "power", "state_class": "measurement"} if unit in ("mW", "W", "kW") else {})
    payload = {"name": expose["label"], "value_template": template, "enabled_by_default": True,
               **({"unit_of_measurement": unit} if unit else {}), **lookup, **by_unit}
    if payload.get("device_class") and not payload.get("unit_of_measurement"):
        payload.pop("device_class")
    if payload.get("entity_category") == "config":
        payload["entity_category"] = "diagnostic"
    return Entry("sensor", name, payload)


def _enum(expose: dict[str, Any], template: str) -> list[Entry]:
    """l. 1091-1183: one value and settable is a `button`, settable a `select` (only: no sensor besides),
    readable only a `sensor`."""
    prop, access, values = expose["property"], expose.get("access", 0), expose["values"]
    lookup = ENUM_LOOKUP.get(expose["name"], {})
    readable = bool(access & ACCESS_STATE)
    if access & ACCESS_SET and len(values) == 1:
        return [Entry("button", prop, {"name": expose["label"], "state_topic": False, "command_topic": True,
                                       "command_topic_postfix": prop, "payload_press": str(values[0]), **lookup})]
    if access & ACCESS_SET:
        return [Entry("select", prop, {"name": expose["label"], **({"value_template": template} if readable else {}),
                                       "state_topic": readable, "command_topic": True,
                                       "command_topic_postfix": prop, "options": [str(v) for v in values],
                                       **lookup})]
    if readable:
        return [Entry("sensor", prop, {"name": expose["label"], "value_template": template, **lookup})]
    return []


def bridge_entries(base_topic: str) -> list[Entry]:
    """getBridgeEntity (l. 1942-2069): the bridge's own entities, with the topics it gives them."""
    bridge = f"{base_topic}/bridge"
    return [
        Entry("binary_sensor", "connection_state", {
            "name": "Connection state", "device_class": "connectivity", "entity_category": "diagnostic",
            "state_topic": True, "state_topic_postfix": "state", "value_template": "{{ value_json.state }}",
            "payload_on": "online", "payload_off": "offline", "availability": False}),
        Entry("binary_sensor", "restart_required", {
            "name": "Restart required", "device_class": "problem", "entity_category": "diagnostic",
            "enabled_by_default": False, "state_topic": True, "state_topic_postfix": "info",
            "value_template": "{{ value_json.restart_required }}", "payload_on": True, "payload_off": False}),
        Entry("button", "restart", {"name": "Restart", "device_class": "restart", "state_topic": False,
                                    "command_topic": f"{bridge}/request/restart", "payload_press": ""}),
        Entry("select", "log_level", {
            "name": "Log level", "entity_category": "config", "state_topic": True, "state_topic_postfix": "info",
            "value_template": "{{ value_json.log_level | lower }}", "command_topic": f"{bridge}/request/options",
            "command_template": '{"options": {"advanced": {"log_level": "{{ value }}" } } }',
            "options": LOG_LEVELS}),
        Entry("sensor", "version", {"name": "Version", "icon": "mdi:zigbee", "entity_category": "diagnostic",
                                    "state_topic": True, "state_topic_postfix": "info",
                                    "value_template": "{{ value_json.version }}"}),
        Entry("sensor", "coordinator_version", {
            "name": "Coordinator version", "icon": "mdi:chip", "entity_category": "diagnostic",
            "enabled_by_default": False, "state_topic": True, "state_topic_postfix": "info",
            "value_template": "{{ value_json.coordinator.meta.revision }}"}),
        Entry("sensor", "network_map", {
            "name": "Network map", "entity_category": "diagnostic", "enabled_by_default": False,
            "state_topic": True, "state_topic_postfix": "response/networkmap",
            "value_template": "{{ now().strftime('%Y-%m-%d %H:%M:%S') }}",
            "json_attributes_topic": f"{bridge}/response/networkmap",
            "json_attributes_template": "{{ value_json.data.value | tojson }}"}),
        Entry("switch", "permit_join", {
            "name": "Permit join", "icon": "mdi:human-greeting-proximity", "state_topic": True,
            "state_topic_postfix": "info", "value_template": "{{ value_json.permit_join | lower }}",
            "command_topic": f"{bridge}/request/permit_join", "state_on": "true", "state_off": "false",
            "payload_on": '{"time": 254}', "payload_off": '{"time": 0}'}),
    ]


@dataclass
class Coordinator:
    """What the bridge's device block says of the coordinator (getDevicePayload, l. 1849-1854)."""

    ieee: str
    type: str
    revision: int

    @property
    def identifier(self) -> str:
        return f"zigbee2mqtt_bridge_{self.ieee}"


def device_block(device: ZigbeeDevice, coordinator: Coordinator) -> dict[str, Any]:
    """getDevicePayload (l. 1820-1865) for a device: 2.x's `model` (description) and `model_id`."""
    block: dict[str, Any] = {"identifiers": [f"zigbee2mqtt_{device.ieee}"], "name": device.friendly_name,
                             "model": device.description, "model_id": device.model, "manufacturer": device.vendor,
                             "via_device": coordinator.identifier}
    if device.software_build_id is not None:
        block["sw_version"] = device.software_build_id
    return block


def bridge_block(coordinator: Coordinator) -> dict[str, Any]:
    """getDevicePayload (l. 1820-1865) for the bridge, named by its `homeassistant.name` option (l. 370)."""
    return {"identifiers": [coordinator.identifier], "name": "Zigbee2MQTT Bridge", "sw_version": VERSION,
            "model": "Bridge", "manufacturer": "Zigbee2MQTT",
            "hw_version": f"{coordinator.type} {coordinator.revision}"}


def discovery_configs(device: ZigbeeDevice, base_topic: str, coordinator: Coordinator) -> list[tuple[str, str]]:
    """(topic, retained payload) of each discovery config for `device`, served by the bridge at `base_topic`."""
    exposes = device.exposes()
    entries = [entry for expose in exposes for entry in expose_entries(expose, exposes)]
    block = device_block(device, coordinator)
    return [_config(entry, base_topic, device.friendly_name, device.ieee, device.ieee, block) for entry in entries]


def bridge_configs(base_topic: str, coordinator: Coordinator) -> list[tuple[str, str]]:
    """(topic, retained payload) of each discovery config of the bridge device itself."""
    key = f"{encoded_base_topic(base_topic)}_{coordinator.ieee}"  # getDiscoveryTopic, l. 1898-1901
    return [_config(entry, base_topic, "bridge", key, f"bridge_{coordinator.ieee}", bridge_block(coordinator))
            for entry in bridge_entries(base_topic)]


def _config(entry: Entry, base_topic: str, name: str, topic_key: str, entity_id: str,
            block: dict[str, Any]) -> tuple[str, str]:
    """discover (l. 1491-1716): fill in topics, object and unique ids, device, origin and availability."""
    payload = dict(entry.payload)
    base = f"{base_topic}/{name}"
    state_topic = base + (f"/{payload.pop('state_topic_postfix')}" if "state_topic_postfix" in payload else "")
    if payload.get("state_topic", True):
        payload["state_topic"] = state_topic
    else:
        payload.pop("state_topic")
    suggested = "_".join(block["name"].split()).lower()
    if entry.object_id.startswith(entry.component) and "_" in entry.object_id:
        suggested += "_" + entry.object_id.split("_", 1)[1]
    elif not entry.object_id.startswith(entry.component):
        suggested += f"_{entry.object_id}"
    payload["object_id"] = suggested
    payload["unique_id"] = f"{entity_id}_{entry.object_id}_{base_topic}"
    payload["device"] = block
    payload["origin"] = {"name": "Zigbee2MQTT", "sw": VERSION, "url": "https://www.zigbee2mqtt.io"}
    if payload.pop("availability", True):
        payload["availability"] = [{"topic": f"{base_topic}/bridge/state", "value_template": "{{ value_json.state }}"}]
        if name != "bridge":
            payload["availability"].append({"topic": f"{base}/availability",
                                            "value_template": "{{ value_json.state }}"})
        payload["availability_mode"] = "all"
    postfix = payload.pop("command_topic_postfix", None)
    if payload.get("command_topic") is True:
        payload["command_topic"] = f"{base}/set" + (f"/{postfix}" if postfix else "")
    for key in ("mode_state_topic", "current_temperature_topic", "temperature_state_topic", "action_topic"):
        if payload.get(key):
            payload[key] = state_topic
    if payload.get("mode_command_topic"):
        payload["mode_command_topic"] = f"{base}/set/system_mode"
    if payload.get("temperature_command_topic"):
        payload["temperature_command_topic"] = f"{base}/set/{payload['temperature_command_topic']}"
    return f"homeassistant/{entry.component}/{topic_key}/{entry.object_id}/config", compact_json(payload)


def _unique(values: Any) -> list[Any]:
    return list(dict.fromkeys(values))


def _js_string(value: Any) -> str:
    """A value as JavaScript's toString writes it: true, 5 (not True, 5.0)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
