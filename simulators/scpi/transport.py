"""How SCPI instruments are reached: LF-terminated lines (a trailing CR is ignored) over a pseudo-terminal and TCP.

Each instrument listens on a pseudo-terminal (`.port` is the slave path, raw mode) and on TCP port 5025 of a
loopback address of its own; its faults (offline, slow, garbage) act on the lines here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from abc import abstractmethod
from collections.abc import Awaitable, Callable

from simulators.base import SLOW_REPLY_S, Simulator

SCPI_PORT = 5025
MAX_LINE = 4096


class PtyPort:
    """A raw-mode pseudo-terminal: clients open `path` (pyserial, pyvisa ASRL) and talk to `on_data`."""

    def __init__(self, on_data: Callable[[bytes], None]) -> None:
        self._on_data = on_data
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        os.set_blocking(self.master, False)
        asyncio.get_running_loop().add_reader(self.master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except (BlockingIOError, OSError):
            return
        self._on_data(data)

    def write(self, data: bytes) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self.master, data)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)
        os.close(self.slave)


class LineChannel:
    """Assembles LF-terminated lines from one connection and answers each through `answer` (may be slow)."""

    def __init__(self, answer: Callable[[str | None], Awaitable[bytes | None]],
                 write: Callable[[bytes], None]) -> None:
        self._answer = answer
        self._write = write
        self._buffer = b""
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()  # None: the input buffer overflowed
        self._worker = asyncio.ensure_future(self._work())

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            self._lines.put_nowait(line.rstrip(b"\r").decode("ascii", "replace"))
        if len(self._buffer) > MAX_LINE:  # a line that never ends: drop it, as an input buffer overrun
            self._buffer = b""
            self._lines.put_nowait(None)

    async def _work(self) -> None:
        while True:
            line = await self._lines.get()
            reply = await self._answer(line)
            if reply is not None:
                self._write(reply)

    def close(self) -> None:
        self._worker.cancel()


class LineInstrument(Simulator):
    """An instrument reached over a pty and TCP 5025 that answers whole lines (see `answer_line`)."""

    def __init__(self, device_id: str, name: str = "", area: str = "", host: str = "", port: int = SCPI_PORT) -> None:
        super().__init__(device_id, name, area)
        self.host, self.tcp_port = host, port
        self.port = ""  # the pty path, as the v0 simulator and serial clients know it
        self._pty: PtyPort | None = None
        self._pty_lines: LineChannel | None = None
        self._server: asyncio.Server | None = None
        self._connections: dict[LineChannel, asyncio.StreamWriter] = {}

    def address(self) -> str:
        return f"{self.port} | TCPIP0::{self.host}::{self.tcp_port}::SOCKET"

    async def serve(self) -> None:
        self._server = await self._listen()
        self.tcp_port = self._server.sockets[0].getsockname()[1]
        self._pty = PtyPort(lambda data: self._pty_lines.feed(data) if self._pty_lines else None)
        self._pty_lines = LineChannel(self._reply, self._pty.write)
        self.port = self._pty.path

    async def _listen(self) -> asyncio.Server:
        """Bind the TCP port; with no host given, the first free loopback address of the pool that has it free."""
        if self.host:
            return await asyncio.start_server(self._connected, self.host, self.tcp_port)
        self.host, server = await self.context.addresses.bind(
            lambda host: asyncio.start_server(self._connected, host, self.tcp_port))
        return server

    async def stop(self) -> None:
        if self._server:
            self._server.close()
            for channel, writer in list(self._connections.items()):  # a client may keep its connection open
                channel.close()
                writer.close()
            await self._server.wait_closed()
            self._server = None
        if self._pty and self._pty_lines:
            self._pty_lines.close()
            self._pty.close()
            self._pty = self._pty_lines = None

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        channel = LineChannel(self._reply, writer.write)
        self._connections[channel] = writer
        try:
            while data := await reader.read(4096):
                channel.feed(data)
        except ConnectionError:
            pass
        finally:
            channel.close()
            self._connections.pop(channel, None)
            writer.close()

    async def _reply(self, line: str | None) -> bytes | None:
        if self.fault == "offline":
            return None
        if line is None:
            self.overrun()
            return None
        if self.fault == "slow":
            await asyncio.sleep(SLOW_REPLY_S)
        reply = self.answer_line(line)
        if reply is None:
            return None
        if self.fault == "garbage":
            return reply[: len(reply) // 2].encode("ascii", "replace") + b"\xff#\n"
        return reply.encode("ascii", "replace") + b"\n"

    @abstractmethod
    def answer_line(self, line: str) -> str | None:
        """The reply to one line (without its terminator), or None when there is nothing to send."""

    def overrun(self) -> None:
        """A line longer than the input buffer arrived and was dropped."""
