"""SCPI lab instruments: an IEEE-488.2/SCPI engine, its two line transports, a two-channel PSU and a DMM.

The engine matches headers against command patterns written the way programming manuals print them
(`[SOURce#:]VOLTage[:LEVel][:IMMediate][:AMPLitude]`: upper case is the short form, `[]` optional nodes, `#` a
numeric suffix), runs `;`-separated program units with the SCPI path rule (a leading `:` returns to the root),
and keeps the error queue and the status bytes (ESR/ESE, STB/SRE) as IEEE 488.2 describes them.

Each instrument listens on a pseudo-terminal (`.port` is the slave path, raw mode) and on TCP port 5025 of a
loopback address of its own; both are LF-terminated (a trailing CR is ignored).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import tty
import zlib
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simulators.base import SLOW_REPLY_S, Simulator

SCPI_PORT = 5025
QUEUE_SIZE = 20
OVERLOAD = 9.9e37  # what a meter reads when the input is beyond its range
MAX_LINE = 4096

ERRORS = {
    -100: "Command error", -102: "Syntax error", -104: "Data type error", -108: "Parameter not allowed",
    -109: "Missing parameter", -113: "Undefined header", -114: "Header suffix out of range",
    -131: "Invalid suffix", -200: "Execution error",
    -221: "Settings conflict", -222: "Data out of range", -224: "Illegal parameter value",
    -230: "Data corrupt or stale", -350: "Queue overflow", -363: "Input buffer overrun",
}
# ESR bits (IEEE 488.2 11.5.1): operation complete, query error, device error, execution error, command error.
ESR_OPC, ESR_QUERY, ESR_DEVICE, ESR_EXECUTION, ESR_COMMAND, ESR_POWER_ON = 1, 4, 8, 16, 32, 128
STB_EAV, STB_MAV, STB_ESB, STB_RQS = 4, 16, 32, 64


class ScpiError(Exception):
    def __init__(self, code: int, detail: str = "") -> None:
        self.code = code
        text = ERRORS.get(code, "Error")
        super().__init__(f"{text}; {detail}" if detail else text)


def nr3(value: float) -> str:
    """Numbers as Keysight instruments answer them: +1.20000000E+01."""
    return f"{value:+.8E}"


# --- parameters ----------------------------------------------------------------------------------------------------

UNIT_SCALE = {"": 1.0, "M": 1e-3, "U": 1e-6, "K": 1e3, "MA": 1e6}


def numeric(argument: str, low: float, high: float, default: float, units: tuple[str, ...] = ()) -> float:
    """An NRf parameter or MIN|MAX|DEF, with an optional unit suffix (e.g. `250mV`); raises -104/-131/-222."""
    word = argument.strip().upper()
    for names, value in ((("MIN", "MINIMUM"), low), (("MAX", "MAXIMUM"), high), (("DEF", "DEFAULT"), default)):
        if word in names:
            return value
    match = re.fullmatch(r"([+-]?(?:\d+\.?\d*|\.\d+)(?:E[+-]?\d+)?)\s*([A-Z]*)", word)
    if not match:
        raise ScpiError(-104, argument.strip()[:20])
    value = float(match.group(1))
    suffix = match.group(2)
    if suffix:
        unit = next((u for u in sorted(units, key=len, reverse=True) if suffix.endswith(u)), None)
        prefix = suffix[: -len(unit)] if unit else None
        if unit is None or prefix not in UNIT_SCALE:
            raise ScpiError(-131, suffix)
        value *= UNIT_SCALE[prefix]
    if not math.isfinite(value) or not low <= value <= high:
        raise ScpiError(-222, f"{value:g} not in {low:g}..{high:g}")
    return value


def boolean(argument: str) -> bool:
    word = argument.strip().upper()
    if word in ("ON", "1"):
        return True
    if word in ("OFF", "0"):
        return False
    try:
        return round(float(word)) != 0
    except ValueError:
        raise ScpiError(-104, argument.strip()[:20]) from None


def split_units(text: str) -> list[str]:
    """Split a message on `;` outside quoted strings."""
    units, current, quote = [], [], ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == ";":
            units.append("".join(current))
            current = []
            continue
        current.append(char)
    units.append("".join(current))
    return units


def split_parameters(text: str) -> list[str]:
    parameters = [p.strip() for p in re.split(r",(?=(?:[^\"]*\"[^\"]*\")*[^\"]*$)", text)] if text.strip() else []
    if any(p == "" for p in parameters):
        raise ScpiError(-102, "empty parameter")
    return parameters


# --- the engine ----------------------------------------------------------------------------------------------------

Handler = Callable[["Call"], str | None]


@dataclass
class Call:
    """One program unit being executed: its numeric suffixes (None where absent) and its parameters."""

    suffixes: list[int | None]
    parameters: list[str]

    def suffix(self, default: int) -> int:
        return next((s for s in self.suffixes if s is not None), default)

    def only(self, count: int = 1) -> list[str]:
        if len(self.parameters) > count:
            raise ScpiError(-108)
        return self.parameters

    def one(self) -> str:
        if not self.parameters:
            raise ScpiError(-109)
        return self.only(1)[0]


def compile_header(pattern: str) -> re.Pattern[str]:
    """`[SOURce#:]VOLTage[:LEVel]?` -> a regex accepting each mnemonic's short or long form, case-insensitively."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "[":
            out.append("(?:")
        elif char == "]":
            out.append(")?")
        elif char in ":?*":
            out.append(re.escape(char))
        elif char == "#":
            out.append(r"(\d*)")
        else:
            word = re.match(r"[A-Za-z]+", pattern[i:]).group(0)  # type: ignore[union-attr]
            short = "".join(c for c in word if c.isupper())
            out.append(f"(?:{short}|{word.upper()})" if short != word.upper() else word.upper())
            i += len(word)
            continue
        i += 1
    return re.compile("".join(out))


