"""Protocol readers: each reads a native call the way its devices do and returns the canonical actions it performs.
A doc names its kind's protocol; a kind without one is read by its doc's [[calls]] (generic.py)."""

from __future__ import annotations

from typing import Any

from gateway.devices.docs import DeviceDoc
from gateway.devices.model import Device
from gateway.policy.calls import Operation
from gateway.policy.protocols import generic, homeassistant, korad, scpi, shelly, tasmota, zigbee2mqtt
from gateway.policy.protocols.reading import Reader, Reading

READERS: dict[str, Reader] = {
    "scpi_psu": scpi.reader("scpi_psu"), "scpi_dmm": scpi.reader("scpi_dmm"), "korad": korad.read,
    "zigbee2mqtt": zigbee2mqtt.read, "homeassistant": homeassistant.read, "shelly": shelly.read,
    "tasmota": tasmota.read,
}

__all__ = ["READERS", "Reading", "read_call"]


def read_call(call: Operation, device: Device, doc: DeviceDoc | None, memory: dict[str, Any]) -> Reading:
    reader = READERS[doc.protocol] if doc and doc.protocol else generic.read
    return reader(call, device, doc, memory)
