"""The SCPI instruments: a bench power supply (two channels by default) and a multimeter wired to one of its outputs.

One module for both: the meter measures a PsuChannel, and each instrument is mostly its table of commands.
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass
from functools import partial
from typing import Any

from simulators.scpi.engine import Call, ScpiEngine, ScpiError, boolean, nr3, numeric
from simulators.scpi.lxi import LxiAnnouncer
from simulators.scpi.transport import SCPI_PORT, LineInstrument

OVERLOAD = 9.9e37  # what a meter reads when the input is beyond its range


class ScpiInstrument(LineInstrument):
    """A LineInstrument whose lines go to a ScpiEngine."""

    identity = "PYUSE,SIM,0,1.0"

    def __init__(self, device_id: str, name: str = "", area: str = "", host: str = "", port: int = SCPI_PORT) -> None:
        super().__init__(device_id, name, area, host, port)
        self.engine = ScpiEngine(self.identity, reset=self.reset)
        self._lxi: LxiAnnouncer | None = None

    async def serve(self) -> None:
        await super().serve()
        if self.context.zeroconf is not None:  # found on the LAN as LXI instruments are
            self._lxi = LxiAnnouncer(self.context.zeroconf, self.id, self.name, self.identity, self.host,
                                     self.tcp_port, self.context.mdns_suffix)
            await self._lxi.announce()

    async def stop(self) -> None:
        if self._lxi is not None:
            await self._lxi.withdraw()
            self._lxi = None
        await super().stop()

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
        keys: dict[str, type] = {"load_ohms": float}
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
        for quantity, kind in (("VOLTage", "ovp"), ("CURRent", "ocp")):
            protection = f"[SOURce#:]{quantity}:PROTection"
            add(protection + "[:LEVel]", partial(self._set_protection, kind=kind))
            add(protection + "[:LEVel]?", partial(self._protection_level, kind=kind))
            add(protection + ":STATe", partial(self._set_protection_state, kind=kind))
            add(protection + ":STATe?", partial(self._protection_enabled, kind=kind))
            add(protection + ":TRIPped?", partial(self._protection_tripped, kind=kind))
            add(protection + ":CLEar", partial(self._clear_trip, kind=kind))
        add("OUTPut#[:STATe]", self._set_output)
        add("OUTPut#[:STATe]?", lambda call: str(int(self._leading_channel(call)[0].output)))
        add("OUTPut#:PROTection:CLEar", lambda call: self._clear_trip(call, None))
        add("OUTPut#:MODE?", lambda call: self._leading_channel(call)[0].mode)
        for quantity, index in (("VOLTage", 0), ("CURRent", 1), ("POWer", 2)):
            add(f"MEASure#[:SCALar]:{quantity}[:DC]?", partial(self._measure, index=index))

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

    def _protection_level(self, call: Call, kind: str) -> str:
        return nr3(getattr(self._channel(call), f"{kind}_level"))

    def _protection_enabled(self, call: Call, kind: str) -> str:
        return str(int(getattr(self._channel(call), f"{kind}_enabled")))

    def _protection_tripped(self, call: Call, kind: str) -> str:
        return str(int(self._channel(call).tripped == kind))

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
            add(f"MEASure:{word}?", partial(self._measure, function=function))
            add(f"CONFigure:{word}", partial(self._configure, function=function))
            add(f"[SENSe:]{word}:NPLCycles", self._set_nplc)
            add(f"[SENSe:]{word}:NPLCycles?", lambda call: nr3(self.nplc))
            add(f"[SENSe:]{word}:RANGe", partial(self._set_range, function=function))
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
