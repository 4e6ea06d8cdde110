"""One simulated device's own MQTT connection: a will, subscriptions, a message handler, reconnects.

Real MQTT devices hold one connection each and lose it ungracefully when their power or Wi-Fi goes, which is
what makes the broker publish their will. `drop()` does the same (the socket is shut without DISCONNECT), so
clients see exactly what they would see from a real device. Everything runs on the event loop: no thread per
device.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence

import aiomqtt

from simulators.base import cancel_and_wait

RECONNECT_S = 0.5
# Replies often go out in pairs (RESULT then POWER); with Nagle's algorithm the second one waits for the broker's
# delayed ACK, about 40 ms on Linux.
NO_DELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
log = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes], Awaitable[None]]


class MqttSession:
    def __init__(self, host: str, port: int, client_id: str, will: aiomqtt.Will, subscriptions: Sequence[str],
                 on_connect: Callable[[], Awaitable[None]], on_message: MessageHandler,
                 connecting: asyncio.Semaphore | None = None) -> None:
        """`connecting` bounds how many devices sharing it connect at once (see SimContext.mqtt_connects)."""
        self.host, self.port = host, port
        self.client_id = client_id
        self.will = will
        self.subscriptions = list(subscriptions)
        self.connected = asyncio.Event()  # set once subscribed and announced
        self._on_connect = on_connect
        self._on_message = on_message
        self._wanted = asyncio.Event()
        self._connecting = connecting or contextlib.nullcontext()
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 10.0) -> None:
        """Connect and wait until subscribed and announced; raises TimeoutError naming the broker."""
        self._wanted.set()
        self._task = asyncio.create_task(self._run(), name=f"mqtt-{self.client_id}")
        up = asyncio.create_task(self.connected.wait())
        done, _ = await asyncio.wait({up, self._task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if up not in done:
            up.cancel()
            await self.stop()
            raise TimeoutError(f"{self.client_id} could not reach the MQTT broker at {self.host}:{self.port}")

    async def stop(self, farewell: Sequence[tuple[str, str, bool]] = ()) -> None:
        """Publish `farewell` messages (topic, payload, retain) and disconnect cleanly, as a device that shuts down."""
        for topic, payload, retain in farewell:
            await self.publish(topic, payload, qos=1, retain=retain)
        self._wanted.clear()
        await cancel_and_wait(self._task)
        self._task = None

    def drop(self) -> None:
        """Lose the connection without DISCONNECT (the broker publishes the will) and stay away until resume()."""
        self._wanted.clear()
        client = self._client
        if client is None:
            return
        sock = client._client.socket()  # aiomqtt has no public "pull the plug"; paho's socket is the link itself
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def resume(self) -> None:
        """Come back after drop(): reconnect, resubscribe and announce again."""
        self._wanted.set()

    async def publish(self, topic: str, payload: str | bytes, qos: int = 0, retain: bool = False) -> None:
        """Publish if connected; a device with no link loses the message, as a real one does."""
        client = self._client
        if client is None:
            return
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(topic, payload, qos=qos, retain=retain)

    async def _run(self) -> None:
        while True:
            await self._wanted.wait()
            try:
                async with contextlib.AsyncExitStack() as link:
                    async with self._connecting:
                        client = await link.enter_async_context(aiomqtt.Client(
                            self.host, self.port, identifier=self.client_id, will=self.will,
                            socket_options=NO_DELAY))
                    self._client = client
                    await client.subscribe([(topic, 0) for topic in self.subscriptions])
                    await self._on_connect()
                    self.connected.set()
                    async for message in client.messages:
                        await self._dispatch(str(message.topic), message.payload)
            except aiomqtt.MqttError:
                pass
            finally:
                self._client = None
                self.connected.clear()
            if self._wanted.is_set():
                await asyncio.sleep(RECONNECT_S)

    async def _dispatch(self, topic: str, payload: object) -> None:
        if payload is None:
            data = b""
        elif isinstance(payload, (bytes, bytearray)):
            data = bytes(payload)
        else:
            data = str(payload).encode()
        try:
            await self._on_message(topic, data)
        except Exception:  # one bad message must not take the device down; the log shows the defect
            log.exception("%s: handling %s failed", self.client_id, topic)
