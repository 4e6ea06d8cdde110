"""Serial ports (pyserial), each opened exclusively by the gateway and used by one caller at a time.

pyserial is blocking, so every exchange runs in a worker thread under the port's lock.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import serial

MAX_REPLY = 64 * 1024
REPLY_GAP_S = 0.1  # with no terminator (Korad), a pause this long ends the reply


@dataclass
class _Port:
    handle: serial.Serial | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class SerialPorts:
    def __init__(self) -> None:
        self._ports: dict[str, _Port] = {}

    def _open(self, path: str, baudrate: int) -> serial.Serial:
        port = self._ports[path]
        if port.handle is None or not port.handle.is_open:
            port.handle = serial.Serial(path, baudrate=baudrate, timeout=1, write_timeout=2, exclusive=True)
        return port.handle

    async def query(self, path: str, baudrate: int, command: str, terminator: str = "\n",
                    timeout: float = 2.0) -> str:
        """Send one command line and return the reply line without its terminator."""
        return await self._exchange(path, baudrate, command, terminator, timeout, expect_reply=True)

    async def write(self, path: str, baudrate: int, command: str, terminator: str = "\n") -> None:
        await self._exchange(path, baudrate, command, terminator, 0, expect_reply=False)

    async def _exchange(self, path: str, baudrate: int, command: str, terminator: str, timeout: float,
                        expect_reply: bool) -> str:
        port = self._ports.setdefault(path, _Port())
        async with port.lock:
            try:
                return await asyncio.to_thread(self._blocking_exchange, path, baudrate, command, terminator,
                                               timeout, expect_reply)
            except serial.SerialException as exc:
                self._close(path)
                raise ConnectionError(f"serial port {path}: {exc}") from exc

    def _blocking_exchange(self, path: str, baudrate: int, command: str, terminator: str, timeout: float,
                           expect_reply: bool) -> str:
        handle = self._open(path, baudrate)
        handle.reset_input_buffer()
        handle.write(command.encode("ascii", "replace") + terminator.encode())
        handle.flush()
        if not expect_reply:
            return ""
        handle.timeout = timeout
        if not terminator:
            handle.inter_byte_timeout = REPLY_GAP_S
            reply: bytes = handle.read(MAX_REPLY)  # pyserial has no type hints
            handle.inter_byte_timeout = None
            if not reply:
                raise TimeoutError(f"no reply from {path} within {timeout} s")
            return reply.decode("ascii", "replace")
        reply = handle.read_until(terminator.encode(), MAX_REPLY)
        if not reply.endswith(terminator.encode()):
            raise TimeoutError(f"no complete reply from {path} within {timeout} s"
                               + (f" (got {reply[:80]!r})" if reply else ""))
        return reply[: -len(terminator)].decode("ascii", "replace").strip("\r")

    def _close(self, path: str) -> None:
        port = self._ports.get(path)
        if port and port.handle is not None:
            port.handle.close()
            port.handle = None

    def close(self) -> None:
        for path in list(self._ports):
            self._close(path)
