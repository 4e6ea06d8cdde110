"""Run by a Python that has Home Assistant (homeassistant and paho-mqtt; see tests/test_homeassistant.py), never by
the project's own: Home Assistant takes each discovery config the way its MQTT discovery does
(homeassistant/components/mqtt/discovery.py: the topic, the component, abbreviations, the origin) and checks it
with its platform's schemas, the strict one included (an unknown key is an error there, dropped in discovery);
then each entity's state is rendered from the retained payloads given, with Home Assistant's own templates.

stdin:  {"prefix": str, "configs": {topic: config}, "states": {topic: payload}}
stdout: {"problems": {topic: why}, "states": {unique_id: state}, "keys": {component: {"required", "optional"}}}
"""

import asyncio
import importlib
import json
import sys
import tempfile
from typing import Any

import homeassistant.components.persistent_notification  # noqa: F401  first, or mqtt's imports go in a circle
import voluptuous as vol
from homeassistant.components.mqtt.abbreviations import (
    ABBREVIATIONS,
    DEVICE_ABBREVIATIONS,
    ORIGIN_ABBREVIATIONS,
)
from homeassistant.components.mqtt.discovery import (
    MQTT_ORIGIN_INFO_SCHEMA,
    SUPPORTED_COMPONENTS,
    TOPIC_MATCHER,
)
from homeassistant.core import HomeAssistant


def platform(component: str) -> Any:
    return importlib.import_module(f"homeassistant.components.mqtt.{component}")


def accepted(prefix: str, topic: str, payload: dict[str, Any]) -> dict[str, Any]:
    if not topic.startswith(f"{prefix}/"):
        raise ValueError(f"not under the discovery prefix {prefix}")
    match = TOPIC_MATCHER.fullmatch(topic[len(prefix) + 1:])
    if match is None:
        raise ValueError("not a discovery topic Home Assistant accepts")
    component = match["component"]
    if component not in SUPPORTED_COMPONENTS:
        raise ValueError(f"{component} is not a component of MQTT discovery")
    config = {ABBREVIATIONS.get(key, key): value for key, value in payload.items()}
    if "device" in config:
        config["device"] = {DEVICE_ABBREVIATIONS.get(key, key): value for key, value in config["device"].items()}
    if "origin" in config:
        config["origin"] = {ORIGIN_ABBREVIATIONS.get(key, key): value for key, value in config["origin"].items()}
        MQTT_ORIGIN_INFO_SCHEMA(config["origin"])
    platform(component).PLATFORM_SCHEMA_MODERN(dict(config))
    validated: dict[str, Any] = platform(component).DISCOVERY_SCHEMA(config | {"platform": "mqtt"})
    return validated


def schema_keys(component: str) -> dict[str, list[str]]:
    module = platform(component)
    schema = getattr(module, "_PLATFORM_SCHEMA_BASE", None) or module.PLATFORM_SCHEMA_MODERN
    return {"required": sorted(str(key) for key in schema.schema if isinstance(key, vol.Required)),
            "optional": sorted(str(key) for key in schema.schema if not isinstance(key, vol.Required))}


async def rendered(configs: list[dict[str, Any]], payloads: dict[str, str]) -> dict[str, Any]:
    hass = HomeAssistant(tempfile.mkdtemp())
    states = {}
    for config in configs:
        template, topic = config.get("value_template"), config.get("state_topic")
        if template is not None and topic in payloads:
            template.hass = hass
            states[config["unique_id"]] = template.async_render_with_possible_json_value(payloads[topic], None)
    await hass.async_stop(force=True)
    return states


def main() -> None:
    request = json.load(sys.stdin)
    problems, configs = {}, []
    for topic, payload in request["configs"].items():
        try:
            configs.append(accepted(request["prefix"], topic, payload))
        except (vol.Invalid, ValueError) as exc:
            problems[topic] = str(exc)
    states = asyncio.run(rendered(configs, request.get("states", {})))
    keys = {component: schema_keys(component) for component in ("text", "sensor", "binary_sensor", "button")}
    json.dump({"problems": problems, "states": states, "keys": keys}, sys.stdout, default=str)


main()
