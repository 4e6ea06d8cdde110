"""What every simulated device shares: a clock, the resources it may use, faults, and the admin contract.

A simulator is started with a SimContext (the simulated clock, the MQTT broker, a zeroconf instance bound to
127.0.0.1, and a pool of loopback addresses for devices that need a fixed port). Tests and the scenario
runner grade by `state()` and steer with `apply()`.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

from zeroconf.asyncio import AsyncZeroconf

Fault = Literal["none", "offline", "slow", "garbage"]
FAULTS: tuple[str, ...] = ("none", "offline", "slow", "garbage")
SLOW_REPLY_S = 3.0


class SimClock:
    """Simulated time that runs `speed` times faster than real time (1.0 = real time)."""

    def __init__(self, speed: float = 1.0, start: float | None = None) -> None:
        self._speed = speed
        self._real_base = time.monotonic()
        self._sim_base = time.time() if start is None else start

    @property
    def speed(self) -> float:
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        if value <= 0:
            raise ValueError("clock speed must be positive")
        self._sim_base, self._real_base = self.now(), time.monotonic()
        self._speed = value

    def now(self) -> float:
        """Simulated seconds since the epoch."""
        return self._sim_base + (time.monotonic() - self._real_base) * self._speed

    async def sleep(self, seconds: float) -> None:
        """Sleep for `seconds` of simulated time."""
        await asyncio.sleep(max(0.0, seconds) / self._speed)


class LoopbackPool:
    """Hands out 127.0.0.x addresses, so each device that needs a fixed port (WLED: 80) has a host of its own."""

    def __init__(self, first: int = 2) -> None:
        self._next = first

    def take(self) -> str:
        if self._next > 254 * 254:
            raise RuntimeError("out of loopback addresses")
        third, fourth = divmod(self._next, 254)
        self._next += 1
        return f"127.0.{third}.{fourth + 1}"


@dataclass
class SimContext:
    clock: SimClock = field(default_factory=SimClock)
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int | None = None
    zeroconf: AsyncZeroconf | None = None
    addresses: LoopbackPool = field(default_factory=LoopbackPool)


class Simulator(ABC):
    """A simulated device. Subclasses set `kind` and serve their protocol between start() and stop()."""

    kind: str = ""

    def __init__(self, device_id: str, name: str = "", area: str = "") -> None:
        self.id = device_id
        self.name = name or device_id
        self.area = area
        self.fault: Fault = "none"
        self.context = SimContext()

    async def start(self, context: SimContext | None = None) -> None:
        """Begin serving (bind ports, connect to the broker, announce over mDNS)."""
        if context is not None:
            self.context = context
        await self.serve()

    @abstractmethod
    async def serve(self) -> None:
        """Start the protocol servers and clients; self.context is set."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop serving and release everything."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """The device's state as JSON-able data, for grading tests and GET /state."""

    @abstractmethod
    def address(self) -> str:
        """Where a client reaches it, for people: a URL, a topic or a port path."""

    def settable(self) -> dict[str, type]:
        """State keys apply() accepts besides `fault`, with their types (sensor readings, loads, ...)."""
        return {}

    def apply(self, patch: dict[str, Any]) -> None:
        """Steer the device from outside (admin API, tests): set sensor values or a fault.

        Raises ValueError naming the key and what is accepted. Subclasses override `set_value` to react.
        """
        allowed = self.settable()
        for key, value in patch.items():
            if key == "fault":
                if value not in FAULTS:
                    raise ValueError(f"fault: expected one of {', '.join(FAULTS)}, got {value!r}")
                continue
            if key not in allowed:
                raise ValueError(f"{key}: not settable on {self.kind}; settable: "
                                 f"{', '.join(['fault', *sorted(allowed)])}")
            expected = allowed[key]
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
                raise ValueError(f"{key}: expected {expected.__name__}, got {value!r}")
        for key, value in patch.items():
            if key == "fault":
                self.set_fault(value)
            else:
                self.set_value(key, float(value) if allowed[key] is float else value)

    def set_fault(self, fault: Fault) -> None:
        self.fault = fault

    def set_value(self, key: str, value: Any) -> None:
        setattr(self, key, value)

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
