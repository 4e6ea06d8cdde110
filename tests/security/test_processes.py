"""Model code against other processes and the kernel: signals, ptrace, raw system calls, other tasks' jobs,
and what the job's own memory and descriptors hold."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import pytest
from conftest import shelly_entry

from security.attack import MODULE_LOOP, NOT_PERMITTED, OWN_LOOP, SECRET

pytestmark = MODULE_LOOP

SYSCALL = """import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
result = libc.syscall(*[ctypes.c_long(arg) for arg in {args}])
print(result, os.strerror(ctypes.get_errno()) if result < 0 else 'succeeded')
"""
CLONE_NEWUSER, CLONE_NEWNET, SIGCHLD = 0x10000000, 0x40000000, 17


async def test_the_layers_are_really_in_force_in_a_running_job(attacker):
    """Checked from outside, on the live job: the probe's word is not taken for it."""
    attack = asyncio.create_task(attacker.run(
        "import os, time\nprint(os.getuid(), os.getgid(), os.getgroups(), os.nice(0))\ntime.sleep(0.5)"))
    job = await attacker.running_job()
    for _ in range(40):  # the job locks itself down within milliseconds of being forked
        status = Path(f"/proc/{job}/status").read_text()
        if "Seccomp:\t2\n" in status:
            break
        await asyncio.sleep(0.01)
    network = os.readlink(f"/proc/{job}/ns/net")
    result = await attack
    assert "Seccomp:\t2\n" in status and "NoNewPrivs:\t1\n" in status
    assert network != os.readlink("/proc/self/ns/net")
    sandbox = attacker.gateway.config.sandbox
    assert result.output == f"{sandbox.job_uid} {sandbox.job_gid} [] 10\n"


async def test_signalling_the_zygote_is_refused(attacker):
    zygote = attacker.zygote_pid
    result = await attacker.run("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)")
    assert NOT_PERMITTED in result.output
    assert attacker.zygote_pid == zygote and attacker.gateway.sandbox.zygote.running


@pytest.mark.parametrize("how", ["import os\nos.kill({pid}, {sig})",
                                 SYSCALL.format(args="(234, {pid}, {pid}, {sig})"),
                                 SYSCALL.format(args="(129, {pid}, {sig}, 0)")],
                         ids=["kill", "tgkill", "rt_sigqueueinfo"])
async def test_signalling_the_gateway_is_refused(attacker, how):
    received = []
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, received.append, "signal")
    try:
        code = how.replace("{pid}", str(os.getpid())).replace("{sig}", str(int(signal.SIGUSR2)))
        result = await attacker.run(code)
        await asyncio.sleep(0.05)
    finally:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR2)
    assert "Operation not permitted" in result.output and received == []


async def test_signalling_every_process_is_refused(attacker):
    result = await attacker.run("import os\nos.kill(-1, 0)")  # signal 0: probes the right, sends nothing
    assert NOT_PERMITTED in result.output


ORPHAN = """import ctypes, os, time
ctypes.CDLL(None).prctl(1, 0, 0, 0, 0)  # PR_SET_PDEATHSIG off: nothing kills the job when its zygote dies
os.close(sleep.__self__.channel._sock.detach())  # the gateway now waits for the job's exit status
while True:
    try:
        time.sleep(0.2)
    except BaseException:
        pass
"""


@OWN_LOOP
async def test_a_job_cannot_outlive_its_zygote(start_attacker):
    """The zygote can die under its jobs (the OOM killer, a crash); every job must die with it."""
    attacker = await start_attacker()  # a gateway of its own: this test kills its zygote
    attack = asyncio.create_task(attacker.run(ORPHAN))
    job = await attacker.running_job()
    try:
        await asyncio.sleep(0.2)
        os.kill(attacker.zygote_pid, signal.SIGKILL)
        result = await attack  # the harness finds the job if it is still there, whoever its parent is now
        assert result.status == "killed"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(job, signal.SIGKILL)


REACH_INTO = {
    "ptrace attach the zygote": "(101, 16, os.getppid(), 0, 0)",
    "ptrace seize the gateway": f"(101, 0x4206, {os.getpid()}, 0, 0)",
    "read the gateway's memory": f"(310, {os.getpid()}, 0, 0, 0, 0, 0)",
    "pidfd of the zygote": "(434, os.getppid(), 0)",
}


@pytest.mark.parametrize("attack", REACH_INTO)
async def test_reaching_into_another_process_is_refused(attacker, attack):
    result = await attacker.run(SYSCALL.format(args=REACH_INTO[attack]))
    assert result.output == "-1 Operation not permitted\n"  # a stopped zygote would fail the next job


DANGEROUS_SYSCALLS = {
    "unshare a user and network namespace": f"(272, {CLONE_NEWUSER | CLONE_NEWNET})",
    "setns": f"(308, 1, {CLONE_NEWNET})",
    "mount": "(165, 0, 0, 0, 0, 0)",
    "bpf": "(321, 0, 0, 0)",
    "io_uring_setup": "(425, 8, 0)",
    "clone a process": f"(56, {SIGCHLD}, 0, 0, 0, 0)",
    "fork": "(57,)",
    "execve /bin/sh": "(59, ctypes.cast(ctypes.c_char_p(b'/bin/sh'), ctypes.c_void_p).value, 0, 0)",
    "socket": "(41, 2, 1, 0)",
    "keyctl": "(250, 0, 0, 0, 0, 0)",
    "perf_event_open": "(298, 0, 0, 0, 0, 0)",
    "userfaultfd": "(323, 0)",
    "socket through the x32 ABI": "(0x40000000 | 41, 2, 1, 0)",
}


