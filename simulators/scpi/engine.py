"""The IEEE-488.2/SCPI engine: header matching, program units, the error queue and the status registers.

Headers are matched against command patterns written the way programming manuals print them
(`[SOURce#:]VOLTage[:LEVel][:IMMediate][:AMPLitude]`: upper case is the short form, `[]` optional nodes, `#` a
numeric suffix); a message runs as `;`-separated program units with the SCPI path rule (a leading `:` returns
to the root), and the error queue and the status bytes (ESR/ESE, STB/SRE) behave as IEEE 488.2 describes them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

QUEUE_SIZE = 20

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
    units: list[str] = []
    current: list[str] = []
    quote = ""
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

