"""The requests a Zigbee2MQTT 2.1.3 bridge answers on `bridge/request/<cmd>`, each on `bridge/response/<cmd>`.

Sources, at the 2.1.3 tag: lib/extension/bridge.ts (the `requestLookup` table, l. 34-55, and its handlers),
lib/extension/groups.ts (`group/members/*`, l. 185-326) and lib/extension/networkMap.ts (`networkmap`,
l. 17-58, 235-317). Every answer is utils.getResponse's envelope (lib/util/utils.ts l. 130-160):
`{"data": ..., "status": "ok"}`, or `{"data": {}, "status": "error", "error": ...}`, with the request's
`transaction` copied when it had one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from simulators.zigbee2mqtt.devices import ConverterError, ZigbeeDevice
from simulators.zigbee2mqtt.discovery import LOG_LEVELS
from simulators.zigbee2mqtt.wire import compact_json

if TYPE_CHECKING:
    from simulators.zigbee2mqtt.bridge import Group, Zigbee2MqttBridge

Handler = Callable[[Any], Awaitable[dict[str, Any]]]
# Settings whose change needs a restart: `requiresRestart` in 2.1.3's lib/util/settings.schema.json.
RESTART_SETTINGS = (
    "homeassistant.enabled", "homeassistant.discovery_topic", "homeassistant.status_topic", "availability",
    "mqtt", "serial", "blocklist", "passlist", "frontend", "ota.zigbee_ota_override_index_location",
    "ota.image_block_response_delay", "ota.default_maximum_data_size", "advanced.log_rotation",
    "advanced.log_console_json", "advanced.log_symlink_current", "advanced.log_output", "advanced.log_directory",
    "advanced.log_file", "advanced.log_debug_to_mqtt_frontend", "advanced.log_syslog", "advanced.pan_id",
    "advanced.ext_pan_id", "advanced.channel", "advanced.adapter_concurrent", "advanced.adapter_delay",
    "advanced.network_key", "advanced.timestamp_format", "advanced.transmit_power")
NETWORKMAP_TYPES = ("raw", "graphviz", "plantuml")


class BridgeRequests:
    """Answers a bridge's requests; `answer` is handed the topic's tail and the payload."""

    def __init__(self, bridge: Zigbee2MqttBridge) -> None:
        self.bridge = bridge
        self.restart_required = False
        self.handlers: dict[str, Handler] = {
            "health_check": self.health_check, "permit_join": self.permit_join, "restart": self.restart,
            "device/rename": self.device_rename, "device/remove": self.device_remove,
            "device/options": self.device_options, "options": self.options, "coordinator_check": self.coordinator_check,
            "group/add": self.group_add, "group/remove": self.group_remove, "group/rename": self.group_rename}

    async def answer(self, key: str, text: str) -> None:
        members = re.fullmatch(r"group/members/(remove|add|remove_all)", key)  # groups.ts TOPIC_REGEX, l. 18
        if members:
            try:
                request = json.loads(text)
            except ValueError:
                return  # groups.ts JSON.parse throws: no answer
            await self._respond(key, request, lambda message: self.group_members(members.group(1), message),
                                log="plain")
            return
        message: Any = _parse(text)
        if key == "networkmap":
            await self._respond(key, message, self.networkmap, log="none")
            return
        handler = self.handlers.get(key.lower())
        if handler is not None:  # bridge.ts ignores requests it does not know (l. 201)
            await self._respond(key, message, handler)

    async def _respond(self, key: str, message: Any, handler: Handler, log: str = "request") -> None:
        """Answer with handler's data or its error; log errors as the answering extension does."""
        response: dict[str, Any]
        try:
            response = {"data": await handler(message), "status": "ok"}
        except (ConverterError, ValueError, TypeError, KeyError) as error:
            text = str(error) if not isinstance(error, KeyError) else str(error.args[0])
            if log == "request":
                await self.bridge.log("error", f"Request '{self.bridge.base_topic}/bridge/request/{key}' failed "
                                               f"with error: '{text}'")
            elif log == "plain":
                await self.bridge.log("error", text)
            response = {"data": {}, "status": "error", "error": text}
        if isinstance(message, dict) and "transaction" in message:
            response["transaction"] = message["transaction"]
        await self.bridge.publish(f"bridge/response/{key}", response)

    # --- bridge.ts -----------------------------------------------------------------------------------------------

    async def health_check(self, message: Any) -> dict[str, Any]:
        return {"healthy": True}

    async def permit_join(self, message: Any) -> dict[str, Any]:
        if isinstance(message, dict):
            if "time" not in message:
                raise ValueError("Invalid payload")
            seconds = _int(message["time"])
        else:
            seconds = _int(message)
        bridge = self.bridge
        bridge.permit_join_end = bridge.context.clock.now() + seconds if seconds > 0 else None
        await bridge.publish_info()
        return {"time": seconds}

    async def restart(self, message: Any) -> dict[str, Any]:
        self.bridge.spawn(self.bridge.restart_later())
        return {}

    def device(self, name: Any) -> ZigbeeDevice:
        """getEntity('device', ID), l. 667-676."""
        device = self.bridge.resolve(str(name)) if isinstance(name, (str, int)) else None
        if device is None:
            raise ValueError(f"Device '{name}' does not exist")
        return device

    def group(self, name: Any) -> Group:
        group = self.bridge.resolve_group(name)
        if group is None:
            raise ValueError(f"Group '{name}' does not exist")
        return group

    async def device_rename(self, message: Any) -> dict[str, Any]:
        if not isinstance(message, dict) or "from" not in message or not isinstance(message.get("to"), str):
            raise ValueError("Invalid payload")
        device = self.device(message["from"])
        new = message["to"].strip()
        _validate_friendly_name(new)
        if self.bridge.name_taken(new, device):
            raise ValueError(f"friendly_name '{new}' is already in use")
        old = await self.bridge.rename(device, new)
        return {"from": old, "to": new, "homeassistant_rename": bool(message.get("homeassistant_rename", False))}

    async def device_remove(self, message: Any) -> dict[str, Any]:
        name = message.get("id") if isinstance(message, dict) else str(message).strip()
        device = self.device(name)
        block = bool(message.get("block")) if isinstance(message, dict) else False
        force = bool(message.get("force")) if isinstance(message, dict) else False
        await self.bridge.remove(device)
        return {"id": name, "block": block, "force": force}

    async def device_options(self, message: Any) -> dict[str, Any]:
        if not isinstance(message, dict) or "id" not in message or not isinstance(message.get("options"), dict):
            raise ValueError("Invalid payload")
        device = self.device(message["id"])
        for key, value in message["options"].items():
            if not _same_kind(device.options.get(key), value):
                raise ValueError(f"Invalid option '{key}': {compact_json(value)}")
        before = dict(device.options)
        device.options.update(message["options"])
        await self.bridge.publish_info()
        return {"from": before, "to": dict(device.options), "id": message["id"], "restart_required": False}

    async def options(self, message: Any) -> dict[str, Any]:
        """bridgeOptions, l. 228-256: merge into the settings; say whether the change needs a restart."""
        if not isinstance(message, dict) or not isinstance(message.get("options"), dict):
            raise TypeError("Invalid payload")
        changes: dict[str, Any] = message["options"]
        level = changes.get("advanced", {}).get("log_level") if isinstance(changes.get("advanced"), dict) else None
        if level is not None and level not in LOG_LEVELS:
            raise ValueError("advanced/log_level must be equal to one of the allowed values")
        bridge = self.bridge
        enabled_before = bridge.homeassistant
        bridge.settings = _merged(bridge.settings, changes)
        self.restart_required = any(path == setting or path.startswith(setting + ".") or setting.startswith(path + ".")
                                    for path in _paths(changes) for setting in RESTART_SETTINGS)
        if bridge.homeassistant and not enabled_before:  # the extension starts and discovers (l. 236-238)
            await bridge.publish_all_discovery()
        await bridge.publish_info()
        return {"restart_required": self.restart_required}

    async def coordinator_check(self, message: Any) -> dict[str, Any]:
        """l. 270-276: routers the coordinator's backup lacks; a zStack coordinator's backup holds them all."""
        return {"missing_routers": []}

    async def group_add(self, message: Any) -> dict[str, Any]:
        """l. 278-289 and settings.addGroup: the lowest free ID unless one is given."""
        if isinstance(message, dict) and "friendly_name" not in message:
            raise ValueError("Invalid payload")
        name = message["friendly_name"] if isinstance(message, dict) else message
        wanted = message.get("id") if isinstance(message, dict) else None
        if not isinstance(name, str):
            raise TypeError("Invalid payload")
        _validate_friendly_name(name)
        if self.bridge.name_taken(name):
            raise ValueError(f"friendly_name '{name}' is already in use")
        used = {group.id for group in self.bridge.groups}
        if wanted is not None and _int(wanted) in used:
            raise ValueError(f"Group ID '{wanted}' is already in use")
        group_id = _int(wanted) if wanted is not None else next(i for i in range(1, len(used) + 2) if i not in used)
        group = await self.bridge.add_group(group_id, name)
        return {"friendly_name": group.friendly_name, "id": group.id}

    async def group_rename(self, message: Any) -> dict[str, Any]:
        """renameEntity('group', ...), l. 544-582."""
        if not isinstance(message, dict) or "from" not in message or not isinstance(message.get("to"), str):
            raise TypeError("Invalid payload")
        group, new = self.group(message["from"]), message["to"]
        _validate_friendly_name(new)
        if new != group.friendly_name and self.bridge.name_taken(new):
            raise ValueError(f"friendly_name '{new}' is already in use")
        old = group.friendly_name
        await self.bridge.rename_group(group, new)
        return {"from": old, "to": new, "homeassistant_rename": bool(message.get("homeassistant_rename", False))}

    async def group_remove(self, message: Any) -> dict[str, Any]:
        """removeEntity('group', ...), l. 584-663."""
        name = message.get("id") if isinstance(message, dict) else str(message).strip()
        group = self.group(name)
        force = bool(message.get("force")) if isinstance(message, dict) else False
        await self.bridge.remove_group(group)
        return {"id": name, "force": force}

    # --- groups.ts -----------------------------------------------------------------------------------------------

    async def group_members(self, action: str, message: Any) -> dict[str, Any]:
        """parseMQTTMessage and onMQTTMessage, l. 187-320: the device's only endpoint is its default one."""
        if not isinstance(message, dict) or message.get("device") is None:
            raise ValueError("Invalid payload")
        group = None
        if action != "remove_all":
            if message.get("group") is None:
                raise ValueError("Invalid payload")
            group = self.group(message["group"])
        device = self.device(message["device"])
        endpoint = message.get("endpoint")
        if endpoint not in (None, 1, "1", "default"):
            raise ValueError(f"Device '{device.friendly_name}' does not have endpoint '{endpoint}'")
        bridge = self.bridge
        if group is None:
            for each in bridge.groups:
                if device in each.members:
                    each.members.remove(device)
        elif action == "add" and device not in group.members:
            group.members.append(device)
        elif action == "remove" and device in group.members:
            group.members.remove(device)
        await bridge.publish_groups()
        data = {"device": message["device"], "endpoint": endpoint if endpoint is not None else "default"}
        return data if group is None else {**data, "group": message["group"]}

    # --- networkMap.ts -------------------------------------------------------------------------------------------

    async def networkmap(self, message: Any) -> dict[str, Any]:
        kind = message.get("type") if isinstance(message, dict) else message
        if kind not in NETWORKMAP_TYPES:
            raise ValueError(f"Type '{kind}' not supported, allowed are: {','.join(NETWORKMAP_TYPES)}")
        routes = message.get("routes") if isinstance(message, dict) else False
        topology = self.topology()
        value: Any = topology if kind == "raw" else _graphviz(topology) if kind == "graphviz" else _plantuml(topology)
        return {"type": kind, **({"routes": routes} if routes is not None else {}), "value": value}

    def topology(self) -> dict[str, Any]:
        """networkScan, l. 235-317: every device a node; every device a neighbour of the coordinator (end
        devices its children, routers its siblings), and the coordinator a neighbour of every router."""
        bridge = self.bridge
        now_ms = int(bridge.context.clock.now() * 1000)
        coordinator = {"ieeeAddr": bridge.coordinator.ieee, "networkAddress": 0}
        nodes: list[dict[str, Any]] = [{"ieeeAddr": bridge.coordinator.ieee, "friendlyName": "Coordinator",
                                        "type": "Coordinator", "networkAddress": 0, "failed": []}]
        links = []
        for device in bridge.devices:
            supports = ", ".join(dict.fromkeys(
                e.get("name") or f"{e['type']} ({', '.join(f['name'] for f in e.get('features', []))})"
                for e in device.exposes()))
            nodes.append({"ieeeAddr": device.ieee, "friendlyName": device.friendly_name, "type": device.device_type,
                          "networkAddress": device.network_address, "manufacturerName": device.vendor,
                          "modelID": device.model_id, "failed": [], "lastSeen": now_ms,
                          "definition": {"model": device.model, "vendor": device.vendor,
                                         "description": device.description, "supports": supports}})
            quality = device.values.get("linkquality", 0)
            me = {"ieeeAddr": device.ieee, "networkAddress": device.network_address}
            router = device.device_type == "Router"
            links.append(_link(me, coordinator, quality, 1, 2 if router else 1))
            if router:
                links.append(_link(coordinator, me, quality, 0, 2))
        return {"nodes": nodes, "links": links}


