"""Home Assistant MQTT discovery, as Zigbee2MQTT's homeassistant extension builds it from a device's exposes."""

from __future__ import annotations

from typing import Any

from simulators.zigbee2mqtt.devices import ZigbeeDevice
from simulators.zigbee2mqtt.exposes import ACCESS_SET, ACCESS_STATE
from simulators.zigbee2mqtt.wire import VERSION, compact_json

BINARY_CLASSES = {"occupancy": "occupancy", "contact": "door", "battery_low": "battery"}
NUMERIC_CLASSES: dict[str, dict[str, Any]] = {
    "temperature": {"device_class": "temperature", "state_class": "measurement"},
    "local_temperature": {"device_class": "temperature", "state_class": "measurement"},
    "humidity": {"device_class": "humidity", "state_class": "measurement"},
    "pressure": {"device_class": "atmospheric_pressure", "state_class": "measurement"},
    "illuminance": {"device_class": "illuminance", "state_class": "measurement"},
    "battery": {"device_class": "battery", "state_class": "measurement"},
    "voltage": {"device_class": "voltage", "entity_category": "diagnostic",
                "state_class": "measurement", "enabled_by_default": False},
    "linkquality": {"enabled_by_default": False, "entity_category": "diagnostic",
                    "icon": "mdi:signal", "state_class": "measurement"},
}


def discovery_entries(expose: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(component, object_id, partial payload) for one expose; discovery_configs fills in the topics."""
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
    name: str = expose.get("name", "")
    prop: str = expose.get("property", "")
    access: int = expose.get("access", 0)
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


def discovery_configs(device: ZigbeeDevice, base_topic: str, bridge_ieee: str) -> list[tuple[str, str]]:
    """(topic, retained payload) of each discovery config for `device`, served by the bridge at `base_topic`."""
    base = f"{base_topic}/{device.friendly_name}"
    configs = []
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
            payload["unique_id"] = f"{device.ieee}_{object_id}_{base_topic}"
            payload["device"] = {"identifiers": [f"zigbee2mqtt_{device.ieee}"], "name": device.friendly_name,
                                 "model": f"{device.description} ({device.model})", "manufacturer": device.vendor,
                                 "via_device": f"zigbee2mqtt_bridge_{bridge_ieee}"}
            payload["origin"] = {"name": "Zigbee2MQTT", "sw": VERSION, "url": "https://www.zigbee2mqtt.io"}
            payload["availability"] = [
                {"topic": f"{base_topic}/bridge/state", "value_template": "{{ value_json.state }}"},
                {"topic": f"{base}/availability", "value_template": "{{ value_json.state }}"}]
            payload["availability_mode"] = "all"
            configs.append((f"homeassistant/{component}/{device.ieee}/{object_id}/config", compact_json(payload)))
    return configs
