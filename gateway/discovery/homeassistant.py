"""Home Assistant MQTT discovery configs (`<prefix>/<component>/[<node>/]<object>/config`): abbreviations
expanded, `~` replaced by the base topic, and one entity as its device's record keeps it.

A Home Assistant device owns the concrete topics its entities name (Home Assistant devices use any topics they
like). Availability topics are only read, never owned: bridges share one among their devices.
"""

from __future__ import annotations

from typing import Any

from gateway.untrusted import one_line, valid_topic

HA_ABBREVIATIONS = {
    "avty": "availability", "avty_mode": "availability_mode", "avty_t": "availability_topic",
    "avty_tpl": "availability_template", "bri_cmd_t": "brightness_command_topic", "bri_scl": "brightness_scale",
    "bri_stat_t": "brightness_state_topic", "clr_temp_cmd_t": "color_temp_command_topic",
    "clr_temp_stat_t": "color_temp_state_topic", "cmd_t": "command_topic", "cmps": "components",
    "curr_temp_t": "current_temperature_topic", "dev": "device", "dev_cla": "device_class", "ids": "identifiers",
    "cns": "connections", "json_attr_t": "json_attributes_topic", "max_temp": "max_temp", "min_temp": "min_temp",
    "mf": "manufacturer", "mdl": "model", "mode_cmd_t": "mode_command_topic", "mode_stat_t": "mode_state_topic",
    "modes": "modes", "o": "origin", "obj_id": "object_id", "p": "platform", "pct_cmd_t": "percentage_command_topic",
    "pct_stat_t": "percentage_state_topic", "pl_avail": "payload_available", "pl_cls": "payload_close",
    "pl_lock": "payload_lock", "pl_not_avail": "payload_not_available", "pl_off": "payload_off",
    "pl_on": "payload_on", "pl_open": "payload_open", "pl_stop": "payload_stop", "pl_unlk": "payload_unlock",
    "pos_t": "position_topic", "sa": "suggested_area", "set_pos_t": "set_position_topic",
    "stat_locked": "state_locked", "stat_t": "state_topic", "stat_unlocked": "state_unlocked",
    "stat_val_tpl": "state_value_template", "sw": "sw_version", "t": "topic", "temp_cmd_t": "temperature_command_topic",
    "temp_stat_t": "temperature_state_topic", "uniq_id": "unique_id", "unit_of_meas": "unit_of_measurement",
    "val_tpl": "value_template",
}
HA_COMPONENTS = ("lock", "climate", "cover", "light", "fan", "switch", "binary_sensor", "sensor")  # main first
ON_OFF = {"payload_on": "ON", "payload_off": "OFF"}
HA_DEFAULTS: dict[str, dict[str, str]] = {  # what Home Assistant assumes when a config leaves them out
    "switch": ON_OFF, "light": ON_OFF, "fan": ON_OFF, "binary_sensor": ON_OFF,
    "lock": {"payload_lock": "LOCK", "payload_unlock": "UNLOCK", "state_locked": "LOCKED",
             "state_unlocked": "UNLOCKED"},
    "cover": {"payload_open": "OPEN", "payload_close": "CLOSE", "payload_stop": "STOP"},
}
HA_SHOWN = ("command_topic", "state_topic", "payload_on", "payload_off", "payload_lock", "payload_unlock",
            "state_locked", "state_unlocked", "payload_open", "payload_close", "payload_stop", "brightness_scale",
            "min_temp", "max_temp", "modes", "unit_of_measurement", "device_class", "value_template",
            "brightness_command_topic", "temperature_command_topic", "mode_command_topic", "set_position_topic",
            "percentage_command_topic", "position_topic", "current_temperature_topic")
HA_TOPICS = tuple(field for field in HA_SHOWN if field.endswith("_topic"))  # what an entity's device owns


def ha_topics(config: dict[str, Any]) -> dict[str, str]:
    """The topics an entity names for its device to own, by field: each must be one concrete topic."""
    topics = {field: config[field] for field in HA_TOPICS if field in config}
    for field, value in topics.items():
        if not valid_topic(value):
            raise ValueError(f"{field} {one_line(value, 100)!r} is not one concrete topic")
    if not topics:
        raise ValueError("the config names no topic to control or read")
    return topics


def expand(value: Any) -> Any:
    """Home Assistant abbreviations to full names, recursively."""
    if isinstance(value, dict):
        return {HA_ABBREVIATIONS.get(key, key): expand(item) for key, item in value.items()}
    if isinstance(value, list):
        return [expand(item) for item in value]
    return value


def with_base(config: dict[str, Any]) -> dict[str, Any]:
    """Replace a leading or trailing `~` in every topic with the config's base topic."""
    base = config.get("~")
    if not isinstance(base, str):
        return config

    def substitute(value: Any) -> Any:
        if isinstance(value, str):
            return base + value[1:] if value.startswith("~") else value[:-1] + base if value.endswith("~") else value
        return value

    result = {key: substitute(value) if key.endswith("_topic") else value for key, value in config.items()}
    if isinstance(result.get("availability"), list):
        result["availability"] = [{**item, "topic": substitute(item.get("topic"))} if isinstance(item, dict) else item
                                  for item in result["availability"]]
    return result


def ha_entity(component: str, config: dict[str, Any]) -> dict[str, Any]:
    """One entity of a device: its name, the fields pyuse shows (text cleaned; Home Assistant's defaults where
    they are left out), the topics its device owns and where its availability is told."""
    topics = ha_topics(config)
    entity: dict[str, Any] = {"component": component, "name": one_line(config.get("name") or component),
                              **HA_DEFAULTS.get(component, {})}
    for field, value in config.items():
        if field in HA_SHOWN and isinstance(value, (str, int, float, bool, list)):
            entity[field] = value if not isinstance(value, str) else one_line(value, 200)
    entity |= topics
    entity["availability"] = ha_availability(config)
    return entity


def ha_availability(config: dict[str, Any]) -> list[dict[str, str]]:
    """Where an entity tells whether it is available (at most four topics), with the two payloads of each."""
    entries = config.get("availability")
    if isinstance(config.get("availability_topic"), str):
        entries = [{"topic": config["availability_topic"],
                    "payload_available": config.get("payload_available", "online"),
                    "payload_not_available": config.get("payload_not_available", "offline")}]
    return [{"topic": item["topic"], "available": str(item.get("payload_available", "online")),
             "unavailable": str(item.get("payload_not_available", "offline"))}
            for item in (entries if isinstance(entries, list) else [])[:4]
            if isinstance(item, dict) and valid_topic(item.get("topic"))]
