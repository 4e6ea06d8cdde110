"""Model code that tries to exhaust the machine: processes, threads, memory, disk, CPU, time and output.

Each must be stopped with a reason the model can read, and the gateway must come out of it unharmed (checked
by the harness after every run).
"""

from __future__ import annotations

import pytest

from security.attack import LIMITS, MODULE_LOOP, NOT_PERMITTED, OWN_LOOP

pytestmark = MODULE_LOOP
MIB = 1 << 20


@pytest.mark.parametrize("code", [
    "import os\nwhile True:\n    os.fork()",
    "import multiprocessing\nmultiprocessing.Process(target=print).start()",
    "import subprocess\nsubprocess.run(['/bin/sh', '-c', 'while :; do :; done'])",
], ids=["os.fork", "multiprocessing", "subprocess"])
async def test_a_fork_bomb_cannot_start_a_process(attacker, code):
    result = await attacker.run(code)
    assert NOT_PERMITTED in result.output  # the harness then checks that no process was left


STUBBORN_FORK_BOMB = """import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""


async def test_a_fork_bomb_that_ignores_the_error_spins_until_the_time_limit(attacker):
    result = await attacker.run(STUBBORN_FORK_BOMB)
    assert result.status == "error"
    assert "ExecutionTimeout: this execution ran past its wall-clock limit" in result.output


THREAD_BOMB = """import threading, time
threads = []
while True:
    threads.append(threading.Thread(target=time.sleep, args=(30,), daemon=True))
    threads[-1].start()
"""


async def test_a_thread_bomb_runs_out_of_threads(attacker):
    result = await attacker.run(THREAD_BOMB)
    assert "RuntimeError: can't start new thread" in result.output


@pytest.mark.parametrize("code", [
    "blob = bytearray(1 << 32)",
    "blocks = []\nwhile True:\n    blocks.append(bytearray(16 << 20))",
], ids=["one allocation", "step by step"])
async def test_a_memory_bomb_gets_a_memory_error(attacker, code):
    result = await attacker.run(code)
    assert result.status == "error" and result.output.rstrip().endswith("MemoryError")


MEMFD_BOMB = """import os
held = 0
try:
    while held < 384 << 20:
        fd = os.memfd_create('bomb')
        os.posix_fallocate(fd, 0, 64 << 20)
        held += os.fstat(fd).st_blocks * 512
except OSError as error:
    print(error)
print('held', held)
"""


@OWN_LOOP
async def test_memory_outside_the_address_space_is_limited_too(start_attacker):
    """memfd (shmem) pages are not part of RLIMIT_AS; the job's memory limit must still hold for them."""
    attacker = await start_attacker(sandbox={"exec_timeout_s": 3.0})
    result = await attacker.run(MEMFD_BOMB)
    if result.status == "killed":  # e.g. by a memory cgroup: contained, and the observation says so
        assert "[sandbox] the job was killed" in result.output
        return
    held = int(result.output.rsplit("held ", 1)[1])
    limit = LIMITS["memory_mb"]
    assert held <= limit * MIB, f"the job held {held // MIB} MiB with a {limit} MiB memory limit"


async def test_one_huge_file_stops_at_the_file_size_limit(attacker):
    result = await attacker.run("import os\ntry:\n    with open('big', 'wb') as f:\n"
                                "        for _ in range(20):\n            f.write(bytes(8 << 20))\n"
                                "except OSError as error:\n    print(error.strerror, os.path.getsize('big'))")
    reason, size = result.output.rsplit(" ", 1)
    assert reason == "File too large" and int(size) <= 64 * MIB
    assert not list((attacker.data_dir / "scratch").iterdir())  # the scratch dir went with the task


DISK_FILL = """import os
try:
    for i in range(16):
        with open(f'part{i}', 'wb') as f:
            os.posix_fallocate(f.fileno(), 0, 64 << 20)
except OSError as error:
    print(error.strerror)
print('on disk', sum(os.stat(name).st_blocks * 512 for name in os.listdir('.')))
"""
SCRATCH_BOUND = 256 * MIB  # generous: any per-task scratch quota would be far below it


