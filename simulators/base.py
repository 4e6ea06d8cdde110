"""What every simulated device shares: a clock, the resources it may use, faults, and the admin contract.

A simulator is started with a SimContext (the simulated clock, the MQTT broker, a zeroconf instance bound to
127.0.0.1 with the suffix its mDNS names carry, a pool of loopback addresses for devices that need a fixed port,
and the rooms whose air devices share). Tests and the scenario runner grade by `state()` and steer with
`apply()`.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, Self, TypeVar

from zeroconf.asyncio import AsyncZeroconf

Fault = Literal["none", "offline", "slow", "garbage"]
FAULTS: tuple[str, ...] = ("none", "offline", "slow", "garbage")
SLOW_REPLY_S = 3.0
log = logging.getLogger(__name__)
T = TypeVar("T")


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel tasks and wait until they have ended, cancelling again any that runs on: Python 3.11's
    wait_for (inside every aiomqtt publish) drops a cancellation that arrives just as its wait completes, and
    a device's loop would then never end."""
    pending = {task for task in tasks if task is not None and task is not asyncio.current_task()}
    while pending:
        for task in pending:
            task.cancel()
        done, pending = await asyncio.wait(pending, timeout=0.1)
        for task in done:
            if not task.cancelled():
                task.exception()  # retrieved: a failure while stopping is no news


class SimClock:
    """Simulated time that runs `speed` times faster than real time (1.0 = real time)."""

    def __init__(self, speed: float = 1.0, start: float | None = None) -> None:
        self._speed = _checked_speed(speed)
        self._real_base = time.monotonic()
        self._sim_base = time.time() if start is None else start
        self._sleepers: set[asyncio.Future[None]] = set()

    @property
    def speed(self) -> float:
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        value = _checked_speed(value)
        self._sim_base, self._real_base = self.now(), time.monotonic()
        self._speed = value
        for sleeper in self._sleepers:  # they work out their remaining real time anew
            if not sleeper.done():
                sleeper.set_result(None)

    def now(self) -> float:
        """Simulated seconds since the epoch."""
        return self._sim_base + (time.monotonic() - self._real_base) * self._speed

    async def sleep(self, seconds: float) -> None:
        """Sleep for `seconds` of simulated time, following any change of speed on the way."""
        deadline = self.now() + max(0.0, seconds)
        loop = asyncio.get_running_loop()
        while (remaining := deadline - self.now()) > 0:
            woken = loop.create_future()
            timer = loop.call_later(remaining / self._speed, _wake, woken)
            self._sleepers.add(woken)
            try:
                await woken
            finally:
                timer.cancel()
                self._sleepers.discard(woken)


def _checked_speed(speed: float) -> float:
    if not 0 < speed < math.inf:
        raise ValueError(f"clock speed must be a positive number, got {speed!r}")
    return speed


def _wake(sleeper: asyncio.Future[None]) -> None:
    if not sleeper.done():
        sleeper.set_result(None)


class ManualClock(SimClock):
    """Simulated time that moves only when a test advances it, so timers, energy and heat are exact."""

    def __init__(self, start: float | None = None) -> None:
        super().__init__()
        self._now = float(int(time.time())) if start is None else start
        self._moved = asyncio.Event()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        deadline = self._now + max(0.0, seconds)
        while self._now < deadline:
            moved = self._moved
            await moved.wait()

    async def advance(self, seconds: float) -> None:
        """Move time on and let everything that was waiting for it run."""
        self._now += seconds
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()
        for _ in range(5):
            await asyncio.sleep(0)


class LoopbackPool:
    """Hands out loopback addresses (127.0.0.2, 127.0.0.3, ... then 127.0.1.1, ...), so each device that
    needs a fixed port (WLED: 80) has a host of its own. `first` is the first address's number from
    127.0.0.1 on (2 = 127.0.0.2)."""

    def __init__(self, first: int = 2) -> None:
        self._next = first

    def take(self) -> str:
        index = self._next - 1  # 127.0.0.1 is index 0; each third octet holds hosts .1 to .254
        if index >= 254 * 254:
            raise RuntimeError("out of loopback addresses")
        third, fourth = divmod(index, 254)
        self._next += 1
        return f"127.0.{third}.{fourth + 1}"

    async def bind(self, listen: Callable[[str], Awaitable[T]], attempts: int = 64) -> tuple[str, T]:
        """Take addresses until `listen(host)` binds one: another process (a `pyuse sim` next to the tests)
        may already hold the port on the next few. Returns the host and what `listen` returned."""
        for _ in range(attempts):
            host = self.take()
            try:
                return host, await listen(host)
            except OSError as error:
                if error.errno != errno.EADDRINUSE:
                    raise
        raise OSError(errno.EADDRINUSE, f"no loopback address free after {attempts} tries")