@pytest.mark.parametrize("syscall", DANGEROUS_SYSCALLS)
async def test_a_dangerous_system_call_is_refused(attacker, syscall):
    result = await attacker.run(SYSCALL.format(args=DANGEROUS_SYSCALLS[syscall]))
    assert result.output == "-1 Operation not permitted\n"


async def test_a_new_process_through_clone3_is_refused(attacker):
    result = await attacker.run(SYSCALL.format(args="(435, 0, 0)"))
    assert result.output == "-1 Function not implemented\n"  # so libc falls back to clone, which is filtered


I386_GETPID = """import ctypes, mmap
page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
page.write(bytes.fromhex('b814000000cd80c3'))  # mov eax, 20 (getpid, i386); int 0x80; ret
print('survived', ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(page)))())
"""


async def test_a_system_call_through_the_i386_abi_kills_the_job(attacker):
    result = await attacker.run(I386_GETPID)
    assert result.status == "killed" and "the job crashed (SIGSYS)" in result.output
    assert "survived" not in result.output


@pytest.mark.parametrize("code", [
    "import os\nprint(os.system('id'))",
    "import os\nos.execv('/bin/sh', ['sh', '-c', 'id'])",
    "import os\nos.posix_spawn('/bin/sh', ['sh', '-c', 'id'], {})",
], ids=["os.system", "os.execv", "os.posix_spawn"])
async def test_running_a_program_is_refused(attacker, code):
    result = await attacker.run(code)
    assert "uid=" not in result.output
    assert result.output == "32512\n" or NOT_PERMITTED in result.output  # os.system: exit status 127


UNDO_SECCOMP = """import ctypes, os, socket
libc = ctypes.CDLL(None, use_errno=True)
for option, value in ((22, 0), (38, 0)):  # PR_SET_SECCOMP: disabled; PR_SET_NO_NEW_PRIVS: off
    print(libc.prctl(option, value, 0, 0, 0), os.strerror(ctypes.get_errno()))
socket.socket()
"""


async def test_seccomp_cannot_be_undone(attacker):
    result = await attacker.run(UNDO_SECCOMP)
    assert result.output.startswith("-1 Invalid argument\n-1 Invalid argument\n")
    assert NOT_PERMITTED in result.output


VICTIM = """import os, time
time.sleep(0.6)
blob = bytearray(40 << 20)
print('victim fine, nice', os.nice(0))
"""
CROSS_TASK = {
    "lower its memory limit": "import resource\nresource.prlimit({pid}, resource.RLIMIT_AS, (16 << 20,) * 2)",
    "renice it": "import os\nos.setpriority(os.PRIO_PROCESS, {pid}, 19)",
}


@pytest.mark.parametrize("attack", CROSS_TASK)
async def test_a_job_cannot_touch_another_tasks_job(attacker, attack):
    """All jobs share one uid: the kernel's same-user rules alone would let one task's job reach another's."""
    victim = asyncio.create_task(attacker.gateway.run_code(VICTIM, "victim"))
    victim_pid = await attacker.running_job()
    result = await attacker.run(CROSS_TASK[attack].format(pid=victim_pid))
    _, victim_run = await victim
    assert "PermissionError" in result.output or "ProcessLookupError" in result.output
    assert (victim_run.status, victim_run.output) == ("ok", "victim fine, nice 10\n")


MEMORY_SEARCH = """import gc, sys
strings = set()
for obj in gc.get_objects():
    items = obj.items() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple, set)) else ()
    for item in items:
        for part in item if isinstance(item, tuple) else (item,):
            if isinstance(part, str):
                strings.add(part)
found = [text for text in strings if any(needle[::-1] in text for needle in {reversed_needles!r})]
print(len(strings) > 1000, len(found))
print([name for name in sys.modules if name.split('.')[0] in ('gateway', 'pydantic', 'aiohttp', 'paho')])
"""


@OWN_LOOP
async def test_the_jobs_memory_holds_no_secret_and_no_address(start_attacker, shelly):
    """The job is a separate process: gc and frame tricks reach only the job itself, which was never given
    the config, the secrets or device addresses. (The needles travel reversed: the code holds no copy.)"""
    attacker = await start_attacker(devices=[shelly_entry(shelly)])
    needles = [SECRET, f":{shelly.port}"]
    result = await attacker.run(MEMORY_SEARCH.format(reversed_needles=[needle[::-1] for needle in needles]))
    assert result.output == "True 0\n[]\n"


OPEN_FDS = """import os, socket, stat
kinds = []
for fd in range(1024):
    try:
        info = os.fstat(fd)
    except OSError:
        continue
    if fd < 3:
        kinds.append(fd)
    elif stat.S_ISSOCK(info.st_mode):
        kinds.append(socket.socket(fileno=os.dup(fd)).type.name)
    elif stat.S_ISREG(info.st_mode) and info.st_nlink == 0:
        kinds.append("memfd")
    else:
        kinds.append(oct(info.st_mode))
print(kinds)
"""


async def test_the_job_holds_only_its_stdio_its_channel_and_its_inventory(attacker):
    result = await attacker.run(OPEN_FDS)
    assert result.output == "[0, 1, 2, 'SOCK_SEQPACKET', 'memfd']\n"


TIOCSTI = """import fcntl, termios
for fd in (0, 1, 2):
    try:
        fcntl.ioctl(fd, termios.TIOCSTI, b'x')
        print(fd, 'injected')
    except OSError as error:
        print(fd, error.strerror)
"""


async def test_the_job_has_no_terminal_to_inject_into(attacker):
    result = await attacker.run(TIOCSTI)
    assert result.output == "".join(f"{fd} Inappropriate ioctl for device\n" for fd in (0, 1, 2))
