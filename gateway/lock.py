"""One gateway per data dir: the process that runs a gateway holds an exclusive lock on <data_dir>/gateway.lock.

Two gateways on one data dir fight: the second marks the first's running tasks interrupted at start-up, and both
answer for the same devices. The lock is a non-blocking flock, which the kernel drops when its holder exits,
even by kill -9, so a crash never leaves a stale lock. The file says who holds it ("<pid> <role>"), so that the
one turned away can name it, and one-shot CLI commands can tell a running daemon (reach it through its API) from
another one-shot command (wait for it).
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from gateway.config import ConfigError
from gateway.store import make_private_dir, make_private_file

LOCK_FILE = "gateway.lock"


@dataclass(frozen=True)
class Holder:
    pid: int | None  # None when the file does not say (the holder is between taking the lock and writing it)
    role: str  # daemon | cli

    def __str__(self) -> str:
        what = {"daemon": "`pyuse run`", "cli": "a one-shot pyuse command"}.get(self.role, "a gateway")
        return f"{what} (pid {self.pid if self.pid is not None else 'unknown'})"


class DataDirBusy(ConfigError):
    """Another process holds the data dir; printed as one line, like any unusable setting."""

    def __init__(self, data_dir: Path, holder: Holder, advice: str | None = None) -> None:
        super().__init__([f"gateway.data_dir: {data_dir} is in use by {holder}; "
                          + (advice or "stop it, or give this gateway a data_dir of its own")])
        self.holder = holder


def _read_holder(fd: int) -> Holder:
    pid, _, role = os.pread(fd, 200, 0).decode("utf-8", "replace").strip().partition(" ")
    return Holder(int(pid) if pid.isdigit() else None, role)


class DataDirLock:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    @classmethod
    def acquire(cls, data_dir: Path, role: str) -> DataDirLock:
        """Take the data dir for this process; raises DataDirBusy naming the holder when another has it."""
        make_private_dir(data_dir)
        path = data_dir / LOCK_FILE
        make_private_file(path)
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)  # CLOEXEC: no child process may keep the lock alive
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise DataDirBusy(data_dir, holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {role}\n".encode(), 0)
        return cls(fd)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = -1


def holder(data_dir: Path) -> Holder | None:
    """Who holds the data dir now, or None when nobody does."""
    try:
        fd = os.open(data_dir / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # dropped again when fd closes, at once
    except BlockingIOError:
        return _read_holder(fd)
    finally:
        os.close(fd)
    return None