def _link(source: dict[str, Any], target: dict[str, Any], quality: int, depth: int, relationship: int) -> dict[str, Any]:
    """One neighbour-table row as a link, with the fields networkMap.ts still sends as deprecated."""
    return {"source": source, "target": target, "linkquality": quality, "depth": depth, "routes": [],
            "sourceIeeeAddr": source["ieeeAddr"], "targetIeeeAddr": target["ieeeAddr"],
            "sourceNwkAddr": source["networkAddress"], "lqi": quality, "relationship": relationship}


def _graphviz(topology: dict[str, Any]) -> str:
    """The graphviz map's shape (networkMap.ts l. 64-128), without its colours and styles."""
    lines = ["digraph G {", "node[shape=record];"]
    for node in topology["nodes"]:
        lines.append(f'  "{node["ieeeAddr"]}" [label="{{{node["friendlyName"]}|{node["ieeeAddr"]} '
                     f'(0x{node["networkAddress"]:04x})}}"];')
    for link in topology["links"]:
        lines.append(f'  "{link["source"]["ieeeAddr"]}" -> "{link["target"]["ieeeAddr"]}" '
                     f'[label="{link["linkquality"]}"]')
    return "\n".join(lines) + "\n}"


def _plantuml(topology: dict[str, Any]) -> str:
    """The plantuml map's shape (networkMap.ts l. 130-200), without its styles."""
    lines = ["' paste into: https://www.planttext.com/", "", "@startuml"]
    for node in topology["nodes"]:
        lines.append(f'card {node["ieeeAddr"]} [\n{node["friendlyName"]}\n---\n{node["ieeeAddr"]}\n]')
    for link in topology["links"]:
        lines.append(f'{link["source"]["ieeeAddr"]} --> {link["target"]["ieeeAddr"]}: {link["linkquality"]}')
    return "\n".join(lines + ["", "@enduml"])


