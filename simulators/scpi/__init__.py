"""SCPI lab instruments: an IEEE-488.2/SCPI engine (`engine`), its line transports over a pty and TCP 5025
(`transport`), their mDNS announcements as LXI instruments (`lxi`), and a bench power supply and a multimeter built
on them (`instruments`)."""

from simulators.scpi.engine import QUEUE_SIZE, Call, ScpiEngine, ScpiError
from simulators.scpi.instruments import PsuChannel, ScpiInstrument, ScpiMultimeter, ScpiPowerSupply
from simulators.scpi.transport import SCPI_PORT, LineChannel, LineInstrument, PtyPort

__all__ = [
    "QUEUE_SIZE", "SCPI_PORT", "Call", "LineChannel", "LineInstrument", "PsuChannel", "PtyPort", "ScpiEngine",
    "ScpiError", "ScpiInstrument", "ScpiMultimeter", "ScpiPowerSupply",
]
