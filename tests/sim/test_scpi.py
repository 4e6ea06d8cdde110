"""SCPI instruments driven by pyvisa + pyvisa-py (serial pty and TCP 5025) and by raw pyserial."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pyvisa
import serial

import simulators.scpi.transport
from simulators.base import SimContext
from simulators.korad import KoradPowerSupply
from simulators.scpi import ScpiMultimeter, ScpiPowerSupply


@dataclass
class Lab:
    psu: ScpiPowerSupply
    dmm: ScpiMultimeter


@pytest.fixture
async def scpi_lab() -> AsyncIterator[Lab]:
    context = SimContext()
    psu = ScpiPowerSupply("bench_psu", load_ohms=10.0)
    await psu.start(context)
    dmm = ScpiMultimeter("bench_dmm", source=psu.channels[0])
    await dmm.start(context)
    yield Lab(psu, dmm)
    await dmm.stop()
    await psu.stop()


def visa_session(resource: str, script: Callable[[Any], Any]) -> Any:
    """Open `resource` with pyvisa-py and run `script(instrument)` (blocking: call it in a thread)."""
    manager = pyvisa.ResourceManager("@py")
    try:
        instrument = manager.open_resource(resource, read_termination="\n", write_termination="\n", timeout=3000)
        try:
            return script(instrument)
        finally:
            instrument.close()
    finally:
        manager.close()


class Line:
    """Raw pyserial on the pty, one LF-terminated line at a time."""

    def __init__(self, path: str) -> None:
        self.port = serial.Serial(path, baudrate=115200, timeout=2)

    def query(self, text: str) -> str:
        self.port.write(text.encode() + b"\n")
        return self.port.readline().decode().rstrip("\n")

    def write(self, text: str) -> None:
        self.port.write(text.encode() + b"\n")

    def close(self) -> None:
        self.port.close()


async def raw(path: str, script: Callable[[Line], Any]) -> Any:
    def run() -> Any:
        line = Line(path)
        try:
            return script(line)
        finally:
            line.close()
    return await asyncio.to_thread(run)


async def test_pyvisa_over_the_pty_sets_measures_and_reads_errors(scpi_lab):
    psu = scpi_lab.psu

    def script(inst: Any) -> dict[str, Any]:
        inst.write("*CLS")
        result = {"idn": inst.query("*IDN?")}
        inst.write("VOLT 5")
        inst.write("OUTP ON")
        result["volts"] = float(inst.query("MEAS:VOLT?"))
        result["amps"] = float(inst.query("MEASure:CURRent:DC?"))
        inst.write("FROB 3")
        result["esr_after_bad_header"] = int(inst.query("*ESR?"))
        result["undefined"] = inst.query("SYST:ERR?")
        inst.write("VOLT 31")
        result["esr_after_range"] = int(inst.query("*ESR?"))
        result["range"] = inst.query("SYSTem:ERRor:NEXT?")
        result["empty"] = inst.query("SYST:ERR?")
        return result

    result = await asyncio.to_thread(visa_session, f"ASRL{psu.port}::INSTR", script)

    assert result["idn"].startswith("PYUSE,SIM-PSU2,")
    assert result["volts"] == 5.0 and result["amps"] == 0.5
    assert psu.state()["ch1"]["voltage"] == 5.0 and psu.output is True and psu.volts_set == 5.0
    assert result["undefined"].startswith('-113,"Undefined header')
    assert result["esr_after_bad_header"] == 32  # command error
    assert result["range"].startswith('-222,"Data out of range')
    assert result["esr_after_range"] == 16  # execution error
    assert result["empty"] == '+0,"No error"'
    assert psu.volts_set == 5.0  # the rejected value changed nothing


async def test_pyvisa_over_tcp_drives_the_second_channel_into_constant_current(scpi_lab):
    psu = scpi_lab.psu

    def script(inst: Any) -> dict[str, Any]:
        inst.write("INST:NSEL 2")
        inst.write("APPL 12,0.5")
        inst.write("OUTP ON")
        return {"selected": inst.query("INST?"), "volts": float(inst.query("MEAS:VOLT?")),
                "amps": float(inst.query("MEAS:CURR?")), "watts": float(inst.query("MEAS:POW?")),
                "mode": inst.query("OUTP:MODE?"), "apply": inst.query("APPL?"),
                "ch1": inst.query("OUTP1?")}

    result = await asyncio.to_thread(visa_session, f"TCPIP0::{psu.host}::5025::SOCKET", script)

    assert psu.host.startswith("127.") and psu.tcp_port == 5025
    assert result["selected"] == "CH2" and result["ch1"] == "0"
    assert (result["volts"], result["amps"], result["watts"]) == (5.0, 0.5, 2.5)  # 10 Ω load, 0.5 A limit
    assert result["mode"] == "CC" and result["apply"] == '"+1.20000000E+01,+5.00000000E-01"'
    ch2 = psu.state()["ch2"]
    assert (ch2["voltage"], ch2["current"], ch2["mode"], ch2["output"]) == (5.0, 0.5, "CC", True)
    assert psu.state()["ch1"]["output"] is False


async def test_scpi_syntax_short_long_optional_nodes_compound_and_parameters(scpi_lab):
    psu = scpi_lab.psu

    def script(line: Line) -> dict[str, str]:
        line.write("*CLS")
        return {
            "compound": line.query("SOURce1:VOLTage:LEVel:IMMediate:AMPLitude 3.3;CURR 0.25;:SOUR1:VOLT?;CURR?"),
            "lower": line.query("sour2:volt:lev 2500mv;:source2:voltage?"),
            "max": line.query("VOLT MAX;VOLT?;VOLT? MIN"),
            "default": line.query("CURR DEF;CURR?"),
            "suffix": line.query("VOLT 5 A;SYST:ERR?"),
            "type": line.query("VOLT five;SYST:ERR?"),
            "missing": line.query("VOLT;SYST:ERR?"),
            "extra": line.query("OUTP ON,OFF;SYST:ERR?"),
            "syntax": line.query("VOLT#5;SYST:ERR?"),
            "channel": line.query("SOUR3:VOLT 1;SYST:ERR?"),
            "stb": line.query("*SRE 32;*ESE 60;*SRE?;*ESE?;*STB?"),
            "opc": line.query("*OPC;*ESR?;*OPC?"),
            "version": line.query("SYST:VERS?;*TST?"),
            "rst": line.query("*RST;VOLT?;OUTP?;*WAI"),
        }

    result = await raw(psu.port, script)

    assert result["compound"] == "+3.30000000E+00;+2.50000000E-01"
    assert result["lower"] == "+2.50000000E+00"
    assert result["max"] == "+3.00000000E+01;+0.00000000E+00"
    assert result["default"] == "+1.00000000E+00"
    assert result["suffix"].startswith("-131,") and result["type"].startswith("-104,")
    assert result["missing"].startswith("-109,") and result["extra"].startswith("-108,")
    assert result["syntax"].startswith("-102,") and result["channel"].startswith("-114,")
    assert result["stb"] == "32;60;96"  # ESB (command errors are enabled in ESE) + RQS; the queue is empty
    assert result["opc"] == "33;1"  # command errors (32) from above plus operation complete (1)
    assert result["version"] == "1999.0;0"
    assert result["rst"] == "+0.00000000E+00;0" and psu.volts_set == 0.0


async def test_opc_sets_the_esr_operation_complete_bit(scpi_lab):
    result = await raw(scpi_lab.psu.port, lambda line: line.query("*CLS;*OPC;*ESR?;*ESR?"))
    assert result == "1;0"  # reading the ESR clears it


async def test_over_voltage_and_over_current_protection_trip_and_clear(scpi_lab):
    psu = scpi_lab.psu

    def script(line: Line) -> dict[str, str]:
        line.write("*CLS;VOLT 5;CURR 1;VOLT:PROT 6;OUTP ON")
        result = {"before": line.query("OUTP?;VOLT:PROT?")}
        line.write("VOLT 7")
        result["ovp"] = line.query("OUTP?;VOLT:PROT:TRIP?;MEAS:VOLT?")
        result["blocked"] = line.query("OUTP ON;SYST:ERR?")
        result["cleared"] = line.query("VOLT 5;VOLT:PROT:CLE;OUTP ON;OUTP?;VOLT:PROT:TRIP?")
        line.write("CURR:PROT 0.4;CURR:PROT:STAT ON")
        result["ocp"] = line.query("OUTP?;CURR:PROT:TRIP?;VOLT:PROT:TRIP?")
        result["reset"] = line.query("OUTP:PROT:CLE;CURR:PROT:STAT OFF;OUTP ON;MEAS:CURR?")
        return result

    result = await raw(psu.port, script)

    assert result["before"] == "1;+6.00000000E+00"
    assert result["ovp"] == "0;1;+0.00000000E+00"
    assert result["blocked"].startswith('-221,"Settings conflict')
    assert result["cleared"] == "1;0"
    assert result["ocp"] == "0;1;0"  # 5 V across 10 Ω is 0.5 A, over the 0.4 A OCP level
    assert result["reset"] == "+5.00000000E-01"
    psu.apply({"load_ohms": 1.0})  # a short-ish load: 1 A limit → CC at 1 V
    state = psu.state()["ch1"]
    assert (state["voltage"], state["current"], state["mode"]) == (1.0, 1.0, "CC")
    with pytest.raises(ValueError, match="load_ohms: expected float"):
        psu.apply({"load_ohms": "low"})


async def test_output_off_means_zero_volts(scpi_lab):
    result = await raw(scpi_lab.psu.port, lambda line: line.query("APPL 9,1;OUTP OFF;MEAS:VOLT?;MEAS:CURR?"))
    assert result == "+0.00000000E+00;+0.00000000E+00"
    assert scpi_lab.psu.measure() == (0.0, 0.0)


async def test_dmm_wired_to_the_supply_measures_it(scpi_lab):
    psu, dmm = scpi_lab.psu, scpi_lab.dmm
    assert await raw(psu.port, lambda line: line.query("APPL 4.2,1;OUTP ON;*OPC?")) == "1"

    def script(inst: Any) -> dict[str, Any]:
        result = {"idn": inst.query("*IDN?"), "volts": float(inst.query("MEAS:VOLT:DC?")),
                  "ohms": float(inst.query("MEAS:RES?"))}
        inst.write("CONF:CURR:DC")
        result["conf"] = inst.query("CONF?")
        result["amps"] = float(inst.query("READ?"))
        result["stale"] = inst.query("FETC?;SYST:ERR?")
        inst.write("INIT")
        result["fetched"] = float(inst.query("FETC?"))
        inst.write("TRIG:SOUR BUS;:CONF:VOLT:DC 10;:INIT")
        result["waiting"] = inst.query("FETC?;SYST:ERR?")
        inst.write("*TRG")
        result["triggered"] = float(inst.query("FETC?"))
        result["overload"] = inst.query("TRIG:SOUR IMM;:MEAS:VOLT? 0.1")
        return result

    result = await asyncio.to_thread(visa_session, f"TCPIP0::{dmm.host}::5025::SOCKET", script)

    assert result["idn"].startswith("PYUSE,SIM-DMM,") and dmm.host != psu.host
    assert result["volts"] == 4.2 and result["ohms"] == 10.0
    assert result["conf"].startswith('"CURR ') and result["amps"] == 0.42 and result["fetched"] == 0.42
    assert result["stale"].startswith('-230,"Data corrupt or stale')
    assert result["waiting"].startswith("-230,") and result["triggered"] == 4.2
    assert result["overload"] == "+9.90000000E+37"
    assert dmm.state()["function"] == "VOLT"


async def test_unwired_dmm_reads_what_the_admin_api_sets():
    dmm = ScpiMultimeter("loose_dmm")
    await dmm.start(SimContext())
    try:
        dmm.apply({"input_volts": 1.5})
        assert await raw(dmm.port, lambda line: line.query("MEAS:VOLT?")) == "+1.50000000E+00"
    finally:
        await dmm.stop()


async def test_faults_offline_garbage_and_slow(scpi_lab, monkeypatch):
    psu = scpi_lab.psu
    psu.apply({"fault": "offline"})

    def silent(line: Line) -> bytes:
        line.port.timeout = 0.3
        line.write("*IDN?")
        return line.port.readline()

    assert await raw(psu.port, silent) == b""
    psu.apply({"fault": "garbage"})
    garbled = await raw(psu.port, lambda line: line.write("*IDN?") or line.port.readline())
    assert garbled.endswith(b"\xff#\n") and len(garbled) < len(psu.engine.identity)
    monkeypatch.setattr(simulators.scpi.transport, "SLOW_REPLY_S", 0.4)
    psu.apply({"fault": "slow"})

    def timed(line: Line) -> tuple[str, float]:
        started = time.monotonic()
        return line.query("*IDN?"), time.monotonic() - started

    reply, took = await raw(psu.port, timed)
    assert reply.startswith("PYUSE,SIM-PSU2,") and took >= 0.4
    psu.apply({"fault": "none"})
    assert (await raw(psu.port, lambda line: line.query("*IDN?"))).startswith("PYUSE")


@pytest.fixture
async def scpi_korad() -> AsyncIterator[KoradPowerSupply]:
    supply = KoradPowerSupply("korad", load_ohms=8.0)
    await supply.start(SimContext())
    yield supply
    await supply.stop()


def korad_ask(port: serial.Serial, command: bytes, size: int) -> bytes:
    port.write(command)
    return port.read(size)


async def test_korad_dialect_without_terminators(scpi_korad):
    def script() -> dict[str, Any]:
        port = serial.Serial(scpi_korad.port, baudrate=9600, timeout=1)
        try:
            result = {"idn": korad_ask(port, b"*IDN?", 16)}
            port.write(b"VSET1:12.34")
            time.sleep(0.1)
            port.write(b"ISET1:0.5OUT1")  # back to back, no separator
            time.sleep(0.1)
            result["vset"] = korad_ask(port, b"VSET1?", 5)
            result["iset"] = korad_ask(port, b"ISET1?", 5)
            result["vout"] = korad_ask(port, b"VOUT1?", 5)
            result["iout"] = korad_ask(port, b"IOUT1?", 5)
            result["status"] = korad_ask(port, b"STATUS?", 1)
            result["off"] = korad_ask(port, b"OUT0STATUS?", 1)
            result["nothing"] = korad_ask(port, b"GARBAGE", 1)
            return result
        finally:
            port.close()

    result = await asyncio.to_thread(script)

    assert result["idn"] == b"KORADKA3005PV2.0"
    assert result["vset"] == b"12.34" and result["iset"] == b"0.500"
    assert result["vout"] == b"04.00" and result["iout"] == b"0.500"  # 8 Ω at a 0.5 A limit: CC at 4 V
    assert result["status"][0] & 0x40 and not result["status"][0] & 0x01
    assert not result["off"][0] & 0x40 and result["nothing"] == b""
    assert scpi_korad.state()["output"] is False and scpi_korad.state()["voltage_set"] == 12.34


async def test_korad_ocp_trips_in_constant_current(scpi_korad):
    def script() -> bytes:
        port = serial.Serial(scpi_korad.port, timeout=1)
        try:
            port.write(b"VSET1:05.00ISET1:1.000OUT1")
            time.sleep(0.1)
            port.write(b"OCP1")
            time.sleep(0.1)
            return korad_ask(port, b"STATUS?", 1)
        finally:
            port.close()

    scpi_korad.apply({"load_ohms": 2.0})  # 5 V into 2 Ω wants 2.5 A; the 1 A limit holds it in CC
    status = await asyncio.to_thread(script)
    assert not status[0] & 0x40 and scpi_korad.state()["tripped"] == "ocp"
