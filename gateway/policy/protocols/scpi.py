"""SCPI instruments: a line read the way the instrument reads it (simulators/scpi/engine.py is the reference).

Headers are matched against the instrument's command tree, written as programming manuals print it
(`[SOURce#:]VOLTage[:LEVel]`: upper case the short form, `[]` optional nodes, `#` a numeric suffix), in either
form and any case. `;` separates program units; each is relative to the previous unit's node (the SCPI path rule)
unless it starts with `:`, and an instrument also accepts it from the root. Parameters are read as the instrument
reads them: units with SI prefixes (`13000mV`), MIN/MAX/DEF, booleans as ON/OFF or any number (`OUTP 2` is on),
a leading `CH2` naming the channel; otherwise the channel is the numeric suffix or the one `INST:NSEL` /
`INST CHn` selected, earlier in the line or in an earlier call.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.devices.docs import DeviceDoc
from gateway.devices.model import Device
from gateway.policy.actions import Action, Value, unknown
from gateway.policy.calls import Operation
from gateway.policy.protocols.reading import Reader, Reading

UNIT_SCALE = {"": 1.0, "M": 1e-3, "U": 1e-6, "K": 1e3, "MA": 1e6}  # SCPI: M is milli, MA mega
NUMBER = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+)(?:E[+-]?\d+)?)\s*([A-Z]*)")
HEADER = re.compile(r":?\*?[A-Z0-9:]+\??")
LEADING_CHANNEL = re.compile(r"(?i)(CH|OUTP?U?T?)\d")
CHANNEL_WORD = re.compile(r"(?:CH|OUT|OUTP|OUTPUT)?(\d)")


class Unreadable(ValueError):
    """A parameter the instrument would refuse, or that this reader cannot be sure of."""


@dataclass
class Unit:
    """One program unit being read: its numeric suffix, its parameters, and the channel selected so far (None:
    not known), which a selecting command changes."""

    suffix: int | None
    parameters: list[str]
    selected: int | None

    def one(self) -> str:
        if len(self.parameters) != 1:
            raise Unreadable("expected one parameter")
        return self.parameters[0]

    def channel(self) -> tuple[int | None, bool]:
        """(channel, selected): named by the suffix, else the selected one."""
        if self.suffix is not None:
            return self.suffix, False
        return self.selected, True

    def leading_channel(self) -> tuple[tuple[int | None, bool], list[str]]:
        """`OUTP CH2,ON`, `APPL CH1,5,1`: a first parameter naming the channel."""
        if self.parameters and LEADING_CHANNEL.fullmatch(self.parameters[0]):
            return (channel_named(self.parameters[0]), False), self.parameters[1:]
        return self.channel(), self.parameters


Handler = Callable[[Unit], list[Action]]


def channel_named(word: str) -> int:
    """The channel a parameter names (`CH2`, `OUTPUT2`, `2`)."""
    found = CHANNEL_WORD.fullmatch(word.strip().upper())
    if not found:
        raise Unreadable(f"channel {word!r}")
    return int(found[1])


def numeric(argument: str, unit: str) -> Value:
    """An NRf number with an optional unit (`250mV`), in base units; MIN is 0, MAX and DEF are the instrument's own
    (unknown here, so every limit holds for them)."""
    word = argument.strip().upper()
    if word in ("MIN", "MINIMUM"):
        return 0.0
    if word in ("MAX", "MAXIMUM", "DEF", "DEFAULT"):
        return word
    found = NUMBER.fullmatch(word)
    if not found:
        raise Unreadable(argument)
    value, suffix = float(found[1]), found[2]
    if suffix:
        prefix = suffix[: -len(unit)] if unit and suffix.endswith(unit) else None
        if prefix not in UNIT_SCALE:
            raise Unreadable(f"unit {suffix!r}")
        value *= UNIT_SCALE[prefix]
    return value


def boolean(argument: str) -> bool:
    """ON/OFF, 1/0, or any number: not zero once rounded is on."""
    word = argument.strip().upper()
    if word in ("ON", "1"):
        return True
    if word in ("OFF", "0"):
        return False
    try:
        return round(float(word)) != 0
    except (ValueError, OverflowError):
        raise Unreadable(argument) from None


def _on_channel(name: str, channel: tuple[int | None, bool], value: Value = None) -> Action:
    return Action(name, value, channel[0], selected=channel[1])


def level(name: str, unit: str) -> Handler:
    return lambda call: [_on_channel(name, call.channel(), numeric(call.one(), unit))]


def protection_state(kind: str) -> Handler:
    return lambda call: [_on_channel("protection_on" if boolean(call.one()) else "protection_off", call.channel(),
                                     kind)]


def configure(what: str) -> Handler:
    return lambda call: [Action("configure", what)]


def output(call: Unit) -> list[Action]:
    channel, values = call.leading_channel()
    if len(values) != 1:
        raise Unreadable("expected ON or OFF")
    return [_on_channel("output_on" if boolean(values[0]) else "output_off", channel)]


def apply(call: Unit) -> list[Action]:
    channel, values = call.leading_channel()
    if not 1 <= len(values) <= 2:
        raise Unreadable("expected volts and amps")
    actions = [_on_channel("set_voltage", channel, numeric(values[0], "V"))]
    if len(values) == 2:
        actions.append(_on_channel("set_current", channel, numeric(values[1], "A")))
    return actions


def select(call: Unit) -> list[Action]:
    call.selected = channel_named(call.one())
    return [Action("select_channel", float(call.selected))]


def select_number(call: Unit) -> list[Action]:
    value = numeric(call.one(), "")
    call.selected = 1 if value in ("DEF", "DEFAULT") else round(value) if isinstance(value, float) else None
    return [Action("select_channel", None if call.selected is None else float(call.selected))]


def reset(call: Unit) -> list[Action]:
    call.selected = 1
    return [Action("configure", "*RST")]


def read(call: Unit) -> list[Action]:
    return [Action("read")]


def compile_header(pattern: str) -> re.Pattern[str]:
    """`[SOURce#:]VOLTage[:LEVel]` -> a regex accepting each mnemonic's short or long form (headers arrive upper
    case), with a group for each numeric suffix."""
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


def _table(commands: dict[str, Handler]) -> list[tuple[re.Pattern[str], Handler]]:
    return [(compile_header(pattern), handler) for pattern, handler in commands.items()]


# IEEE 488.2 common commands and the SCPI system subsystem, which every instrument has.
COMMON: dict[str, Handler] = {
    "*IDN?": read, "*RST": reset, "*CLS": configure("*CLS"), "*OPC": configure("*OPC"), "*OPC?": read,
    "*WAI": configure("*WAI"), "*TST?": read, "*ESR?": read, "*ESE": configure("*ESE"), "*ESE?": read,
    "*SRE": configure("*SRE"), "*SRE?": read, "*STB?": read,
    "SYSTem:ERRor[:NEXT]?": read, "SYSTem:ERRor:COUNt?": read, "SYSTem:VERSion?": read,
    "SYSTem:REMote": configure("remote"), "SYSTem:LOCal": configure("local"), "SYSTem:RWLock": configure("remote"),
}
LEVEL = "[SOURce#:]{}[:LEVel][:IMMediate][:AMPLitude]"
PSU: dict[str, Handler] = COMMON | {
    "INSTrument[:SELect]": select, "INSTrument[:SELect]?": read,
    "INSTrument:NSELect": select_number, "INSTrument:NSELect?": read,
    "APPLy": apply, "APPLy?": read,
    LEVEL.format("VOLTage"): level("set_voltage", "V"), LEVEL.format("VOLTage") + "?": read,
    LEVEL.format("CURRent"): level("set_current", "A"), LEVEL.format("CURRent") + "?": read,
    "[SOURce#:]VOLTage:PROTection[:LEVel]": level("set_ovp", "V"), "[SOURce#:]VOLTage:PROTection[:LEVel]?": read,
    "[SOURce#:]CURRent:PROTection[:LEVel]": level("set_ocp", "A"), "[SOURce#:]CURRent:PROTection[:LEVel]?": read,
    "[SOURce#:]VOLTage:PROTection:STATe": protection_state("ovp"),
    "[SOURce#:]CURRent:PROTection:STATe": protection_state("ocp"),
    "[SOURce#:]VOLTage:PROTection:STATe?": read, "[SOURce#:]CURRent:PROTection:STATe?": read,
    "[SOURce#:]VOLTage:PROTection:TRIPped?": read, "[SOURce#:]CURRent:PROTection:TRIPped?": read,
    "[SOURce#:]VOLTage:PROTection:CLEar": configure("clear protection"),
    "[SOURce#:]CURRent:PROTection:CLEar": configure("clear protection"),
    "OUTPut#[:STATe]": output, "OUTPut#[:STATe]?": read,
    "OUTPut#:PROTection:CLEar": configure("clear protection"), "OUTPut#:MODE?": read,
    "MEASure#[:SCALar]:VOLTage[:DC]?": read, "MEASure#[:SCALar]:CURRent[:DC]?": read,
    "MEASure#[:SCALar]:POWer[:DC]?": read,
}
DMM: dict[str, Handler] = COMMON | {
    "*TRG": configure("*TRG"), "CONFigure?": read, "[SENSe:]FUNCtion[:ON]": configure("function"),
    "[SENSe:]FUNCtion[:ON]?": read, "READ?": read, "INITiate[:IMMediate]": configure("initiate"), "FETCh?": read,
    "TRIGger:SOURce": configure("trigger source"), "TRIGger:SOURce?": read,
} | {pattern.format(word): handler
     for word in ("VOLTage[:DC]", "CURRent[:DC]", "RESistance")
     for pattern, handler in (("MEASure:{}?", read), ("CONFigure:{}", configure("function")),
                              ("[SENSe:]{}:NPLCycles", configure("integration time")),
                              ("[SENSe:]{}:NPLCycles?", read), ("[SENSe:]{}:RANGe", configure("range")),
                              ("[SENSe:]{}:RANGe?", read))}
TABLES = {"scpi_psu": _table(PSU), "scpi_dmm": _table(DMM)}


def split_units(text: str) -> list[str]:
    """A message split on `;` outside quoted strings."""
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
        raise Unreadable("an empty parameter")
    return parameters


Table = list[tuple[re.Pattern[str], Handler]]


def _lookup(table: Table, header: str) -> tuple[Handler, int | None] | None:
    for regex, handler in table:
        found = regex.fullmatch(header)
        if found:
            return handler, next((int(s) for s in found.groups() if s), None)
    return None


def _run(found: tuple[Handler, int | None], unit: Unit) -> list[Action]:
    handler, unit.suffix = found
    return handler(unit)


def read_line(line: str, table: Table, selected: int | None) -> tuple[list[Action], int | None]:
    """The actions of one line, and the channel selected after it."""
    actions: list[Action] = []
    path: str | None = ""  # None: lost, after a unit this reader could not follow
    for text in split_units(line):
        text = text.strip()
        if not text:
            continue
        parts = re.fullmatch(r"(\S+)(?:\s+(.*))?", text, re.DOTALL)
        header = parts[1].upper() if parts else ""
        unit = Unit(None, [], selected)
        try:
            if parts is None or not HEADER.fullmatch(header) or "::" in header or header.endswith(":"):
                raise Unreadable(header)
            unit.parameters = split_parameters(parts[2] or "")
            if header.startswith("*"):
                found = _lookup(table, header)
                if found is None and not header.endswith("?"):
                    raise Unreadable(header)
                actions += _run(found, unit) if found else [Action("read")]
                selected = unit.selected
                continue
            if header.startswith(":"):
                candidates = [header[1:]]
            elif path is None:
                raise Unreadable(f"{header} after a command this reader could not follow")
            else:  # relative to the previous node; instruments also accept it from the root
                candidates = [path + header, header] if path else [header]
            matched = [(candidate, found) for candidate in candidates
                       if (found := _lookup(table, candidate)) is not None]
            if not matched:  # the instrument may know it and move its path: later relative units are lost
                path = None
                if header.endswith("?"):  # a query changes nothing, known or not
                    actions.append(Action("read"))
                    continue
                raise Unreadable(header)
            candidate, found = matched[0]
            unit_actions = _run(found, unit)
            if len(matched) > 1 and matched[1][1][0] is not found[0]:
                # An instrument without the relative command would run the root one: count both.
                root = Unit(None, unit.parameters, selected)
                unit_actions += [action for action in _run(matched[1][1], root) if action not in unit_actions]
            actions += unit_actions
            selected = unit.selected
            path = candidate[: candidate.rfind(":") + 1]
        except Unreadable:
            actions.append(unknown(text))
    return actions, selected


def reader(table_name: str) -> Reader:
    table = TABLES[table_name]

    def read_call(call: Operation, device: Device, doc: DeviceDoc | None, memory: dict[str, Any]) -> Reading:
        line = call.command or ""
        actions, selected = read_line(line, table, memory.get("selected"))
        return Reading(actions, {"selected": selected}, commands=sum(1 for unit in split_units(line) if unit.strip()))

    return read_call
