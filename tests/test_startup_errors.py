"""What `pyuse` says when it cannot start, run as a person runs it: one line per problem naming the key or file,
where it came from and what to do, exit code 2, never a traceback. A bad device doc is skipped, never fatal."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sys
from pathlib import Path

import pytest

from gateway.transports.embedded_broker import free_port

PYUSE = [sys.executable, "-m", "gateway"]
# Root reads any file: to meet a file it may not read, it gives up the capabilities that let it (a real refusal).
WITHOUT_READ_OVERRIDE = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps=-all"]


async def pyuse(*args: str, prefix: list[str] = (), env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *prefix, *PYUSE, *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, **(env or {})})
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode(), err.decode()


def write_config(tmp_path: Path, extra: str = "", api_port: int = 0) -> Path:
    path = tmp_path / "pyuse.toml"
    path.write_text(f'[gateway]\ndata_dir = "{tmp_path / "data"}"\n[discovery]\nmdns = false\nmqtt = false\n'
                    f'[api]\nport = {api_port}\nmqtt_intake = false\n{extra}')
    return path


def one_line(code: int, err: str) -> str:
    assert code == 2 and "Traceback" not in err, err
    [line] = err.splitlines()
    return line


async def test_a_config_path_that_is_a_directory(tmp_path):
    code, out, err = await pyuse("run", "-c", str(tmp_path))

    assert out == ""
    assert one_line(code, err) == f"config error: {tmp_path}: is a directory, not a file"


async def test_a_config_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "pyuse.toml"
    path.write_bytes('[gateway]\nid = "café"\n'.encode("latin-1"))

    code, _, err = await pyuse("token", "-c", str(path))

    assert one_line(code, err) == (f"config error: {path}: is not UTF-8 text (byte 0xe9 at offset 19); "
                                   "save it as UTF-8")


async def test_a_config_file_this_user_may_not_read(tmp_path):
    path = write_config(tmp_path)
    path.chmod(0)
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root reads every file; setpriv (util-linux) is needed to give that up")
        prefix = WITHOUT_READ_OVERRIDE

    code, _, err = await pyuse("doctor", "-c", str(path), prefix=prefix)

    assert one_line(code, err) == (f"config error: {path}: cannot be read: permission denied for this user "
                                   "(check its mode and owner)")


async def test_a_config_file_nested_past_the_parser(tmp_path):
    path = tmp_path / "pyuse.toml"
    path.write_text("a = " + "[" * 3000 + "]" * 3000 + "\n")

    code, _, err = await pyuse("token", "-c", str(path))

    assert one_line(code, err) == f"config error: {path}: not valid TOML: arrays or tables nest too deeply"


async def test_a_data_dir_that_is_a_file(tmp_path):
    (tmp_path / "data").write_text("not a directory")
    config = write_config(tmp_path)

    code, _, err = await pyuse("run", "-c", str(config))
    line = one_line(code, err)
    assert line.startswith(f"config error: {config}: gateway.data_dir: {tmp_path / 'data'} is a file, not a "
                           "directory; point data_dir at a directory")

    code, _, err = await pyuse("token", env={"PYUSE_GATEWAY_DATA_DIR": str(tmp_path / "data" / "below")})
    assert one_line(code, err).startswith("config error: PYUSE_GATEWAY_DATA_DIR (environment): gateway.data_dir: "
                                          f"{tmp_path / 'data'} is a file")


async def test_infinity_is_no_timeout(tmp_path):
    config = write_config(tmp_path, "[sandbox]\nexec_timeout_s = inf\n")

    code, _, err = await pyuse("token", "-c", str(config))

    assert one_line(code, err) == (f"config error: {config}: sandbox.exec_timeout_s: input should be a finite "
                                   "number, got inf")


async def test_the_api_port_taken_by_another_listener(tmp_path):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        config = write_config(tmp_path, api_port=port)

        code, out, err = await pyuse("run", "-c", str(config))

    assert "is running" not in out
    errors = [line for line in err.splitlines() if " INFO " not in line]  # the log says what did start
    assert code == 2 and "Traceback" not in err, err
    assert errors == [(f"config error: {config}: api.port: 127.0.0.1:{port} is in use by another program (or "
                       "another gateway); set [api] port to a free port, or 0 for any free one")]


async def test_a_deeply_nested_condition_names_the_automation_and_key(tmp_path):
    config = write_config(tmp_path, '[[automations]]\nname = "hall-light"\naction = "turn on the hall light"\n'
                                    f'trigger = {{ mqtt = "hall/motion", when = "{"not " * 3000}occupancy" }}\n')

    code, _, err = await pyuse("run", "-c", str(config))

    line = one_line(code, err)
    assert line.startswith(f"config error: {config}: automation 'hall-light': automations[0].trigger.when: "
                           "condition 'not not not")
    assert "nests more than 32 levels deep; write it flatter" in line and len(line) < 400


async def test_bad_device_docs_are_skipped_with_one_line_each(tmp_path):
    docs = tmp_path / "data" / "device_docs"
    docs.mkdir(parents=True)
    (docs / "binary.md").write_bytes(bytes(range(128, 256)) * 4)
    (docs / "latin.md").write_bytes('+++\nkind = "café_lamp"\n+++\nA lamp.\n'.encode("latin-1"))
    (docs / "folder.md").mkdir()
    config = write_config(tmp_path, api_port=free_port())
    process = await asyncio.create_subprocess_exec(*PYUSE, "run", "-c", str(config), stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(30):
            ready = (await process.stdout.readline()).decode()
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 30)

    assert "is running" in ready and process.returncode == 0
    skipped = [line.split("device doc skipped: ", 1)[1] for line in err.decode().splitlines()
               if "device doc skipped" in line]
    assert sorted(skipped) == [f"{docs / 'binary.md'}: is not UTF-8 text (byte 0x80 at offset 0); save it as UTF-8",
                               f"{docs / 'folder.md'}: is a directory, not a file",
                               f"{docs / 'latin.md'}: is not UTF-8 text (byte 0xe9 at offset 15); save it as UTF-8"]
    assert "Traceback" not in err.decode()


async def test_a_code_file_exec_cannot_read_is_one_line(tmp_path):
    config = write_config(tmp_path)
    latin = tmp_path / "job.py"
    latin.write_bytes('print("café")\n'.encode("latin-1"))

    for target, said in ((latin, "is not UTF-8 text (byte 0xe9 at offset 10); save it as UTF-8"),
                         (tmp_path, "is a directory, not a file"), (tmp_path / "gone.py", "no such file")):
        code, _, err = await pyuse("exec", "-c", str(config), str(target))
        assert one_line(code, err) == f"pyuse exec: {target}: {said}"


async def test_a_device_docs_entry_that_is_a_file_is_skipped_and_the_shipped_docs_load(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "device_docs").write_text("not a folder")
    config = write_config(tmp_path)

    code, out, err = await pyuse("devices", "-c", str(config))

    assert code == 0 and "Traceback" not in err, err
    assert f"device docs of your own skipped: {tmp_path / 'data' / 'device_docs'} is not a directory" in err
