"""The gateway's one MQTT connection (paho-mqtt), bridged into asyncio.

paho runs its network loop in its own thread and reconnects by itself; every callback is handed to the
event loop with call_soon_threadsafe, so the rest of the gateway only ever sees asyncio. An outage is logged once
when it starts and once when it ends, however many retries it takes, and told to `on_disconnect` listeners.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gateway.listeners import Listeners
from gateway.transports.mqtt_message import Message, encode_payload
from gateway.untrusted import topic_matches

log = logging.getLogger(__name__)

# paho waits this long before its first retry and doubles the wait after each failed one, up to the maximum.
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30

Listener = Callable[[Message], None]


def unique_client_id(prefix: str) -> str:
    """A client id no other process uses: a broker drops the older of two connections with the same id, so a
    CLI command or a second gateway sharing one with the daemon would cut the daemon off."""
    return f"{prefix}-{os.getpid()}-{secrets.token_hex(2)}"


class Subscription:
    def __init__(self, transport: MqttTransport, topic_filter: str, listener: Listener) -> None:
        self.transport = transport
        self.topic_filter = topic_filter
        self.listener = listener

    def cancel(self) -> None:
        self.transport._remove(self)


class MqttTransport:
    def __init__(self, host: str, port: int, client_id: str, username: str = "", password: str = "",
                 will: tuple[str, bytes] | None = None) -> None:
        self.host, self.port = host, port
        self._client_id = client_id
        self._credentials = (username, password)
        self._will = will
        self._client: paho.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: dict[str, list[Subscription]] = {}
        self._suback: dict[int, asyncio.Future[None]] = {}
        self._connected = asyncio.Event()
        self._first_attempt = asyncio.Event()
        self.down_since: float | None = None  # wall-clock start of the current outage
        self.on_connect: Listeners[[]] = Listeners("MQTT connect")
        self.on_disconnect: Listeners[[]] = Listeners("MQTT disconnect")  # once per outage, as it starts

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def in_use(self) -> bool:
        """Started and not closed: the gateway has something to do on the broker."""
        return self._client is not None

    async def start(self, wait_s: float = 5.0) -> None:
        """Connect in the background; returns once the first attempt succeeded or failed, or after wait_s.
        paho keeps retrying after a failure."""
        self._loop = asyncio.get_running_loop()
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self._client_id, clean_session=True)
        if self._credentials[0]:
            client.username_pw_set(*self._credentials)
        if self._will:
            client.will_set(self._will[0], self._will[1], qos=1, retain=True)
        client.reconnect_delay_set(min_delay=RECONNECT_MIN_S, max_delay=RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client
        client.connect_async(self.host, self.port, keepalive=30)
        client.loop_start()
        try:
            async with asyncio.timeout(wait_s):
                await self._first_attempt.wait()
        except TimeoutError:
            pass
        if not self.connected:
            self._lost(f"no connection within {wait_s:g} s")

    async def close(self) -> None:
        if self._client is None:
            return
        client, self._client = self._client, None
        client.disconnect()
        try:
            # paho's thread may be sleeping before a reconnect; it is a daemon thread and will end on its own.
            async with asyncio.timeout(0.3):
                await asyncio.to_thread(client.loop_stop)
        except TimeoutError:
            pass
        self._connected.clear()

    # paho thread -> event loop
    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if not reason.is_failure:
            self._call(self._connected_now)
        else:
            self._call(self._lost, f"it refused the connection: {reason}")

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self._call(self._lost, "cannot connect")

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._call(self._lost, f"connection lost: {reason}")

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self._call(self._dispatch, Message(message.topic, bytes(message.payload), bool(message.retain)))

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        self._call(self._subscribed, mid)

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        if self._loop and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback, *args)

    # event loop side
    def _lost(self, reason: str) -> None:
        self._connected.clear()
        self._first_attempt.set()
        if self.down_since is not None or self._client is None:  # logged already, or closed on purpose
            return
        self.down_since = time.time()
        log.warning("MQTT broker %s:%s is unreachable (%s); MQTT devices count as offline; retrying in %d s, "
                    "then at most every %d s", self.host, self.port, reason, RECONNECT_MIN_S, RECONNECT_MAX_S)
        self.on_disconnect()

    def _connected_now(self) -> None:
        if self.down_since is not None:
            log.info("MQTT broker %s:%s is reachable again after %.0f s", self.host, self.port,
                     time.time() - self.down_since)
            self.down_since = None
        self._connected.set()
        self._first_attempt.set()
        for topic_filter in self._listeners:
            self._subscribe(topic_filter)
        self.on_connect()

    def _dispatch(self, message: Message) -> None:
        for topic_filter, subscriptions in list(self._listeners.items()):
            if topic_matches(topic_filter, message.topic):
                for subscription in list(subscriptions):
                    try:
                        subscription.listener(message)
                    except Exception:
                        log.exception("MQTT listener for %s failed", topic_filter)

    def _subscribed(self, mid: int) -> None:
        future = self._suback.pop(mid, None)
        if future and not future.done():
            future.set_result(None)

    def _subscribe(self, topic_filter: str) -> asyncio.Future[None]:
        assert self._client is not None and self._loop is not None
        future: asyncio.Future[None] = self._loop.create_future()
        result, mid = self._client.subscribe(topic_filter, qos=1)
        if result == paho.MQTT_ERR_SUCCESS and mid is not None:
            self._suback[mid] = future
        else:
            future.set_exception(ConnectionError(f"MQTT subscribe to {topic_filter} failed ({result})"))
        return future

    async def subscribe(self, topic_filter: str, listener: Listener) -> Subscription:
        """Listen on a filter; returns once the broker has acknowledged it (or at once if already subscribed)."""
        subscription = Subscription(self, topic_filter, listener)
        first = topic_filter not in self._listeners
        self._listeners.setdefault(topic_filter, []).append(subscription)
        if first and self.connected:
            try:
                async with asyncio.timeout(5):
                    await self._subscribe(topic_filter)
            except (TimeoutError, ConnectionError):
                subscription.cancel()
                raise ConnectionError(f"the MQTT broker did not acknowledge a subscription to {topic_filter}")
        return subscription

    def subscribe_soon(self, topic_filter: str, listener: Listener) -> Subscription:
        """Listen on a filter from synchronous code; the broker acknowledges it later (and again on reconnect)."""
        subscription = Subscription(self, topic_filter, listener)
        first = topic_filter not in self._listeners
        self._listeners.setdefault(topic_filter, []).append(subscription)
        if first and self.connected:
            self._subscribe(topic_filter)
        return subscription

    def _remove(self, subscription: Subscription) -> None:
        subscriptions = self._listeners.get(subscription.topic_filter, [])
        if subscription in subscriptions:
            subscriptions.remove(subscription)
        if not subscriptions and subscription.topic_filter in self._listeners:
            del self._listeners[subscription.topic_filter]
            if self._client is not None and self.connected:
                self._client.unsubscribe(subscription.topic_filter)

    def _require_connection(self) -> paho.Client:
        if self._client is None or not self.connected:
            raise ConnectionError(f"not connected to the MQTT broker at {self.host}:{self.port}")
        return self._client

    async def publish(self, topic: str, payload: Any, qos: int = 0, retain: bool = False) -> None:
        client = self._require_connection()
        info = client.publish(topic, encode_payload(payload), qos=qos, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"MQTT publish to {topic} failed ({paho.error_string(info.rc)})")
        if qos > 0:
            await asyncio.to_thread(info.wait_for_publish, 5)

    async def next_message(self, topic_filter: str, timeout: float, *, skip_retained: bool = False,
                           before_waiting: Callable[[], Any] | None = None) -> Message:
        """The next message on a filter. `before_waiting` (e.g. a publish) runs once the subscription is live."""
        self._require_connection()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Message] = loop.create_future()

        def listener(message: Message) -> None:
            if not future.done() and not (skip_retained and message.retain):
                future.set_result(message)

        subscription = await self.subscribe(topic_filter, listener)
        try:
            if before_waiting is not None:
                await before_waiting()
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise TimeoutError(f"no message on {topic_filter} within {timeout} s") from None
        finally:
            subscription.cancel()
