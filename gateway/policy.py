"""Which devices a task may touch."""

from __future__ import annotations

from gateway.devices.model import Device
from gateway.devices.registry import Registry


class ScopeError(ValueError):
    """A task asked for devices it cannot have."""


def devices_for_task(registry: Registry, requested: list[str] | None) -> list[Device]:
    """All exposed devices, or the requested ones, each of which must exist and be exposed."""
    exposed = registry.exposed()
    if not requested:
        return exposed
    by_id = {device.id: device for device in exposed}
    unknown = [device_id for device_id in requested if device_id not in by_id]
    if unknown:
        raise ScopeError(f"not exposed or unknown device(s): {', '.join(unknown)}; "
                         f"exposed: {', '.join(sorted(by_id)) or 'none'}")
    return [by_id[device_id] for device_id in requested]
