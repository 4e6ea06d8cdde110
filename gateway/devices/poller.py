"""HTTP devices' state: read from the doc's `state_path` when they appear, after a call that may have changed
them, and every `[discovery] poll_s`.

MQTT devices tell the gateway their state; HTTP devices have to be asked. Without this a Shelly's `output`
would be whatever it was at discovery, in the prompt and on the web page alike. A device that stops
answering is marked offline, and online again when it answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from gateway.devices.docs import DocLibrary
from gateway.devices.model import Device
from gateway.devices.registry import DeviceEvent, Registry
from gateway.jsonpointer import resolve
from gateway.transports.http import HttpTransport

log = logging.getLogger(__name__)

SETTLE_S = 0.2  # after a call, wait this long so that a burst of calls costs one read
READ_TIMEOUT_S = 5.0
MAX_FIELDS = 40


def state_fields(reply: Any, pointer: str) -> dict[str, Any] | None:
    """The scalar fields of the object `pointer` (RFC 6901) names in `reply`; None when there is none."""
    value = resolve(reply, pointer)
    if not isinstance(value, dict):
        return None
    scalars = {key: item for key, item in value.items() if isinstance(item, (str, int, float, bool)) or item is None}
    return dict(list(scalars.items())[:MAX_FIELDS])


class StatePoller:
    def __init__(self, registry: Registry, docs: DocLibrary, http: HttpTransport, poll_s: float) -> None:
        self.registry = registry
        self.docs = docs
        self.http = http
        self.poll_s = poll_s
        self._pending: dict[str, asyncio.Task[None]] = {}
        self._offline_at: dict[str, float] = {}  # when discovery last said a device went away (mDNS goodbye, ...)
        self._unreadable: set[str] = set()  # devices whose last state reply could not be read (logged once)
        self._loop_task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        self._unsubscribe = self.registry.subscribe(self._on_event)
        for device in self.registry.all():
            self.refresh_soon(device, delay=0.0)
        if self.poll_s > 0:
            self._loop_task = asyncio.create_task(self._poll(), name="http-state-poll")

    async def close(self) -> None:
        if self._unsubscribe:
            self._unsubscribe()
        tasks = [task for task in (self._loop_task, *self._pending.values()) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def settle(self, timeout: float = READ_TIMEOUT_S) -> None:
        """For one-shot commands: let the reads already started finish."""
        pending = list(self._pending.values())
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    def _readable(self, device: Device) -> bool:
        doc = self.docs.get(device.kind)
        return bool(device.transport == "http" and doc and doc.state_path and device.host and device.port)

    def _on_event(self, event: DeviceEvent) -> None:
        if event.type in ("added", "updated"):
            self.refresh_soon(event.device, delay=0.0)
        elif event.type == "offline":
            self._offline_at[event.device.key] = time.monotonic()

    def refresh_soon(self, device: Device, delay: float = SETTLE_S) -> None:
        """Read the device's state shortly (once, however many calls ask in the meantime)."""
        if not self._readable(device) or device.id in self._pending:
            return
        task = asyncio.create_task(self._refresh_later(device, delay), name=f"state-{device.id}")
        self._pending[device.id] = task
        task.add_done_callback(lambda _: self._pending.pop(device.id, None))

    async def _refresh_later(self, device: Device, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.refresh(device)

    async def refresh(self, device: Device) -> None:
        doc = self.docs.get(device.kind)
        if doc is None or not doc.state_path or not device.host or not device.port:
            return
        asked = time.monotonic()
        try:
            reply = await self.http.request("GET", device.host, device.port, doc.state_path, timeout=READ_TIMEOUT_S)
        except (ConnectionError, TimeoutError, ValueError) as error:
            self.registry.set_online(device.key, False, f"it does not answer: {error}")
            return
        if self._offline_at.get(device.key, float("-inf")) > asked:
            return  # it said goodbye while this read was on its way: the answer is older news
        self.registry.set_online(device.key, True)
        fields = state_fields(reply.body, doc.state_pointer) if reply.ok else None
        if fields is None:
            if device.key not in self._unreadable:
                self._unreadable.add(device.key)
                log.warning("%s answers, but its state cannot be read: GET %s gave no state object (HTTP %s)",
                            device.id, doc.state_path, reply.status)
            return
        if device.key in self._unreadable:
            self._unreadable.discard(device.key)
            log.info("%s: its state can be read again", device.id)
        self.registry.update_state(device.key, fields)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            devices = [device for device in self.registry.all() if self._readable(device)]
            await asyncio.gather(*(self.refresh(device) for device in devices))
