"""A Tasmota plug on MQTT (v0: LWT, POWER commands and replies)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiomqtt

from simulators.base import Simulator

ON_WORDS = {"1", "on", "true"}
OFF_WORDS = {"0", "off", "false"}
TOGGLE_WORDS = {"2", "toggle"}


class TasmotaPlug(Simulator):
    kind = "tasmota_plug"

    def __init__(self, device_id: str = "tasmota_plug", topic: str = "tasmota_A1B2C3", broker_host: str = "127.0.0.1",
                 broker_port: int = 1883, name: str = "", area: str = "") -> None:
        super().__init__(device_id, name, area)
        self.topic = topic
        self.broker = (broker_host, broker_port)
        self.power = False
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    def state(self) -> dict[str, Any]:
        return {"power": self.power}

    def address(self) -> str:
        return f"mqtt://{self.broker[0]}:{self.broker[1]} cmnd/{self.topic}/#"

    async def serve(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"tasmota-{self.topic}")
        ready = asyncio.create_task(self._ready.wait())
        done, _ = await asyncio.wait({ready, self._task}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            ready.cancel()
            self._task.result()
        if ready not in done:
            raise TimeoutError(f"Tasmota simulator {self.topic} could not reach the broker")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        lwt = f"tele/{self.topic}/LWT"
        will = aiomqtt.Will(lwt, "Offline", qos=1, retain=True)
        async with aiomqtt.Client(*self.broker, identifier=f"DVES_{self.topic[-6:]}", will=will) as client:
            await client.subscribe(f"cmnd/{self.topic}/#")
            await client.publish(lwt, "Online", qos=1, retain=True)
            self._ready.set()
            async for message in client.messages:
                command = str(message.topic).rsplit("/", 1)[-1]
                payload = bytes(message.payload or b"").decode(errors="replace").strip()
                await self._command(client, command, payload)

    async def _command(self, client: aiomqtt.Client, command: str, payload: str) -> None:
        if command.upper() in ("POWER", "POWER1"):
            word = payload.lower()
            if word in ON_WORDS:
                self.power = True
            elif word in OFF_WORDS:
                self.power = False
            elif word in TOGGLE_WORDS:
                self.power = not self.power
            value = "ON" if self.power else "OFF"
            await client.publish(f"stat/{self.topic}/RESULT", json.dumps({"POWER": value}))
            await client.publish(f"stat/{self.topic}/POWER", value)
        else:
            await client.publish(f"stat/{self.topic}/RESULT", json.dumps({"Command": "Unknown"}))
