"""`pyuse run`, `token`, `doctor`, `demo` and `sim`: the gateway as a service, its token, its health check, and
the simulated home and lab."""

from __future__ import annotations

import argparse
import asyncio
import sys

from gateway.commands.common import load
from gateway.config import find_config_file, load_config
from gateway.logs import setup_logging


def cmd_run(args: argparse.Namespace) -> int:
    from gateway.daemon import run_daemon

    path = find_config_file(args.config)
    config = load_config(path)
    setup_logging("debug" if args.verbose else config.gateway.log_level, config.gateway.log_format == "json")
    return asyncio.run(run_daemon(config, str(path) if path else "defaults"))


def cmd_token(args: argparse.Namespace) -> int:
    from gateway.api.auth import load_or_create_token, rotate_token

    config, _ = load(args)
    if args.rotate:
        print(rotate_token(config.gateway.data_dir))
        print("rotated: restart `pyuse run` for it to take effect", file=sys.stderr)
    else:
        print(load_or_create_token(config.gateway.data_dir)[0])
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from gateway.doctor import run_doctor

    config, source = load(args)
    return asyncio.run(run_doctor(config, source, sys.stdout))


def cmd_sim(args: argparse.Namespace) -> int:
    from simulators.cli import main as sim_main

    return sim_main(args.args)


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    config, _ = load(args)
    return asyncio.run(run_demo(config, args.data_dir))
