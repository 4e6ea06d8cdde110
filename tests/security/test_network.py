"""Model code against the network: the MQTT broker, devices, TCP/UDP addresses, unix sockets, the host netns.

Every target here is a real listener started by the test, so containment is checked on the listener's side
(nothing accepted, nothing received), not only by the error the job saw. Non-loopback addresses are only
ever the target of a connect attempt that the sandbox stops before a packet exists.
"""

from __future__ import annotations

import asyncio
import socket
import uuid

import aiomqtt
import pytest
from conftest import shelly_entry

from security.attack import MODULE_LOOP, NOT_PERMITTED, OWN_LOOP, Listener, spy

pytestmark = MODULE_LOOP

CONNECT = """import socket
s = socket.create_connection(({host!r}, {port}), timeout=0.5)
s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')
"""
MQTT_CONNECT = bytes([0x10, 16]) + b"\x00\x04MQTT\x04\x02\x00\x3c" + b"\x00\x04leak"
MQTT_PUBLISH = bytes([0x30, 20]) + b"\x00\x0credteam/leak" + b"stolen"
MQTT_LEAK = f"""import socket
s = socket.create_connection(({{host!r}}, {{port}}), timeout=0.5)
s.sendall({MQTT_CONNECT!r})
s.recv(4)
s.sendall({MQTT_PUBLISH!r})
"""
SWITCH_ON_REQUEST = b'POST /rpc/Switch.Set HTTP/1.0\r\nContent-Length: 11\r\n\r\n{"on":true}'


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1"])
async def test_tcp_to_a_loopback_listener_is_blocked(attacker, host):
    listener = await Listener().start(host)
    try:
        result = await attacker.run(CONNECT.format(host=host, port=listener.port))
        assert NOT_PERMITTED in result.output
        assert listener.accepted == 0
    finally:
        await listener.close()


async def test_tcp_to_a_lan_address_is_blocked_before_any_packet(attacker):
    result = await attacker.run(CONNECT.format(host="10.0.0.1", port=80))
    assert NOT_PERMITTED in result.output  # from socket() itself: no socket, so no SYN


async def test_udp_to_a_loopback_listener_is_blocked(attacker):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.setblocking(False)
        port = receiver.getsockname()[1]
        result = await attacker.run("import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
                                    f".sendto(b'leak', ('127.0.0.1', {port}))")
        assert NOT_PERMITTED in result.output
        with pytest.raises(BlockingIOError):
            receiver.recv(16)


@OWN_LOOP
async def test_the_mqtt_broker_is_unreachable(start_attacker, mqtt_broker):
    attacker = await start_attacker(broker=mqtt_broker)
    async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port) as watcher:
        await watcher.subscribe("redteam/#")
        result = await attacker.run(MQTT_LEAK.format(host=mqtt_broker.host, port=mqtt_broker.port))
        assert NOT_PERMITTED in result.output
        with pytest.raises(TimeoutError):  # the job's PUBLISH never reached the broker
            async with asyncio.timeout(0.3):
                await anext(aiter(watcher.messages))


@OWN_LOOP
async def test_a_device_that_is_not_exposed_is_unreachable(start_attacker, shelly):
    attacker = await start_attacker(devices=[shelly_entry(shelly, exposed=False)])
    received = spy(shelly, "call")
    result = await attacker.run(
        "try:\n    devices['desk_plug']\nexcept KeyError as error:\n    print(error)\n"
        f"import socket\ns = socket.create_connection(({shelly.host!r}, {shelly.port}), timeout=0.5)\n"
        f"s.sendall({SWITCH_ON_REQUEST!r})")
    assert result.output.startswith("\"no device has the id 'desk_plug'")
    assert NOT_PERMITTED in result.output
    assert received == [] and shelly.output is False


FAMILIES = {
    "AF_INET6 UDP": "socket.AF_INET6, socket.SOCK_DGRAM",
    "raw IP": "socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP",
    "MPTCP": "socket.AF_INET, socket.SOCK_STREAM, 262",
    "netlink": "socket.AF_NETLINK, socket.SOCK_RAW, 0",
    "packet": "socket.AF_PACKET, socket.SOCK_RAW, 0",
    "unix": "socket.AF_UNIX, socket.SOCK_STREAM",
}


@pytest.mark.parametrize("family", FAMILIES)
async def test_no_socket_of_any_family_can_be_made(attacker, family):
    result = await attacker.run(f"import socket\nsocket.socket({FAMILIES[family]})")
    assert NOT_PERMITTED in result.output


@pytest.mark.parametrize("kind", ["file", "abstract"])
async def test_a_unix_socket_is_unreachable(attacker, kind):
    accepted = []

    def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        writer.close()

    path = str(attacker.base / "service.sock") if kind == "file" else f"\0pyuse-redteam-{uuid.uuid4().hex}"
    server = await asyncio.start_unix_server(accept, path=path)
    try:
        if kind == "file":
            (attacker.base / "service.sock").chmod(0o777)
        result = await attacker.run(f"import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect({path!r})\n"
                                    "s.sendall(b'leak')")
        assert NOT_PERMITTED in result.output
        await asyncio.sleep(0.05)
        assert accepted == []
    finally:
        server.close()
        await server.wait_closed()


SETNS = """import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
try:
    host = os.open('/proc/1/ns/net', os.O_RDONLY)
except OSError as error:
    print('open:', error.strerror)
    host = 1
for name, call in (('setns', lambda: libc.setns(host, 0x40000000)),
                   ('unshare', lambda: libc.unshare(0x10000000 | 0x40000000))):
    print(name + ':', os.strerror(ctypes.get_errno()) if call() else 'succeeded')
import socket
s = socket.create_connection(('127.0.0.1', {port}), timeout=0.5)
"""


async def test_setns_back_to_the_host_network_is_blocked(attacker):
    listener = await Listener().start()  # not the `listener` fixture: it would listen on another event loop
    try:
        result = await attacker.run(SETNS.format(port=listener.port))
        assert result.output.startswith("open: Permission denied\nsetns: Operation not permitted\n"
                                        "unshare: Operation not permitted\n")
        assert NOT_PERMITTED in result.output
        assert listener.accepted == 0
    finally:
        await listener.close()
