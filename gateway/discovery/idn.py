"""What an instrument's *IDN? reply says: a name to show, and an identity that holds wherever it is found."""

from __future__ import annotations


def name_from_idn(idn: str) -> str:
    """'Keysight Technologies,E36313A,MY123,2.1' -> 'Keysight Technologies E36313A'."""
    fields = [field.strip() for field in idn.split(",")]
    return " ".join(fields[:2]) if len(fields) >= 2 else idn


def instrument_key(idn: str, address: str) -> str:
    """'Keysight Technologies,E36313A,MY123,2.1' -> 'scpi:keysight technologies,e36313a,my123', whichever port
    or address it is found on, so it keeps its id and area; one that gives no serial number is known by its
    address ('10.0.0.5:5025', '/dev/ttyUSB0')."""
    fields = [field.strip().casefold() for field in idn.split(",")]
    if len(fields) < 3 or fields[2] in ("", "0"):
        return f"scpi:{address}"
    return "scpi:" + ",".join(fields[:3])
