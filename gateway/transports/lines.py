"""Instruments on the LAN reached by lines of text over TCP (SCPI's raw socket, port 5025): the same `query` and
`write` as a serial port, so a job's handle does not care which wire its instrument is on.

One connection per instrument, kept open and used by one caller at a time (an instrument executes what one
connection sends in order, which separate connections would not promise). A connection that times out or fails
is dropped, so a late reply is never read as the answer to the next command.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

MAX_REPLY = 64 * 1024
CONNECT_TIMEOUT_S = 3.0


@dataclass
class _Connection:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None


class TcpLines:
    def __init__(self) -> None:
        self._connections: dict[tuple[str, int], _Connection] = {}

    async def query(self, host: str, port: int, command: str, terminator: str = "\n", timeout: float = 2.0) -> str:
        """Send one command line and return the reply line without its terminator."""
        return await self._exchange(host, port, command, terminator, timeout, expect_reply=True)

    async def write(self, host: str, port: int, command: str, terminator: str = "\n") -> None:
        await self._exchange(host, port, command, terminator, CONNECT_TIMEOUT_S, expect_reply=False)

    async def _exchange(self, host: str, port: int, command: str, terminator: str, timeout: float,
                        expect_reply: bool) -> str:
        if not terminator:
            raise ValueError("an instrument on TCP needs a line terminator")
        connection = self._connections.setdefault((host, port), _Connection())
        async with connection.lock:
            try:
                async with asyncio.timeout(timeout):
                    return await self._send(connection, host, port, command, terminator, expect_reply)
            except TimeoutError:
                self._drop(connection)
                raise TimeoutError(f"no reply from {host}:{port} within {timeout:g} s") from None
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                self._drop(connection)
                raise ConnectionError(f"{host}:{port}: {exc or type(exc).__name__}") from exc

    @staticmethod
    async def _send(connection: _Connection, host: str, port: int, command: str, terminator: str,
                    expect_reply: bool) -> str:
        if connection.writer is None or connection.writer.is_closing():
            connection.reader, connection.writer = await asyncio.open_connection(host, port, limit=MAX_REPLY)
        assert connection.reader is not None
        connection.writer.write(command.encode("ascii", "replace") + terminator.encode())
        await connection.writer.drain()
        if not expect_reply:
            return ""
        reply = await connection.reader.readuntil(terminator.encode())
        return reply[: -len(terminator)].decode("ascii", "replace").strip("\r")

    @staticmethod
    def _drop(connection: _Connection) -> None:
        if connection.writer is not None:
            connection.writer.close()
        connection.reader = connection.writer = None

    def close(self) -> None:
        for connection in self._connections.values():
            self._drop(connection)
        self._connections.clear()