@dataclass
class ScpiEngine:
    """IEEE 488.2 common commands, the SCPI tree walk, the error queue and the status registers."""

    identity: str
    reset: Callable[[], None] = lambda: None
    commands: list[tuple[re.Pattern[str], Handler]] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)
    esr: int = ESR_POWER_ON
    ese: int = 0
    sre: int = 0

    def __post_init__(self) -> None:
        common: dict[str, Handler] = {
            "*IDN?": lambda call: self.identity, "*RST": self._rst, "*CLS": self._cls, "*OPC": self._opc,
            "*OPC?": lambda call: "1", "*WAI": lambda call: None, "*TST?": lambda call: "0",
            "*ESR?": self._esr_query, "*ESE": self._ese, "*ESE?": lambda call: str(self.ese),
            "*SRE": self._sre, "*SRE?": lambda call: str(self.sre), "*STB?": lambda call: str(self.status_byte()),
            "SYSTem:ERRor[:NEXT]?": self._next_error, "SYSTem:ERRor:COUNt?": lambda call: str(len(self.errors)),
            "SYSTem:VERSion?": lambda call: "1999.0", "SYSTem:REMote": lambda call: None,
            "SYSTem:LOCal": lambda call: None, "SYSTem:RWLock": lambda call: None,
        }
        for pattern, handler in common.items():
            self.add(pattern, handler)

    def add(self, pattern: str, handler: Handler) -> None:
        self.commands.append((compile_header(pattern), handler))

    def status_byte(self) -> int:
        stb = (STB_EAV if self.errors else 0) | (STB_ESB if self.esr & self.ese else 0)
        return stb | (STB_RQS if stb & self.sre else 0)

    def push_error(self, code: int, detail: str = "") -> None:
        self.esr |= (ESR_COMMAND if -200 < code <= -100 else ESR_EXECUTION if -300 < code <= -200
                     else ESR_DEVICE if -400 < code <= -300 else ESR_QUERY if -500 < code <= -400 else 0)
        text = ERRORS.get(code, "Error") + (f";{detail}" if detail else "")
        if len(self.errors) >= QUEUE_SIZE:
            self.errors[-1] = (-350, ERRORS[-350])
        else:
            self.errors.append((code, text))

    def execute(self, message: str) -> str | None:
        """Run one message (a line without its terminator); return the joined responses, or None if there are none."""
        responses: list[str] = []
        path = ""
        for unit in split_units(message):
            unit = unit.strip()
            if not unit:
                continue
            try:
                response, path = self._run_unit(unit, path)
            except ScpiError as error:
                self.push_error(error.code, str(error).partition("; ")[2])
                continue
            if response is not None:
                responses.append(response)
        return ";".join(responses) if responses else None

    def _run_unit(self, unit: str, path: str) -> tuple[str | None, str]:
        match = re.fullmatch(r"(\S+)(?:\s+(.*))?", unit, re.DOTALL)
        if not match:
            raise ScpiError(-102)
        header, argument = match.group(1).upper(), match.group(2) or ""
        if not re.fullmatch(r":?\*?[A-Z0-9:]+\??", header) or "::" in header or header.endswith(":"):
            raise ScpiError(-102, header[:20])
        parameters = split_parameters(argument)
        if header.startswith("*"):
            return self._dispatch(header, parameters), path
        if header.startswith(":"):
            candidates = [header[1:]]
        else:  # SCPI path rule: relative to the previous command's node; instruments also accept it from the root
            candidates = [path + header, header] if path else [header]
        for candidate in candidates:
            for regex, handler in self.commands:
                found = regex.fullmatch(candidate)
                if found:
                    suffixes = [int(s) if s else None for s in found.groups()]
                    response = handler(Call(suffixes, parameters))
                    return response, candidate[: candidate.rfind(":") + 1]
        raise ScpiError(-113, header[:20])

    def _dispatch(self, header: str, parameters: list[str]) -> str | None:
        for regex, handler in self.commands:
            if regex.fullmatch(header):
                return handler(Call([], parameters))
        raise ScpiError(-113, header[:20])

    def _next_error(self, call: Call) -> str:
        call.only(0)
        if not self.errors:
            return '+0,"No error"'
        code, text = self.errors.pop(0)
        return f'{code},"{text}"'

    def _rst(self, call: Call) -> None:
        call.only(0)
        self.reset()

    def _cls(self, call: Call) -> None:
        call.only(0)
        self.errors.clear()
        self.esr = 0

    def _opc(self, call: Call) -> None:
        call.only(0)
        self.esr |= ESR_OPC  # every operation here completes at once

    def _esr_query(self, call: Call) -> str:
        value, self.esr = self.esr, 0
        return str(value)

    def _ese(self, call: Call) -> None:
        self.ese = round(numeric(call.one(), 0, 255, 0))

    def _sre(self, call: Call) -> None:
        self.sre = round(numeric(call.one(), 0, 255, 0)) & ~STB_RQS


