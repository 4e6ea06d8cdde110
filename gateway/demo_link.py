"""How `pyuse ask` and `pyuse devices` find a running `pyuse demo`.

The demo keeps its data in a temporary directory of its own, so its devices and tasks never mix with the user's.
While it runs it leaves one file in the user's data dir, demo.json, naming that directory and the port of its API;
it removes the file when it ends. A one-shot command finds no daemon holding the user's data dir, reads the file,
and talks to the demo if the demo still holds its own data dir (a file left by a killed demo is ignored).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from gateway.config import Config
from gateway.lock import holder
from gateway.store import make_private_dir

DEMO_FILE = "demo.json"

log = logging.getLogger(__name__)


@contextlib.contextmanager
def announced(user_data_dir: Path, demo_data_dir: Path, port: int) -> Iterator[None]:
    """demo.json in the user's data dir while the block runs; the directory too, if it had to be made. A data dir
    that cannot be written only means the CLI will not find the demo: it runs all the same."""
    made = not user_data_dir.exists()
    path = user_data_dir / DEMO_FILE
    try:
        make_private_dir(user_data_dir)
        path.write_text(json.dumps({"data_dir": str(demo_data_dir), "port": port, "pid": os.getpid()}), "utf-8")
    except OSError as exc:
        log.warning("`pyuse ask` will not find this demo: cannot write %s (%s)", path, exc)
    try:
        yield
    finally:
        if _names(path, demo_data_dir):  # a second demo started meanwhile owns the file now: CLI commands reach it
            path.unlink(missing_ok=True)
        if made:
            with contextlib.suppress(OSError):  # only if still empty: something else may have put files there
                user_data_dir.rmdir()


def _names(path: Path, demo_data_dir: Path) -> bool:
    try:
        return bool(json.loads(path.read_text("utf-8")).get("data_dir") == str(demo_data_dir))
    except (OSError, ValueError, AttributeError):
        return False


def running_demo(config: Config) -> Config | None:
    """`config` pointed at a running demo's data dir and API port, or None when no demo runs for it."""
    try:
        link = json.loads((config.gateway.data_dir / DEMO_FILE).read_text("utf-8"))
        demo_dir, port = Path(link["data_dir"]), int(link["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if holder(demo_dir) is None:  # the demo is gone (killed before it could remove the file)
        return None
    demo = config.model_copy(deep=True)
    demo.gateway.data_dir, demo.api.port = demo_dir, port
    return demo
