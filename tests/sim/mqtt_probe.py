"""A plain paho-mqtt client for tests: records everything it receives and waits for what a test expects."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float

    @property
    def text(self) -> str:
        return self.payload.decode()

    def json(self) -> Any:
        return json.loads(self.payload)


class MqttProbe:
    def __init__(self, host: str, port: int) -> None:
        """Connect (call from a coroutine: replies are signalled to the running event loop)."""
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"probe-{id(self):x}")
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._acks: dict[int, threading.Event] = {}
        self._loop = asyncio.get_running_loop()
        self._arrived = asyncio.Event()  # set from paho's thread whenever a message comes in
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.connect(host, port)
        self._client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms Nagle stalls
        self._client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self._received.append(Received(message.topic, bytes(message.payload), bool(message.retain),
                                           time.monotonic()))
        self._loop.call_soon_threadsafe(self._arrived.set)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, *rest: Any) -> None:
        self._acks.setdefault(mid, threading.Event()).set()

    async def subscribe(self, topic: str) -> None:
        """Subscribe and wait for the SUBACK, so nothing published afterwards is missed."""
        result, mid = self._client.subscribe(topic, qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS
        ack = self._acks.setdefault(mid, threading.Event())
        assert await asyncio.to_thread(ack.wait, 5), f"no SUBACK for {topic}"

    def publish(self, topic: str, payload: str | bytes | dict[str, Any], qos: int = 0, retain: bool = False) -> None:
        data = json.dumps(payload) if isinstance(payload, dict) else payload
        self._client.publish(topic, data, qos=qos, retain=retain).wait_for_publish(5)

    def received(self, topic: str | None = None, after: int = 0) -> list[Received]:
        with self._lock:
            return [m for m in self._received[after:] if topic is None or mqtt.topic_matches_sub(topic, m.topic)]

    def mark(self) -> int:
        """A bookmark: pass it as `after` to look only at messages received from now on."""
        with self._lock:
            return len(self._received)

    async def expect(self, topic: str, where: Callable[[Received], bool] = lambda m: True, timeout: float = 5.0,
                     after: int = 0) -> Received:
        """The first message on `topic` after bookmark `after` that satisfies `where`, waiting up to `timeout`."""
        end = time.monotonic() + timeout
        checked = after
        while True:
            self._arrived.clear()
            with self._lock:
                fresh, checked = self._received[checked:], len(self._received)
            for message in fresh:
                if mqtt.topic_matches_sub(topic, message.topic) and where(message):
                    return message
            remaining = end - time.monotonic()
            if remaining <= 0:
                seen = [(m.topic, m.payload[:80]) for m in self.received(topic, after)]
                raise AssertionError(f"nothing matching on {topic} within {timeout} s; seen: {seen}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    async def request(self, topic: str, payload: str | bytes | dict[str, Any], reply_topic: str,
                      where: Callable[[Received], bool] = lambda m: True, timeout: float = 5.0) -> Received:
        """Publish and wait for the first matching message on `reply_topic` that arrives afterwards."""
        mark = self.mark()
        self.publish(topic, payload)
        return await self.expect(reply_topic, where, timeout, after=mark)

    def close(self) -> None:
        self._client.disconnect()  # first, so the network thread wakes up and loop_stop() returns at once
        self._client.loop_stop()