# --- transports ----------------------------------------------------------------------------------------------------

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

    def __init__(self, answer: Callable[[str], Any], write: Callable[[bytes], None]) -> None:
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
        self._connections: set[LineChannel] = set()

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
            for channel in list(self._connections):
                channel.close()
            await self._server.wait_closed()
            self._server = None
        if self._pty and self._pty_lines:
            self._pty_lines.close()
            self._pty.close()
            self._pty = self._pty_lines = None

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        channel = LineChannel(self._reply, writer.write)
        self._connections.add(channel)
        try:
            while data := await reader.read(4096):
                channel.feed(data)
        except ConnectionError:
            pass
        finally:
            channel.close()
            self._connections.discard(channel)
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


class ScpiInstrument(LineInstrument):
    """A LineInstrument whose lines go to a ScpiEngine."""

    identity = "PYUSE,SIM,0,1.0"

    def __init__(self, device_id: str, name: str = "", area: str = "", host: str = "", port: int = SCPI_PORT) -> None:
        super().__init__(device_id, name, area, host, port)
        self.engine = ScpiEngine(self.identity, reset=self.reset)

    def reset(self) -> None:
        """*RST: the instrument's settings go back to their defaults."""

    def answer_line(self, line: str) -> str | None:
        return self.engine.execute(line)

    def overrun(self) -> None:
        self.engine.push_error(-363)

    def status(self) -> dict[str, Any]:
        return {"esr": self.engine.esr, "errors": [f'{code},"{text}"' for code, text in self.engine.errors]}


# --- the power supply ----------------------------------------------------------------------------------------------

