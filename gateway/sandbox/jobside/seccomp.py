"""A seccomp deny-list, assembled as classic BPF through ctypes (no libseccomp binding needed).

Stdlib only (runs in the job). Denied: creating sockets (so no new network or unix-socket connection at all),
new processes (fork, vfork, clone without CLONE_THREAD; clone3 answers ENOSYS so libc falls back to clone for
threads), exec, namespaces and mounts, ptrace and cross-process memory access, bpf, io_uring, keyrings,
perf, module loading, reboot and clock setting, and signals to any process but the job itself.
Calls that act on a process by pid (rlimits, scheduling, memory policy) only on the job itself, so one task's
job cannot reach another's under the shared uid; memfd is denied (its pages escape the address-space limit);
and the parent-death signal cannot be cleared. Threads still work; so do the file descriptors the job was given.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
RET_KILL_PROCESS = 0x80000000
CLONE_THREAD = 0x00010000
X32_SYSCALL_BIT = 0x40000000
PR_SET_PDEATHSIG = 1

LD_W_ABS, JEQ_K, JGE_K, JSET_K, RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
OFFSET_NR, OFFSET_ARCH, OFFSET_ARG0_LOW, OFFSET_ARG0_HIGH, OFFSET_ARG1_LOW, OFFSET_ARG1_HIGH = 0, 4, 16, 20, 24, 28
PRIO_PROCESS = 0

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
ARCHES = tuple(AUDIT_ARCH)  # the column of each in the tables below

# Syscall numbers as (x86_64, aarch64), from the kernel headers (asm/unistd_64.h and asm-generic/unistd.h);
# None where the architecture has no such call.
Numbers = tuple[int | None, int | None]
DENY: dict[str, Numbers] = {
    "socket": (41, 198), "fork": (57, None), "vfork": (58, None), "execve": (59, 221),
    "execveat": (322, 281), "ptrace": (101, 117), "unshare": (272, 97), "setns": (308, 268),
    "mount": (165, 40), "umount2": (166, 39), "pivot_root": (155, 41), "chroot": (161, 51),
    "bpf": (321, 280), "io_uring_setup": (425, 425), "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427), "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218),
    "perf_event_open": (298, 241), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    "kexec_load": (246, 104), "kexec_file_load": (320, 294), "init_module": (175, 105),
    "finit_module": (313, 273), "delete_module": (176, 106), "reboot": (169, 142), "swapon": (167, 224),
    "swapoff": (168, 225), "settimeofday": (164, 170), "clock_settime": (227, 112),
    "clock_adjtime": (305, 266), "adjtimex": (159, 171), "sethostname": (170, 161),
    "setdomainname": (171, 162), "iopl": (172, None), "ioperm": (173, None), "acct": (163, 89),
    "quotactl": (179, 60), "syslog": (103, 116), "userfaultfd": (323, 282), "open_by_handle_at": (304, 265),
    "name_to_handle_at": (303, 264), "fanotify_init": (300, 262), "mknod": (133, None), "mknodat": (259, 33),
    "lookup_dcookie": (212, 18), "vhangup": (153, 58), "personality": (135, 92), "tkill": (200, 130),
    "pidfd_send_signal": (424, 424), "pidfd_getfd": (438, 438), "pidfd_open": (434, 434),
    "move_mount": (429, 429), "open_tree": (428, 428), "fsopen": (430, 430), "fsconfig": (431, 431),
    "fsmount": (432, 432), "fspick": (433, 433), "mount_setattr": (442, 442), "kcmp": (312, 272),
    "ioprio_set": (251, 30), "process_madvise": (440, 440), "process_mrelease": (448, 448),
    "memfd_create": (319, 279), "memfd_secret": (447, 447), "migrate_pages": (256, 238),
    "move_pages": (279, 239), "set_mempolicy_home_node": (450, 450),
}
OWN_PID_ONLY: dict[str, Numbers] = {
    "kill": (62, 129), "tgkill": (234, 131), "rt_sigqueueinfo": (129, 138), "rt_tgsigqueueinfo": (297, 240),
}
OWN_PID_OR_ZERO: dict[str, Numbers] = {
    "prlimit64": (302, 261), "sched_setaffinity": (203, 122), "sched_setscheduler": (144, 119),
    "sched_setparam": (142, 118), "sched_setattr": (314, 274), "get_robust_list": (274, 100),
}
CLONE, CLONE3, PRCTL, SETPRIORITY = (56, 220), (435, 435), (157, 167), (141, 140)


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def build_filter(arch: str, own_pid: int) -> bytes:
    column = ARCHES.index(arch)

    def numbers(table: dict[str, Numbers]) -> list[int]:
        return [number for number in (pair[column] for pair in table.values()) if number is not None]

    deny_errno = RET_ERRNO | errno.EPERM
    program = [_op(LD_W_ABS, OFFSET_ARCH), _op(JEQ_K, AUDIT_ARCH[arch], jt=1), _op(RET_K, RET_KILL_PROCESS),
               _op(LD_W_ABS, OFFSET_NR)]
    if arch == "x86_64":
        program += [_op(JGE_K, X32_SYSCALL_BIT, jf=1), _op(RET_K, deny_errno)]
    for number in numbers(DENY):
        program += [_op(JEQ_K, number, jf=1), _op(RET_K, deny_errno)]
    program += [_op(JEQ_K, CLONE3[column], jf=1), _op(RET_K, RET_ERRNO | errno.ENOSYS)]
    for number in numbers(OWN_PID_ONLY):
        # Allowed only with the job's own pid as the first argument (both halves of the 64-bit value).
        program += [_op(JEQ_K, number, jf=6), _op(LD_W_ABS, OFFSET_ARG0_LOW), _op(JEQ_K, own_pid, jf=3),
                    _op(LD_W_ABS, OFFSET_ARG0_HIGH), _op(JEQ_K, 0, jf=1), _op(RET_K, RET_ALLOW),
                    _op(RET_K, deny_errno)]
    for number in numbers(OWN_PID_OR_ZERO):
        # pid 0 means "the calling thread" for these; anything else must be the job's own pid.
        program += [_op(JEQ_K, number, jf=7), _op(LD_W_ABS, OFFSET_ARG0_HIGH), _op(JEQ_K, 0, jf=4),
                    _op(LD_W_ABS, OFFSET_ARG0_LOW), _op(JEQ_K, 0, jt=1), _op(JEQ_K, own_pid, jf=1),
                    _op(RET_K, RET_ALLOW), _op(RET_K, deny_errno)]
    # setpriority(PRIO_PROCESS, 0 or its own pid, ...) only: not another job's niceness, nor a whole user's.
    program += [_op(JEQ_K, SETPRIORITY[column], jf=10), _op(LD_W_ABS, OFFSET_ARG0_LOW), _op(JEQ_K, PRIO_PROCESS, jf=7),
                _op(LD_W_ABS, OFFSET_ARG1_HIGH), _op(JEQ_K, 0, jf=5), _op(LD_W_ABS, OFFSET_ARG1_LOW),
                _op(JEQ_K, 0, jt=2), _op(JEQ_K, own_pid, jt=1), _op(RET_K, deny_errno), _op(RET_K, RET_ALLOW),
                _op(RET_K, deny_errno)]
    # prctl(PR_SET_PDEATHSIG) would let a job outlive its zygote.
    program += [_op(JEQ_K, PRCTL[column], jf=4), _op(LD_W_ABS, OFFSET_ARG0_LOW), _op(JEQ_K, PR_SET_PDEATHSIG, jf=1),
                _op(RET_K, deny_errno), _op(RET_K, RET_ALLOW)]
    # Reached with the syscall number still in the accumulator.
    program += [_op(JEQ_K, CLONE[column], jf=4), _op(LD_W_ABS, OFFSET_ARG0_LOW), _op(JSET_K, CLONE_THREAD, jf=1),
                _op(RET_K, RET_ALLOW), _op(RET_K, deny_errno), _op(RET_K, RET_ALLOW)]
    return b"".join(program)


def install() -> bool:
    """Load the filter into the calling process; False when this architecture has no table here."""
    arch = platform.machine()
    if arch not in AUDIT_ARCH:
        return False
    code = build_filter(arch, os.getpid())
    buffer = ctypes.create_string_buffer(code, len(code))
    program = SockFprog(len(code) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    for option, argument in ((PR_SET_NO_NEW_PRIVS, 1), (PR_SET_SECCOMP, SECCOMP_MODE_FILTER)):
        pointer = ctypes.byref(program) if option == PR_SET_SECCOMP else ctypes.c_ulong(0)
        if libc.prctl(ctypes.c_int(option), ctypes.c_ulong(argument), pointer, ctypes.c_ulong(0),
                      ctypes.c_ulong(0)) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))
    return True
