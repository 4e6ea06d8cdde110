"""Lockdown of a freshly forked job, applied before any model code runs, and the probe that finds which layers
this machine supports.

Stdlib only: loaded by the zygote, which runs as `python -I -S`. Layers, in order:
  session     setsid + parent-death signal: no terminal signals, no job outliving its zygote
  fds         stdio onto the capped output pipe, every other descriptor closed, cwd = the scratch dir
  nice        nice 10: the gateway stays responsive
  netns       a network namespace with no usable interface (user+network namespace when not root)
  scratch     a private mount namespace with a size-limited tmpfs as the scratch dir: disk use is bounded and
              nothing the job writes outlives it
  rlimits     address space, CPU seconds, open files, file size, no core dumps (+ processes for non-root)
  landlock    read-only system and interpreter paths, write only the task's scratch dir, no TCP,
              abstract unix sockets and signals scoped to the job
  uid         as root: drop to the dedicated job uid with no supplementary groups
  seccomp     no socket(), no new processes, no exec/namespaces/mounts/ptrace/bpf/io_uring/keyrings
A job is told which layers to apply (those the probe found working) and exits rather than run with fewer.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from .landlock import abi_version, restrict
from .seccomp import install as install_seccomp

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
NICE = 10
MAX_OPEN_FILES = 64
MAX_FILE_BYTES = 64 << 20
MAX_PROCESSES = 256
LAYERS = ("session", "fds", "nice", "netns", "scratch", "rlimits", "landlock", "uid", "seccomp")
CLONE_NEWNS = 0x00020000
MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x4000, 0x40000
SYSTEM_READ_PATHS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc/ld.so.cache", "/etc/localtime",
                     "/dev/urandom", "/dev/zero")

_libc = ctypes.CDLL(None, use_errno=True)


class LayerFailed(Exception):
    """A layer the gateway relies on could not be applied; the job must not run."""


def prctl(option: int, value: int) -> None:
    zero = ctypes.c_ulong(0)
    if _libc.prctl(ctypes.c_int(option), ctypes.c_ulong(value), zero, zero, zero) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def unshare(flags: int) -> None:
    """os.unshare arrived in Python 3.12; call libc directly."""
    if _libc.unshare(ctypes.c_int(flags)) != 0:
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


def die_with_parent(parent: int) -> None:
    """SIGKILL when the zygote dies. The kernel clears this on every credential change, so it is set again after
    the uid drop; the parent check closes the window where the zygote died before it was set."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(0)


def enter_network_namespace() -> str:
    flags = CLONE_NEWNET if os.geteuid() == 0 else CLONE_NEWUSER | CLONE_NEWNET
    unshare(flags)
    return "netns" if flags == CLONE_NEWNET else "userns+netns"


def mount_scratch(scratch: str, size_mb: int) -> None:
    """A tmpfs of `size_mb` over the scratch dir, seen only by this job (its own mount namespace)."""
    unshare(CLONE_NEWNS)
    for source, target, fstype, flags, data in (
            (b"none", b"/", None, MS_REC | MS_PRIVATE, None),  # nothing mounted here propagates to the host
            (b"tmpfs", scratch.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, f"size={size_mb}m,mode=0700".encode())):
        if _libc.mount(source, target, fstype, ctypes.c_ulong(flags), data) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"mount {target.decode()}: {os.strerror(errno)}")
    os.chdir(scratch)  # the old cwd is the directory underneath the new tmpfs


def set_limits(memory_mb: int, cpu_s: int, limit_processes: bool) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 2))
    resource.setrlimit(resource.RLIMIT_NOFILE, (MAX_OPEN_FILES, MAX_OPEN_FILES))
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if limit_processes:  # ignored for root, so only worth setting for an unprivileged job
        resource.setrlimit(resource.RLIMIT_NPROC, (MAX_PROCESSES, MAX_PROCESSES))


def read_paths() -> list[str]:
    interpreter = {sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(sys.executable))}
    return [*SYSTEM_READ_PATHS, *sorted(interpreter)]


def drop_privileges(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid or os.getgid() != gid:
        raise OSError("the uid/gid did not change")


def lockdown(config: dict[str, Any], out_fd: int, keep_fds: set[int]) -> dict[str, str | None]:
    """Apply the layers named in config["layers"] (all of them when probing) to the calling process.

    Returns layer -> None when active, or why not. Outside a probe, a named layer that fails raises LayerFailed.
    """
    probing = bool(config.get("probe"))
    wanted = LAYERS if probing else tuple(config["layers"])
    uid, gid = config.get("job_uid"), config.get("job_gid")
    scratch = config["scratch_dir"]
    unprivileged = os.geteuid() != 0 or (uid is not None and "uid" in wanted)
    zygote = os.getppid()

    def new_session() -> None:
        os.setsid()
        die_with_parent(zygote)

    def own_fds() -> None:
        redirect_stdio(out_fd)
        close_fds_except(keep_fds)
        os.chdir(scratch)  # before the uid drop: the job keeps its scratch dir even when it cannot traverse the path

    def drop_uid() -> None:
        _drop(uid, gid, scratch)
        die_with_parent(zygote)

    steps: dict[str, Callable[[], object]] = {
        "session": new_session,
        "fds": own_fds,
        "nice": lambda: os.nice(NICE),
        "netns": enter_network_namespace,
        "scratch": lambda: mount_scratch(scratch, config.get("scratch_mb", 64)),
        "rlimits": lambda: set_limits(config["memory_mb"], config["cpu_s"], unprivileged),
        "landlock": lambda: _landlock(scratch),
        "uid": drop_uid,
        "seccomp": lambda: None if install_seccomp() else _unavailable("no seccomp table for this CPU"),
    }
    result: dict[str, str | None] = {}
    for name in LAYERS:
        if name not in wanted:
            result[name] = "not requested"
            continue
        try:
            steps[name]()
            result[name] = None
        except (OSError, LayerFailed, ValueError) as error:
            if not probing:
                raise LayerFailed(f"sandbox layer {name!r} failed: {error}") from error
            result[name] = str(error) or type(error).__name__
    os.environ.clear()
    return result


def _landlock(scratch: str) -> None:
    if abi_version() < 1:
        _unavailable("the kernel has no Landlock (needs Linux 5.13+ with landlock in the lsm= list)")
    restrict(read_paths(), [scratch, os.devnull])


def _drop(uid: int | None, gid: int | None, scratch: str) -> None:
    if os.geteuid() != 0:
        _unavailable("not running as root: jobs already run as the gateway's own user")
    if uid is None or gid is None:
        _unavailable("no job uid is configured")
    os.chown(scratch, uid, gid)
    drop_privileges(uid, gid)


def _unavailable(reason: str) -> NoReturn:
    raise LayerFailed(reason)