def _validate_friendly_name(name: str) -> None:
    """utils.validateFriendlyName (lib/util/utils.ts l. 229-244), first error only."""
    if not name:
        raise ValueError("friendly_name must be at least 1 char long")
    if name.startswith("/") or name.endswith("/"):
        raise ValueError("friendly_name is not allowed to end or start with /")
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        raise ValueError("friendly_name is not allowed to contain control char")
    if re.fullmatch(r".*/\d*", name, re.DOTALL):
        raise ValueError(f'Friendly name cannot end with a "/DIGIT" (\'{name}\')')
    if "+" in name or "#" in name:
        raise ValueError(f"MQTT wildcard (+ and #) not allowed in friendly_name ('{name}')")


def _parse(text: str) -> Any:
    """utils.parseJSON(message, message): JSON when it parses, else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _merged(base: dict[str, Any], changes: dict[str, Any], path: str = "") -> dict[str, Any]:
    """objectAssignDeep of the settings; a section stays an object, as the settings schema demands."""
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(merged.get(key), dict):
            if not isinstance(value, dict):
                raise TypeError(f"{path}{key} must be object")
            merged[key] = _merged(merged[key], value, f"{path}{key}/")
        else:
            merged[key] = value
    return merged


def _paths(changes: dict[str, Any], prefix: str = "") -> list[str]:
    return [path for key, value in changes.items()
            for path in (_paths(value, f"{prefix}{key}.") if isinstance(value, dict) and value else [prefix + key])]


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