@dataclass
class PsuChannel:
    """One output: constant voltage until the load would draw more than the current limit, then constant current.

    OVP trips when the output voltage exceeds its level, OCP when the current reaches its level; a trip turns the
    output off until it is cleared.
    """

    max_volts: float = 30.0
    max_amps: float = 3.0
    load_ohms: float = 10.0
    volts_set: float = 0.0
    amps_set: float = 1.0
    output: bool = False
    ovp_level: float = 0.0
    ovp_enabled: bool = True
    ocp_level: float = 0.0
    ocp_enabled: bool = False
    tripped: str = ""  # "", "ovp" or "ocp"

    def __post_init__(self) -> None:
        self.ovp_level = self.ovp_level or round(self.max_volts * 1.1, 3)
        self.ocp_level = self.ocp_level or round(self.max_amps * 1.1, 3)

    def reset(self) -> None:
        self.volts_set, self.amps_set, self.output, self.tripped = 0.0, 1.0, False, ""
        self.ovp_level, self.ocp_level = round(self.max_volts * 1.1, 3), round(self.max_amps * 1.1, 3)
        self.ovp_enabled, self.ocp_enabled = True, False

    def measure(self) -> tuple[float, float]:
        """(volts, amps) at the terminals now."""
        if not self.output:
            return 0.0, 0.0
        if self.load_ohms <= 0 or math.isinf(self.load_ohms):  # open circuit
            return round(self.volts_set, 4), 0.0
        volts = min(self.volts_set, self.amps_set * self.load_ohms)
        return round(volts, 4), round(volts / self.load_ohms, 4)

    @property
    def mode(self) -> str:
        volts, _ = self.measure()
        return "OFF" if not self.output else "CV" if volts >= self.volts_set - 1e-9 else "CC"

    def check_protection(self) -> None:
        volts, amps = self.measure()
        if self.ovp_enabled and volts > self.ovp_level:
            self.output, self.tripped = False, "ovp"
        elif self.ocp_enabled and amps >= self.ocp_level - 1e-9:
            self.output, self.tripped = False, "ocp"

    def state(self) -> dict[str, Any]:
        volts, amps = self.measure()
        return {"voltage_set": self.volts_set, "current_set": self.amps_set, "output": self.output,
                "voltage": volts, "current": amps, "power": round(volts * amps, 4), "mode": self.mode,
                "load_ohms": self.load_ohms, "ovp_level": self.ovp_level, "ocp_level": self.ocp_level,
                "ocp_enabled": self.ocp_enabled, "tripped": self.tripped or None}


