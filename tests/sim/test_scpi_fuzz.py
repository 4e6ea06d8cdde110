"""Hypothesis throws random lines and bytes at the SCPI engine over the pty and TCP, and at the Korad dialect:
nothing crashes, the settings stay within the instrument's limits, and it still answers *IDN? correctly."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import serial
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulators.base import SimContext
from simulators.korad import IDENTITY, IDLE_S, KoradPowerSupply
from simulators.scpi import QUEUE_SIZE, ScpiMultimeter, ScpiPowerSupply

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

words = st.sampled_from([
    "VOLT", "VOLTage", "volt", "CURR", "CURRent", "SOUR", "SOUR1", "SOURce2", "SOUR9", "LEV", "IMM", "AMPL", "PROT",
    "STAT", "TRIP?", "CLE", "OUTP", "OUTP2", "OUTPut", "MODE?", "MEAS", "MEAS2", "SCAL", "POW", "DC", "APPL", "APPL?",
    "INST", "NSEL", "SEL", "CONF", "CONF?", "RES", "READ?", "INIT", "FETC?", "TRIG", "SOUR", "BUS", "NPLC", "RANG",
    "FUNC", "*IDN?", "*RST", "*CLS", "*ESR?", "*ESE", "*SRE", "*STB?", "*OPC", "*OPC?", "*TRG", "*TST?", "*WAI",
    "SYST", "ERR?", "ERR", "NEXT?", "COUN?", "VERS?", "MIN", "MAX", "DEF", "ON", "OFF", "CH1", "CH2", "CH7", "AUTO",
    '"VOLT"', "'x'", "1e308", "-0", "NaN", "inf", "5mV", "2kA", "3.3", "-1", "255", "9" * 40])
separators = st.sampled_from([":", " ", ";", ",", "?", ";:", " ", "", "\t", '"'])
scpi_lines = (st.lists(st.tuples(words, separators), max_size=10).map(lambda parts: "".join(a + b for a, b in parts))
              | st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60))
raw_bytes = st.binary(max_size=200)


def error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


@dataclass
class Bench:
    psu: ScpiPowerSupply
    dmm: ScpiMultimeter
    korad: KoradPowerSupply


@pytest.fixture
async def scpi_bench() -> AsyncIterator[Bench]:
    context = SimContext()
    psu = ScpiPowerSupply("fuzz_psu")
    bench = Bench(psu, ScpiMultimeter("fuzz_dmm", source=psu.channels[1]), KoradPowerSupply("fuzz_korad"))
    for device in (bench.psu, bench.dmm, bench.korad):
        await device.start(context)
    yield bench
    for device in (bench.korad, bench.dmm, bench.psu):
        await device.stop()


def exchange_over_pty(path: str, junk: bytes, identity: str) -> bool:
    """Send junk, end its line, then *IDN?; True once the identity comes back (earlier replies are skipped)."""
    with serial.Serial(path, timeout=2) as port:
        port.write(junk + b"\n*IDN?\n")
        return _identity_arrives(port.readline, identity)


def exchange_over_tcp(host: str, port: int, junk: bytes, identity: str) -> bool:
    with socket.create_connection((host, port), timeout=2) as sock, sock.makefile("rb") as replies:
        sock.sendall(junk + b"\n*IDN?\n")
        return _identity_arrives(replies.readline, identity)


def _identity_arrives(readline, identity: str) -> bool:  # type: ignore[no-untyped-def]
    for _ in range(200):
        line = readline()
        if not line:
            return False
        if line.rstrip(b"\r\n").decode("ascii", "replace").endswith(identity):
            return True
    return False


def check_limits(bench: Bench) -> None:
    for channel in bench.psu.channels:
        assert 0 <= channel.volts_set <= channel.max_volts and 0 <= channel.amps_set <= channel.max_amps
        assert not (channel.tripped and channel.output)
    assert 1 <= bench.psu.selected <= len(bench.psu.channels)
    assert len(bench.psu.engine.errors) <= QUEUE_SIZE and len(bench.dmm.engine.errors) <= QUEUE_SIZE
    assert 0 <= bench.psu.engine.esr <= 255 and 0 <= bench.psu.engine.sre <= 255


@FUZZ
@given(line=scpi_lines, over_tcp=st.booleans(), to_dmm=st.booleans())
async def test_scpi_survives_random_lines(scpi_bench, caplog, line, over_tcp, to_dmm):
    target = scpi_bench.dmm if to_dmm else scpi_bench.psu
    junk = line.encode()
    if over_tcp:
        answered = await asyncio.to_thread(exchange_over_tcp, target.host, target.tcp_port, junk,
                                           target.engine.identity)
    else:
        answered = await asyncio.to_thread(exchange_over_pty, target.port, junk, target.engine.identity)
    assert answered
    check_limits(scpi_bench)
    assert error_records(caplog) == []


@FUZZ
@given(junk=raw_bytes, over_tcp=st.booleans())
async def test_scpi_survives_random_bytes(scpi_bench, caplog, junk, over_tcp):
    psu = scpi_bench.psu
    if over_tcp:
        answered = await asyncio.to_thread(exchange_over_tcp, psu.host, psu.tcp_port, junk, psu.engine.identity)
    else:
        answered = await asyncio.to_thread(exchange_over_pty, psu.port, junk, psu.engine.identity)
    assert answered
    check_limits(scpi_bench)
    assert error_records(caplog) == []


def korad_exchange(path: str, junk: bytes) -> bytes:
    with serial.Serial(path, timeout=1) as port:
        port.write(junk)
        time.sleep(IDLE_S * 3)  # the burst ends; whatever the junk asked for has been answered by now
        port.reset_input_buffer()
        port.write(b"*IDN?")
        return port.read(len(IDENTITY))


@settings(FUZZ, max_examples=30)
@given(junk=raw_bytes | scpi_lines.map(str.encode)
       | st.lists(st.sampled_from([b"VSET1:", b"ISET1:", b"12.345", b"OUT1", b"OUT0", b"OCP1", b"OVP1", b"STATUS?",
                                   b"VOUT1?", b"RCL3", b"SAV9", b"99.9", b"\n"]), max_size=8).map(b"".join))
async def test_korad_survives_random_bytes(scpi_bench, caplog, junk):
    korad = scpi_bench.korad
    assert await asyncio.to_thread(korad_exchange, korad.port, junk) == IDENTITY.encode()
    channel = korad.channel
    assert 0 <= channel.volts_set <= channel.max_volts and 0 <= channel.amps_set <= channel.max_amps
    assert error_records(caplog) == []