# Loopback addresses belong to the whole process, so every context shares one pool unless given its own.
PROCESS_ADDRESSES = LoopbackPool()


@dataclass
class Room:
    """Air that loses heat to the outside and gains it from heaters (each reports °C per hour it adds now)."""

    temperature: float = 19.0
    outside: float = 8.0
    loss_per_hour: float = 0.15
    heaters: list[Callable[[], float]] = field(default_factory=list)
    _at: float | None = None

    def advance(self, now: float) -> float:
        """Bring the temperature to simulated time `now` (exact for heaters constant since the last call)."""
        if self._at is not None and now > self._at:
            hours = (now - self._at) / 3600
            gain = sum(heater() for heater in self.heaters)
            balance = self.outside + gain / self.loss_per_hour
            self.temperature = balance + (self.temperature - balance) * math.exp(-self.loss_per_hour * hours)
        self._at = now
        return self.temperature


@dataclass
class SimContext:
    clock: SimClock = field(default_factory=SimClock)
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int | None = None
    zeroconf: AsyncZeroconf | None = None
    # Appended to every mDNS name the context's devices announce: two simulated homes on one machine (two
    # `pyuse sim`, a demo beside the tests) then never claim the same name nor answer for each other's hosts.
    mdns_suffix: str = field(default_factory=lambda: secrets.token_hex(2))
    addresses: LoopbackPool = field(default_factory=lambda: PROCESS_ADDRESSES)
    rooms: dict[str, Room] = field(default_factory=dict)
    # MQTT devices connecting at once: a broker accepts only so many pending connections (its listen backlog;
    # the embedded one shares the event loop with 1000 devices starting), and a dropped SYN costs seconds.
    mqtt_connects: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(32))

    def room(self, area: str) -> Room:
        """The air of an area, shared by every device in it (a heater relay and a thermostat warm the same
        room, a sensor reads it); created on first use."""
        return self.rooms.setdefault(area, Room())


class PatchError(ValueError):
    """A patch for apply() that the device does not take; `key` names the offending key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key


class Simulator(ABC):
    """A simulated device. Subclasses set `kind` and serve their protocol between start() and stop()."""

    kind: str = ""

    def __init__(self, device_id: str, name: str = "", area: str = "") -> None:
        self.id = device_id
        self.name = name or device_id
        self.area = area
        self.fault: Fault = "none"
        self.context = SimContext()
        self._tasks: set[asyncio.Task[Any]] = set()

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

    def children(self) -> list[Simulator]:
        """Devices reached only through this one (a Zigbee2MQTT bridge's devices): they are listed and
        steered on their own, and start and stop with it."""
        return []

    def settable(self) -> dict[str, type]:
        """State keys apply() accepts besides `fault`, with their types (sensor readings, loads, ...)."""
        return {}

    def apply(self, patch: dict[str, Any]) -> None:
        """Steer the device from outside (admin API, tests): set sensor values or a fault.

        Raises PatchError (a ValueError) naming the key and what is accepted; nothing changes then.
        Subclasses override `set_value` to react.
        """
        allowed = self.settable()
        for key, value in patch.items():
            if key == "fault":
                if value not in FAULTS:
                    raise PatchError("fault", f"expected one of {', '.join(FAULTS)}, got {value!r}")
                continue
            if key not in allowed:
                raise PatchError(key, f"not settable on {self.kind}; settable: "
                                      f"{', '.join(['fault', *sorted(allowed)])}")
            expected = allowed[key]
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
                raise PatchError(key, f"expected {expected.__name__}, got {value!r}")
            if isinstance(value, float) and not math.isfinite(value):
                raise PatchError(key, f"expected a finite number, got {value!r}")
        for key, value in patch.items():
            if key == "fault":
                self.set_fault(value)
            else:
                self.set_value(key, float(value) if allowed[key] is float else value)

    def set_fault(self, fault: Fault) -> None:
        self.fault = fault

    def set_value(self, key: str, value: Any) -> None:
        setattr(self, key, value)

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a background job (a publish after apply(), a timer) that cancel_tasks() ends; a failure is
        logged rather than lost."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s %s: a background job failed", self.kind, self.id, exc_info=task.exception())

    async def cancel_tasks(self) -> None:
        """End every background job (for stop())."""
        await cancel_and_wait(*self._tasks)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