class ScpiPowerSupply(ScpiInstrument):
    """A bench supply with `channels` outputs (Keysight E3646A-style commands, Rigol/Siglent channel forms too)."""

    kind = "scpi_psu"

    def __init__(self, device_id: str = "psu", load_ohms: float = 10.0, max_volts: float = 30.0,
                 max_amps: float = 3.0, name: str = "", area: str = "", channels: int = 2, host: str = "",
                 port: int = SCPI_PORT) -> None:
        self.identity = f"PYUSE,SIM-PSU{channels},PSU{zlib.crc32(device_id.encode()) % 100000:05d},1.2.0"
        super().__init__(device_id, name, area, host, port)
        self.channels = [PsuChannel(max_volts, max_amps, load_ohms) for _ in range(channels)]
        self.selected = 1
        self._register()

    # channel 1 as attributes: the v0 API (tests and the gateway demo use it)
    @property
    def load_ohms(self) -> float:
        return self.channels[0].load_ohms

    @load_ohms.setter
    def load_ohms(self, value: float) -> None:
        self.set_value("load_ohms", value)

    @property
    def volts_set(self) -> float:
        return self.channels[0].volts_set

    @property
    def output(self) -> bool:
        return self.channels[0].output

    def measure(self, channel: int = 1) -> tuple[float, float]:
        return self.channels[channel - 1].measure()

    def state(self) -> dict[str, Any]:
        state = dict(self.channels[0].state()) | {"fault": self.fault}
        state.update({f"ch{n}": ch.state() for n, ch in enumerate(self.channels, 1)})
        return state | self.status()

    def settable(self) -> dict[str, type]:
        keys = {"load_ohms": float}
        keys.update({f"load_ohms_{n}": float for n in range(2, len(self.channels) + 1)})
        return keys

    def set_value(self, key: str, value: Any) -> None:
        number = 1 if key == "load_ohms" else int(key.rsplit("_", 1)[1])
        channel = self.channels[number - 1]
        channel.load_ohms = float(value)
        channel.check_protection()

    def reset(self) -> None:
        for channel in self.channels:
            channel.reset()
        self.selected = 1

    def _channel(self, call: Call, explicit: str | None = None) -> PsuChannel:
        number = self._channel_number(explicit) if explicit else call.suffix(self.selected)
        if not 1 <= number <= len(self.channels):
            raise ScpiError(-224 if explicit else -114, f"channel {number}")
        return self.channels[number - 1]

    def _channel_number(self, word: str) -> int:
        match = re.fullmatch(r"(?:CH|OUT|OUTP|OUTPUT)?(\d)", word.strip().upper())
        if not match:
            raise ScpiError(-224, word.strip()[:20])
        return int(match.group(1))

    def _leading_channel(self, call: Call) -> tuple[PsuChannel, list[str]]:
        """`OUTP CH2,ON` / `APPL CH1,5,1` (Rigol, Siglent): a first parameter naming the channel."""
        if call.parameters and re.fullmatch(r"(?i)(CH|OUTP?U?T?)\d", call.parameters[0]):
            return self._channel(call, call.parameters[0]), call.parameters[1:]
        return self._channel(call), call.parameters

    def _register(self) -> None:
        add = self.engine.add
        add("INSTrument[:SELect]", self._select)
        add("INSTrument[:SELect]?", lambda call: f"CH{self.selected}")
        add("INSTrument:NSELect", self._nselect)
        add("INSTrument:NSELect?", lambda call: str(self.selected))
        add("APPLy", self._apply)
        add("APPLy?", self._apply_query)
        level = "[SOURce#:]{}[:LEVel][:IMMediate][:AMPLitude]"
        add(level.format("VOLTage"), lambda call: self._set_level(call, "volts_set"))
        add(level.format("VOLTage") + "?", lambda call: self._query_level(call, "volts_set"))
        add(level.format("CURRent"), lambda call: self._set_level(call, "amps_set"))
        add(level.format("CURRent") + "?", lambda call: self._query_level(call, "amps_set"))
        for quantity, attr in (("VOLTage", "ovp"), ("CURRent", "ocp")):
            protection = f"[SOURce#:]{quantity}:PROTection"
            add(protection + "[:LEVel]", lambda call, a=attr: self._set_protection(call, a))
            add(protection + "[:LEVel]?", lambda call, a=attr: nr3(getattr(self._channel(call), f"{a}_level")))
            add(protection + ":STATe", lambda call, a=attr: self._set_protection_state(call, a))
            add(protection + ":STATe?", lambda call, a=attr: str(int(getattr(self._channel(call),
                                                                              f"{a}_enabled"))))
            add(protection + ":TRIPped?", lambda call, a=attr: str(int(self._channel(call).tripped == a)))
            add(protection + ":CLEar", lambda call, a=attr: self._clear_trip(call, a))
        add("OUTPut#[:STATe]", self._set_output)
        add("OUTPut#[:STATe]?", lambda call: str(int(self._leading_channel(call)[0].output)))
        add("OUTPut#:PROTection:CLEar", lambda call: self._clear_trip(call, None))
        add("OUTPut#:MODE?", lambda call: self._leading_channel(call)[0].mode)
        for quantity, index in (("VOLTage", 0), ("CURRent", 1), ("POWer", 2)):
            add(f"MEASure#[:SCALar]:{quantity}[:DC]?", lambda call, i=index: self._measure(call, i))

    def _select(self, call: Call) -> None:
        self.selected = self.channels.index(self._channel(call, call.one())) + 1

    def _nselect(self, call: Call) -> None:
        number = round(numeric(call.one(), 1, len(self.channels), 1))
        self.selected = number

    def _apply(self, call: Call) -> None:
        channel, values = self._leading_channel(call)
        if not values:
            raise ScpiError(-109)
        if len(values) > 2:
            raise ScpiError(-108)
        volts = numeric(values[0], 0, channel.max_volts, 0, ("V",))
        amps = numeric(values[1], 0, channel.max_amps, 1.0, ("A",)) if len(values) > 1 else channel.amps_set
        channel.volts_set, channel.amps_set = volts, amps
        channel.check_protection()

    def _apply_query(self, call: Call) -> str:
        channel, _ = self._leading_channel(call)
        return f'"{nr3(channel.volts_set)},{nr3(channel.amps_set)}"'

    def _set_level(self, call: Call, attr: str) -> None:
        channel = self._channel(call)
        limit, unit = (channel.max_volts, "V") if attr == "volts_set" else (channel.max_amps, "A")
        setattr(channel, attr, numeric(call.one(), 0, limit, 0.0 if attr == "volts_set" else 1.0, (unit,)))
        channel.check_protection()

    def _query_level(self, call: Call, attr: str) -> str:
        channel = self._channel(call)
        limit = channel.max_volts if attr == "volts_set" else channel.max_amps
        word = call.only(1)[0].upper() if call.parameters else ""
        if word in ("MIN", "MINIMUM"):
            return nr3(0.0)
        if word in ("MAX", "MAXIMUM"):
            return nr3(limit)
        if word:
            raise ScpiError(-224, word[:20])
        return nr3(getattr(channel, attr))

    def _set_protection(self, call: Call, kind: str) -> None:
        channel = self._channel(call)
        limit, unit = (channel.max_volts * 1.1, "V") if kind == "ovp" else (channel.max_amps * 1.1, "A")
        setattr(channel, f"{kind}_level", numeric(call.one(), 0, round(limit, 3), round(limit, 3), (unit,)))
        channel.check_protection()

    def _set_protection_state(self, call: Call, kind: str) -> None:
        channel = self._channel(call)
        setattr(channel, f"{kind}_enabled", boolean(call.one()))
        channel.check_protection()

    def _clear_trip(self, call: Call, kind: str | None) -> None:
        channel, _ = self._leading_channel(call)
        if kind is None or channel.tripped == kind:
            channel.tripped = ""

    def _set_output(self, call: Call) -> None:
        channel, values = self._leading_channel(call)
        if len(values) != 1:
            raise ScpiError(-109 if not values else -108)
        on = boolean(values[0])
        if on and channel.tripped:
            raise ScpiError(-221, f"{channel.tripped.upper()} tripped; clear the protection first")
        channel.output = on
        channel.check_protection()

    def _measure(self, call: Call, index: int) -> str:
        channel, rest = self._leading_channel(call)
        if rest:
            raise ScpiError(-108)
        volts, amps = channel.measure()
        return nr3((volts, amps, volts * amps)[index])


