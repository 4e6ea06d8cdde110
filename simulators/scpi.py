"""A SCPI bench power supply on a pseudo-terminal (v0: one channel, resistive load, the common commands)."""

from __future__ import annotations

import asyncio
import os
import re
import tty
from typing import Any

from simulators.base import Simulator


class ScpiPowerSupply(Simulator):
    kind = "scpi_psu"

    def __init__(self, device_id: str = "psu", load_ohms: float = 10.0, max_volts: float = 30.0,
                 max_amps: float = 3.0, name: str = "", area: str = "") -> None:
        super().__init__(device_id, name, area)
        self.load_ohms = load_ohms
        self.max_volts, self.max_amps = max_volts, max_amps
        self.volts_set, self.amps_set, self.output = 0.0, 1.0, False
        self.errors: list[str] = []
        self._master = self._slave = -1
        self.port = ""
        self._buffer = b""

    def state(self) -> dict[str, Any]:
        volts, amps = self.measure()
        return {"voltage_set": self.volts_set, "current_set": self.amps_set, "output": self.output,
                "voltage": volts, "current": amps}

    def address(self) -> str:
        return self.port

    def measure(self) -> tuple[float, float]:
        """Constant voltage until the load would draw more than the current limit, then constant current."""
        if not self.output:
            return 0.0, 0.0
        volts = min(self.volts_set, self.amps_set * self.load_ohms)
        return round(volts, 4), round(volts / self.load_ohms, 4)

    async def serve(self) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        os.set_blocking(self._master, False)
        asyncio.get_running_loop().add_reader(self._master, self._readable)

    async def stop(self) -> None:
        if self._master >= 0:
            asyncio.get_running_loop().remove_reader(self._master)
            os.close(self._master)
            os.close(self._slave)
            self._master = self._slave = -1

    def _readable(self) -> None:
        try:
            self._buffer += os.read(self._master, 4096)
        except (BlockingIOError, OSError):
            return
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            reply = self.handle_line(line.decode("ascii", "replace").strip())
            if reply is not None:
                os.write(self._master, reply.encode() + b"\n")

    def handle_line(self, line: str) -> str | None:
        replies = [reply for reply in (self.handle(part.strip()) for part in line.split(";") if part.strip())
                   if reply is not None]
        return ";".join(replies) if replies else None

    def handle(self, command: str) -> str | None:
        header, _, argument = command.partition(" ")
        header = header.upper().lstrip(":")
        argument = argument.strip()
        if header == "*IDN?":
            return "PYUSE,SIM-PSU1,000001,0.1"
        if header in ("*RST",):
            self.volts_set, self.amps_set, self.output = 0.0, 1.0, False
            return None
        if header in ("SYST:ERR?", "SYSTEM:ERROR?", "SYST:ERR:NEXT?"):
            return self.errors.pop(0) if self.errors else '0,"No error"'
        if re.fullmatch(r"(SOUR(CE)?:)?VOLT(AGE)?(:LEV(EL)?)?", header):
            self.volts_set = self._number(argument, self.max_volts, self.volts_set)
            return None
        if re.fullmatch(r"(SOUR(CE)?:)?VOLT(AGE)?(:LEV(EL)?)?\?", header):
            return f"{self.volts_set:.3f}"
        if re.fullmatch(r"(SOUR(CE)?:)?CURR(ENT)?(:LEV(EL)?)?", header):
            self.amps_set = self._number(argument, self.max_amps, self.amps_set)
            return None
        if re.fullmatch(r"(SOUR(CE)?:)?CURR(ENT)?(:LEV(EL)?)?\?", header):
            return f"{self.amps_set:.3f}"
        if re.fullmatch(r"OUTP(UT)?(:STAT(E)?)?", header):
            if argument.upper() in ("ON", "1"):
                self.output = True
            elif argument.upper() in ("OFF", "0"):
                self.output = False
            else:
                self.errors.append('-224,"Illegal parameter value"')
            return None
        if re.fullmatch(r"OUTP(UT)?(:STAT(E)?)?\?", header):
            return "1" if self.output else "0"
        if re.fullmatch(r"MEAS(URE)?(:SCAL(AR)?)?:VOLT(AGE)?(:DC)?\?", header):
            return f"{self.measure()[0]:.4f}"
        if re.fullmatch(r"MEAS(URE)?(:SCAL(AR)?)?:CURR(ENT)?(:DC)?\?", header):
            return f"{self.measure()[1]:.4f}"
        self.errors.append('-113,"Undefined header"')
        return None

    def _number(self, argument: str, maximum: float, current: float) -> float:
        try:
            value = float(argument)
        except ValueError:
            self.errors.append('-104,"Data type error"')
            return current
        if not 0 <= value <= maximum:
            self.errors.append('-222,"Data out of range"')
            return current
        return value
