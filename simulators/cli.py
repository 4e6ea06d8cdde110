"""`pyuse sim SCENARIO...` (also `python -m simulators`): run simulated devices until Ctrl-C.

Prints each device's address, the MQTT broker and the admin endpoint. Without `--broker` it starts the
embedded broker on a free loopback port. Several scenarios run as one home (`pyuse sim home lab`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import re
import signal
import sys
from collections.abc import AsyncIterator

from gateway.transports.embedded_broker import EmbeddedBroker
from simulators.admin import AdminServer
from simulators.base import SimClock
from simulators.runner import SimHome, running_home
from simulators.scenario import DeviceSpec, load_scenario


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        specs = [spec for name in args.scenario for spec in load_scenario(name, args.devices).devices]
    except (OSError, ValueError, KeyError) as error:
        print(f"pyuse sim: {error}", file=sys.stderr)
        return 2
    try:
        asyncio.run(run(specs, args))
    except (RuntimeError, ValueError, OSError) as error:
        print(f"pyuse sim: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyuse sim", description="Run simulated devices on loopback "
                                     "addresses until Ctrl-C, with an admin endpoint to read and steer their "
                                     "state.")
    parser.add_argument("scenario", nargs="+", metavar="SCENARIO",
                        help="home, lab, large, or a path to a scenario .toml; several run as one home")
    parser.add_argument("--broker", type=loopback_endpoint, metavar="HOST:PORT",
                        help="an MQTT broker on a loopback address (default: start the embedded one)")
    parser.add_argument("--admin-port", type=int, default=0, metavar="N",
                        help="port of the admin endpoint on 127.0.0.1 (default: a free one, printed)")
    parser.add_argument("--devices", type=count, default=1000, metavar="N",
                        help="how many devices the large scenario has (default 1000)")
    parser.add_argument("--speed", type=positive, default=1.0, metavar="X",
                        help="simulated time runs X times faster than real time (default 1)")
    parser.add_argument("--mdns-suffix", type=mdns_suffix, metavar="TEXT",
                        help="what every mDNS name ends in after a '-', so that several simulated homes on "
                             "one machine stay apart (default: 4 random hex digits, printed)")
    return parser


def loopback_endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        number = int(port)
        if not ipaddress.ip_address("127.0.0.1" if host == "localhost" else host).is_loopback or \
                not 0 < number < 65536:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT on a loopback address (127.0.0.0/8), "
                                         f"got {text!r}") from None
    return host, number


def count(text: str) -> int:
    if not text.isdecimal() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def mdns_suffix(text: str) -> str:
    if not re.fullmatch(r"[a-z0-9]{1,8}", text):
        raise argparse.ArgumentTypeError(f"expected 1 to 8 lowercase letters or digits, got {text!r}")
    return text


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


async def run(specs: list[DeviceSpec], args: argparse.Namespace) -> None:
    async with (broker(args.broker) as (host, port, embedded),
                running_home(specs, host, port, SimClock(args.speed), mdns_suffix=args.mdns_suffix) as home):
        admin = AdminServer(home, port=args.admin_port)
        await admin.start()
        try:
            broker_address = f"{host}:{port}" + (" (embedded)" if embedded else "")
            print_home(home, broker_address, admin.url, args.speed)
            await until_stopped()
        finally:
            await admin.close()


@contextlib.asynccontextmanager
async def broker(given: tuple[str, int] | None) -> AsyncIterator[tuple[str, int, bool]]:
    if given is not None:
        yield given[0], given[1], False
        return
    embedded = EmbeddedBroker("127.0.0.1")
    await embedded.start()
    try:
        yield embedded.host, embedded.port, True
    finally:
        await embedded.close()


def print_home(home: SimHome, broker_address: str, admin_url: str, speed: float) -> None:
    rows = [(device_id, device.kind, device.name, device.area or "-", device.address())
            for device_id, device in home.devices.items()]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    print(f"pyuse sim: {len(rows)} devices, MQTT broker {broker_address}, clock x{speed:g}, mDNS names end in "
          f"-{home.context.mdns_suffix}")
    for row in rows:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True))
              + "  " + row[4])
    print(f"admin: {admin_url}/state (GET; POST /state/<id> to steer, POST /clock to change speed)")
    print("running; Ctrl-C stops", flush=True)


async def until_stopped() -> None:
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    try:
        await stopped.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