# --- the multimeter ------------------------------------------------------------------------------------------------

FUNCTIONS = {"VOLT": ("VOLT", "V", 1000.0), "CURR": ("CURR", "A", 10.0), "RES": ("RES", "OHM", 100e6)}


class ScpiMultimeter(ScpiInstrument):
    """A DMM (Keysight 3446x-style). Wired to a PSU channel it measures that output: its voltage across the
    load, the current through it (meter in series), and the load's resistance; unwired it reads `input_*`."""

    kind = "scpi_dmm"

    def __init__(self, device_id: str = "dmm", source: PsuChannel | None = None, name: str = "", area: str = "",
                 host: str = "", port: int = SCPI_PORT) -> None:
        self.identity = f"PYUSE,SIM-DMM,DMM{zlib.crc32(device_id.encode()) % 100000:05d},2.1.0"
        super().__init__(device_id, name, area, host, port)
        self.source = source
        self.input_volts, self.input_amps, self.input_ohms = 0.0, 0.0, OVERLOAD
        self.function = "VOLT"
        self.range: float | None = None  # None = autorange
        self.nplc = 10.0
        self.trigger_source = "IMM"
        self.armed = False
        self.memory: list[float] = []
        self._register()

    def state(self) -> dict[str, Any]:
        return {"function": self.function, "range": self.range or "AUTO", "reading": self.reading(),
                "trigger_source": self.trigger_source, "fault": self.fault} | self.status()

    def settable(self) -> dict[str, type]:
        return {"input_volts": float, "input_amps": float, "input_ohms": float}

    def reset(self) -> None:
        self.function, self.range, self.nplc, self.trigger_source = "VOLT", None, 10.0, "IMM"
        self.armed, self.memory = False, []

    def reading(self, function: str | None = None) -> float:
        function = function or self.function
        if self.source is not None:
            volts, amps = self.source.measure()
            ohms = self.source.load_ohms if self.source.load_ohms > 0 else OVERLOAD
            value = {"VOLT": volts, "CURR": amps, "RES": ohms}[function]
        else:
            value = {"VOLT": self.input_volts, "CURR": self.input_amps, "RES": self.input_ohms}[function]
        limit = (self.range or FUNCTIONS[function][2]) * 1.2
        return value if abs(value) <= limit else OVERLOAD

    def _register(self) -> None:
        add = self.engine.add
        for word, function in (("VOLTage[:DC]", "VOLT"), ("CURRent[:DC]", "CURR"), ("RESistance", "RES")):
            add(f"MEASure:{word}?", lambda call, f=function: self._measure(call, f))
            add(f"CONFigure:{word}", lambda call, f=function: self._configure(call, f))
            add(f"[SENSe:]{word}:NPLCycles", self._set_nplc)
            add(f"[SENSe:]{word}:NPLCycles?", lambda call: nr3(self.nplc))
            add(f"[SENSe:]{word}:RANGe", lambda call, f=function: self._set_range(call, f))
            add(f"[SENSe:]{word}:RANGe?", lambda call: nr3(self.range or FUNCTIONS[self.function][2]))
        add("CONFigure?", lambda call: f'"{self.function} {nr3(self.range or FUNCTIONS[self.function][2])},'
                                       f'{nr3(3e-6)}"')
        add("[SENSe:]FUNCtion[:ON]", self._set_function)
        add("[SENSe:]FUNCtion[:ON]?", lambda call: f'"{self.function}"')
        add("READ?", lambda call: self._read(call))
        add("INITiate[:IMMediate]", self._initiate)
        add("FETCh?", self._fetch)
        add("TRIGger:SOURce", self._trigger_source)
        add("TRIGger:SOURce?", lambda call: self.trigger_source)
        add("*TRG", self._trigger)

    def _configure(self, call: Call, function: str) -> None:
        self.function = function
        self._apply_range(call, function)
        self.memory = []

    def _apply_range(self, call: Call, function: str) -> None:
        parameters = call.only(2)
        top = FUNCTIONS[function][2]
        if parameters and parameters[0].upper() not in ("AUTO", "DEF", "DEFAULT"):
            self.range = numeric(parameters[0], 0, top, top, (FUNCTIONS[function][1],))
        else:
            self.range = None

    def _measure(self, call: Call, function: str) -> str:
        self._configure(call, function)
        return nr3(self.reading())

    def _set_range(self, call: Call, function: str) -> None:
        if function != self.function:
            raise ScpiError(-221, "range of a function that is not selected")
        self._apply_range(call, function)

    def _set_nplc(self, call: Call) -> None:
        self.nplc = numeric(call.one(), 0.02, 100, 10)

    def _set_function(self, call: Call) -> None:
        word = call.one().strip("\"'").upper()
        match = next((f for f, pattern in (("VOLT", r"VOLT(AGE)?(:DC)?"), ("CURR", r"CURR(ENT)?(:DC)?"),
                                           ("RES", r"RES(ISTANCE)?")) if re.fullmatch(pattern, word)), None)
        if match is None:
            raise ScpiError(-224, word[:20])
        self.function = match

    def _read(self, call: Call) -> str:
        call.only(0)
        if self.trigger_source != "IMM":
            raise ScpiError(-221, "READ? needs TRIG:SOUR IMM")
        return nr3(self.reading())

    def _initiate(self, call: Call) -> None:
        call.only(0)
        self.memory = []
        if self.trigger_source == "IMM":
            self.memory = [self.reading()]
        else:
            self.armed = True

    def _trigger(self, call: Call) -> None:
        if self.armed and self.trigger_source == "BUS":
            self.memory, self.armed = [self.reading()], False

    def _fetch(self, call: Call) -> str:
        call.only(0)
        if not self.memory:
            raise ScpiError(-230, "no reading; INIT first")
        return ",".join(nr3(value) for value in self.memory)

    def _trigger_source(self, call: Call) -> None:
        word = call.one().upper()
        names = {"IMM": "IMM", "IMMEDIATE": "IMM", "BUS": "BUS", "EXT": "EXT", "EXTERNAL": "EXT"}
        if word not in names:
            raise ScpiError(-224, word[:20])
        self.trigger_source = names[word]