async def test_many_files_cannot_fill_the_disk(attacker):
    result = await attacker.run(DISK_FILL)
    on_disk = int(result.output.rsplit("on disk ", 1)[1])
    assert on_disk <= SCRATCH_BOUND, f"one task put {on_disk // MIB} MiB on the gateway's disk"


async def test_deeply_nested_directories_in_scratch_are_cleaned_up(attacker):
    result = await attacker.run("import os\nfor _ in range(1500):\n    os.mkdir('d')\n    os.chdir('d')")
    assert result.status == "ok"
    assert not list((attacker.data_dir / "scratch").iterdir())


async def test_too_many_open_files_is_refused(attacker):
    result = await attacker.run("files = [open('/dev/null') for _ in range(10_000)]")
    assert "OSError: [Errno 24] Too many open files" in result.output


@OWN_LOOP
async def test_a_busy_loop_runs_out_of_cpu_time(start_attacker):
    attacker = await start_attacker(sandbox={"exec_timeout_s": 5.0, "cpu_s": 1})
    result = await attacker.run("while True:\n    pass")
    assert result.status == "error"
    assert "CPUTimeExceeded: the job used up its CPU-time budget" in result.output


@pytest.mark.parametrize("code", ["while True:\n    pass", "import time\ntime.sleep(3600)"],
                         ids=["busy", "sleep"])
async def test_a_long_execution_is_cut_at_the_wall_clock_limit(attacker, code):
    result = await attacker.run(code)
    assert result.status == "error" and "ExecutionTimeout" in result.output


async def test_a_loop_swallowing_base_exception_is_killed(attacker):
    result = await attacker.run("while True:\n    try:\n        while True:\n            pass\n"
                                "    except BaseException:\n        pass")
    assert result.status == "killed" and "it did not stop at the soft time limit" in result.output


@pytest.mark.parametrize("code", [
    "print('START')\nwhile True:\n    print('x' * 1000)",
    "import os\nprint('START', flush=True)\nos.write(1, bytes(50 << 20))",
], ids=["many prints", "one write"])
async def test_an_output_flood_is_cut_and_the_job_killed(attacker, code):
    result = await attacker.run(code)
    assert result.status == "killed" and "output limit exceeded" in result.output
    assert result.output.startswith("START") and "bytes of output truncated]..." in result.output
    assert len(result.output) < 25_000


RECURSION = "def f(n):\n    return f(n + 1)\nf(0)"


async def test_runaway_recursion_is_a_recursion_error(attacker):
    result = await attacker.run(RECURSION)
    assert result.status == "error" and "RecursionError: maximum recursion depth exceeded" in result.output


async def test_runaway_recursion_past_the_interpreters_guard_ends_the_job_only(attacker):
    """Without the recursion limit the stack eats the memory budget. How the job ends varies (a MemoryError, a
    failure while formatting a million-frame traceback, a time limit); the gateway must not care."""
    result = await attacker.run("import sys\nsys.setrecursionlimit(10**8)\n" + RECURSION)
    assert result.status in ("error", "killed")
    assert "Traceback (most recent call last)" in result.output or "\n[sandbox] " in result.output


async def test_stopping_itself_does_not_hang_the_task(attacker):
    result = await attacker.run("import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)\nprint('resumed')")
    assert result.status == "killed" and "did not stop at the soft time limit" in result.output


async def test_a_terminal_stop_signal_is_ignored_without_a_terminal(attacker):
    result = await attacker.run("import os, signal\nos.kill(os.getpid(), signal.SIGTSTP)\n"
                                "print('still running')")
    assert (result.status, result.output) == ("ok", "still running\n")


RLIMITS = ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_NOFILE", "RLIMIT_FSIZE", "RLIMIT_NPROC")
RAISE_LIMITS = f"""import resource
for name in {RLIMITS!r}:
    limit = getattr(resource, name)
    try:
        resource.setrlimit(limit, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        print(name, 'raised')
    except ValueError as error:
        print(name, error)
print(resource.getrlimit(resource.RLIMIT_AS)[1] >> 20)
"""


async def test_a_job_cannot_raise_its_own_limits(attacker):
    result = await attacker.run(RAISE_LIMITS)
    lines = result.output.splitlines()
    assert lines[:5] == [f"{name} not allowed to raise maximum limit" for name in RLIMITS]
    assert lines[5] == str(LIMITS["memory_mb"])
