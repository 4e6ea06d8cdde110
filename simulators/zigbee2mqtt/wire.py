"""What every part of the simulated Zigbee2MQTT writes the same way: its version, its JSON and IEEE addresses."""

from __future__ import annotations

import hashlib
import json
from typing import Any

VERSION = "2.1.3"
COMMIT = "ba337bd"  # the v2.1.3 tag's commit
HERDSMAN_VERSION, CONVERTERS_VERSION = "3.2.7", "23.2.0"  # as 2.1.3's package.json pins them

# bridge/definitions carries zigbee-herdsman's Zcl.Clusters; this is the part the simulated devices use, each
# cluster with its ZCL ID (attributes and commands left out: no client of the simulator reads them).
CLUSTERS: dict[str, dict[str, object]] = {
    name: {"ID": cluster_id, "attributes": {}, "commands": {}, "commandsResponse": {}}
    for name, cluster_id in (("genBasic", 0), ("genPowerCfg", 1), ("genIdentify", 3), ("genGroups", 4),
                             ("genScenes", 5), ("genOnOff", 6), ("genLevelCtrl", 8), ("closuresDoorLock", 257),
                             ("hvacThermostat", 513), ("lightingColorCtrl", 768), ("msIlluminanceMeasurement", 1024),
                             ("msTemperatureMeasurement", 1026), ("msPressureMeasurement", 1027),
                             ("msRelativeHumidity", 1029), ("msOccupancySensing", 1030))}


def compact_json(payload: Any) -> str:
    """JSON as Zigbee2MQTT sends it: no spaces (keys sorted, so a payload is the same on every run)."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)


def encoded_base_topic(base_topic: str) -> str:
    """The base topic as Zigbee2MQTT puts it in bridge and group discovery topics: each character's code."""
    return "".join(str(ord(char)) for char in base_topic)


def ieee_address(seed: str) -> str:
    """A stable 64-bit IEEE address (0x + 16 hex digits) derived from `seed`."""
    return "0x" + hashlib.sha1(seed.encode()).hexdigest()[:16]
