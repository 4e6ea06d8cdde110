"""Lockdown of a freshly forked job, applied before any model code runs.

Stdlib only: this module is loaded by the zygote, which runs as `python -I -S`.
Layers in order: new session, parent-death signal, stdio onto the capped pipe, every other fd closed,
nice, network namespace, resource limits. Each returns whether it took effect so the trace can say
which layers a task ran under.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
NICE = 10
MAX_OPEN_FILES = 64
MAX_FILE_BYTES = 64 << 20

_libc = ctypes.CDLL(None, use_errno=True)


def prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def unshare(flags: int) -> None:
    """os.unshare arrived in Python 3.12; call libc directly."""
    if _libc.unshare(flags) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def redirect_stdio(out_fd: int) -> None:
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    os.close(out_fd)


def close_fds_except(keep: set[int]) -> None:
    low = 3
    for fd in sorted(fd for fd in keep if fd >= 3):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def enter_network_namespace() -> str | None:
    """A namespace with no interfaces but a down loopback: every new connection fails. None if impossible."""
    for flags, name in ((CLONE_NEWNET, "netns"), (CLONE_NEWUSER | CLONE_NEWNET, "userns+netns")):
        try:
            unshare(flags)
            return name
        except OSError:
            continue
    return None


def set_limits(memory_mb: int, cpu_s: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 2))
    resource.setrlimit(resource.RLIMIT_NOFILE, (MAX_OPEN_FILES, MAX_OPEN_FILES))
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def lockdown(out_fd: int, keep_fds: set[int], scratch_dir: str, memory_mb: int, cpu_s: int) -> list[str]:
    """Apply every available layer to the calling process; return the names of those in force."""
    layers = []
    os.setsid()
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    redirect_stdio(out_fd)
    close_fds_except(keep_fds)
    layers.append("fds")
    os.nice(NICE)
    os.chdir(scratch_dir)
    network = enter_network_namespace()
    if network:
        layers.append(network)
    set_limits(memory_mb, cpu_s)
    layers.append("rlimits")
    os.environ.clear()
    return layers
