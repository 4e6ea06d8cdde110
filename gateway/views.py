"""What the gateway tells its intakes about itself and its devices, for them to render as they show things."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.devices.display import Controls, Reading
from gateway.devices.model import Device


@dataclass
class Health:
    """Whether the gateway can run tasks, and what under."""

    gateway: str
    sandbox_layers: list[str]
    sandbox_refusal: str | None  # why model code may not run here; None when it may
    mqtt_broker: str | None  # host:port, None when no MQTT is in use
    mqtt_connected: bool
    mqtt_down_since: float | None
    model_configured: bool
    devices: int

    @property
    def status(self) -> str:
        return "ok" if self.sandbox_refusal is None else "degraded"


@dataclass
class DeviceView:
    """A device as intakes show it: whether tasks may use it, which state fields its doc puts first, those read as
    people read them, and what a tap on it may do (gateway/devices/display.py)."""

    device: Device
    exposed: bool
    state_keys: list[str]
    readings: list[Reading]
    controls: Controls
