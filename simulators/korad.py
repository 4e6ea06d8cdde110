"""A Korad KA3005P-style supply (also sold as Tenma 72-2540, Velleman PS3005D): serial, no terminators.

The protocol has no line ending, CRC or checksum: commands such as `VSET1:12.34`, `VSET1?`, `ISET1:0.5`,
`VOUT1?`, `IOUT1?`, `OUT1`/`OUT0`, `OVP1`/`OCP1`, `STATUS?` and `*IDN?` arrive back to back, and the device tells
them apart by their shape and by the pause after a burst. Replies carry no terminator either; `STATUS?` is one
status byte (see `status_byte`). OCP trips when the output reaches its current setting. A trailing CR/LF is
tolerated.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from simulators.base import SLOW_REPLY_S, Simulator
from simulators.scpi import PsuChannel, PtyPort

IDENTITY = "KORADKA3005PV2.0"
IDLE_S = 0.05  # a pause this long ends a burst, so a number cannot be cut short
TOKEN = re.compile(rb"\*IDN\?|STATUS\?|[VI]SET1:\d{1,2}(?:\.\d{0,3})?|[VI]SET1\?|[VI]OUT1\?|OUT[01]|OVP[01]|OCP[01]"
                   rb"|BEEP[01]|RCL[1-5]|SAV[1-5]|[\r\n ]+")


class KoradPowerSupply(Simulator):
    kind = "korad_psu"

    def __init__(self, device_id: str = "korad", load_ohms: float = 10.0, name: str = "", area: str = "") -> None:
        super().__init__(device_id, name, area)
        self.channel = PsuChannel(max_volts=31.0, max_amps=5.1, load_ohms=load_ohms, ovp_enabled=False)
        self.beep = True
        self.memories: dict[int, tuple[float, float]] = {}
        self.port = ""
        self._pty: PtyPort | None = None
        self._buffer = b""
        self._flush: asyncio.TimerHandle | None = None

    def state(self) -> dict[str, Any]:
        return self.channel.state() | {"fault": self.fault}

    def address(self) -> str:
        return self.port

    def settable(self) -> dict[str, type]:
        return {"load_ohms": float}

    def set_value(self, key: str, value: Any) -> None:
        self.channel.load_ohms = value
        self.channel.check_protection()

    async def serve(self) -> None:
        self._pty = PtyPort(self._received)
        self.port = self._pty.path

    async def stop(self) -> None:
        if self._flush:
            self._flush.cancel()
        if self._pty:
            self._pty.close()
            self._pty = None

    def status_byte(self) -> int:
        """The KA3005P status byte: 0x01 CV (clear in CC), 0x10 beep on, 0x20 OCP/OVP armed, 0x40 output on."""
        channel = self.channel
        byte = 0x01 if channel.mode != "CC" else 0x00
        byte |= 0x20 if channel.ocp_enabled or channel.ovp_enabled else 0
        byte |= 0x40 if channel.output else 0
        byte |= 0x10 if self.beep else 0
        return byte

    def _received(self, data: bytes) -> None:
        self._buffer = (self._buffer + data)[-4096:]
        if self._flush:
            self._flush.cancel()
        self._flush = asyncio.get_running_loop().call_later(IDLE_S, self._burst_ended)

    def _burst_ended(self) -> None:
        burst, self._buffer = self._buffer, b""
        if self.fault == "offline":
            return
        replies = b"".join(self.run(burst))
        if not replies:
            return
        if self.fault == "garbage":
            replies = replies[: len(replies) // 2] + b"\xff"
        if self.fault == "slow":
            asyncio.get_running_loop().call_later(SLOW_REPLY_S, self._write, replies)
        else:
            self._write(replies)

    def _write(self, data: bytes) -> None:
        if self._pty:
            self._pty.write(data)

    def run(self, burst: bytes) -> list[bytes]:
        """Carry out every command recognised in a burst; bytes that form no command are ignored, as the device does."""
        replies = []
        position = 0
        while position < len(burst):
            match = TOKEN.match(burst, position)
            if match is None:
                position += 1
                continue
            position = match.end()
            reply = self.command(match.group(0).decode().strip())
            if reply is not None:
                replies.append(reply)
        return replies

    def command(self, text: str) -> bytes | None:
        channel = self.channel
        if not text:
            return None
        if text == "*IDN?":
            return IDENTITY.encode()
        if text == "STATUS?":
            return bytes([self.status_byte()])
        if text in ("VSET1?", "ISET1?"):
            return (f"{channel.volts_set:05.2f}" if text[0] == "V" else f"{channel.amps_set:.3f}").encode()
        if text in ("VOUT1?", "IOUT1?"):
            volts, amps = channel.measure()
            return (f"{volts:05.2f}" if text[0] == "V" else f"{amps:.3f}").encode()
        head, _, value = text.partition(":")
        if head in ("VSET1", "ISET1"):
            number = float(value)
            if head == "VSET1":
                channel.volts_set = min(number, channel.max_volts)
            else:
                channel.amps_set = min(number, channel.max_amps)
        elif text[:3] in ("OUT", "OVP", "OCP") or text.startswith("BEEP"):
            on = text.endswith("1")
            if text.startswith("OUT"):
                channel.output = on
                channel.tripped = "" if on else channel.tripped
            elif text.startswith("OVP"):
                channel.ovp_enabled = on
            elif text.startswith("OCP"):
                channel.ocp_enabled = on
            else:
                self.beep = on
        elif text.startswith("SAV"):
            self.memories[int(text[3])] = (channel.volts_set, channel.amps_set)
        elif text.startswith("RCL") and int(text[3]) in self.memories:
            channel.volts_set, channel.amps_set = self.memories[int(text[3])]
        channel.ocp_level = channel.amps_set  # Korad's OCP guards the current setting itself
        channel.check_protection()
        return None
