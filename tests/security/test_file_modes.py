"""The gateway's files are its user's alone (issue 11, item 6).

The data dir holds the store (every command, answer and device call), the API token, the skills every job loads
and user device docs: it is made 0700 at start (created so, or tightened), the SQLite store and its -wal and -shm
files 0600, the token 0600. A config file holding a secret that other users can read gets one warning line naming
the file and the fix. Checked on a real gateway and daemon, files and modes as the kernel reports them.
"""

from __future__ import annotations

import logging
import sqlite3
import stat
from pathlib import Path

import pytest
from conftest import make_config

from gateway.api.auth import TOKEN_FILE, load_or_create_token
from gateway.app import Gateway
from gateway.config import ConfigError, load_config


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def store_files(data_dir: Path) -> list[Path]:
    return [data_dir / name for name in ("pyuse.db", "pyuse.db-wal", "pyuse.db-shm")]


async def test_a_new_data_dir_and_store_are_private(tmp_path, gateway_factory):
    gateway = await gateway_factory(make_config(tmp_path))
    data_dir = gateway.config.gateway.data_dir

    _, execution = await gateway.run_code("print(open('note', 'w').write('hi'))", "a job still has its scratch")

    assert execution.output == "2\n"
    assert mode(data_dir) == 0o700
    assert [mode(path) for path in store_files(data_dir)] == [0o600] * 3


async def test_an_old_data_dir_and_store_are_tightened_at_start(tmp_path, gateway_factory, caplog):
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    old = sqlite3.connect(data_dir / "pyuse.db")  # as an older version left it: WAL files open, default modes
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE t (x)")
    for path in store_files(data_dir):
        path.chmod(0o644)
    caplog.set_level(logging.INFO)

    try:
        await gateway_factory(make_config(tmp_path))
    finally:
        old.close()

    assert mode(data_dir) == 0o700
    assert [mode(path) for path in store_files(data_dir) if path.exists()] == [0o600] * 3
    assert any(f"{data_dir} was mode 755; now 700" in record.getMessage() for record in caplog.records)


async def test_a_shared_data_dir_is_refused_not_changed(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    config = make_config(tmp_path, gateway={"data_dir": str(shared)})

    with pytest.raises(ConfigError) as error:
        await Gateway(config, "pyuse.toml").start()

    assert str(error.value).startswith(f"pyuse.toml: gateway.data_dir: {shared} is writable by every user")
    assert mode(shared) == 0o1777 and not (shared / "pyuse.db").exists()


async def test_the_api_token_is_private(tmp_path, gateway_factory):
    gateway = await gateway_factory(make_config(tmp_path))
    data_dir = gateway.config.gateway.data_dir

    load_or_create_token(data_dir)

    assert (mode(data_dir), mode(data_dir / TOKEN_FILE)) == (0o700, 0o600)


def config_file(tmp_path: Path, body: str, file_mode: int) -> Path:
    path = tmp_path / "pyuse.toml"
    path.write_text(f'[gateway]\ndata_dir = "{tmp_path / "data"}"\n[discovery]\nmdns = false\n{body}')
    path.chmod(file_mode)
    return path


@pytest.mark.parametrize("body, file_mode, warned", [
    ('[llm]\napi_key = "sk-test"\n', 0o644, "llm.api_key"),
    ('[mqtt]\npassword = "secret"\n', 0o640, "mqtt.password"),
    ('[llm]\napi_key = "sk-test"\n', 0o600, None),
    ('[llm]\nmodel = "m"\n', 0o644, None),  # no secret in it
])
async def test_a_config_file_with_a_secret_others_can_read_gets_one_warning(tmp_path, gateway_factory, caplog,
                                                                           body, file_mode, warned):
    path = config_file(tmp_path, body, file_mode)
    caplog.set_level(logging.WARNING)

    await gateway_factory(load_config(path, env={}))

    lines = [record.getMessage() for record in caplog.records if "chmod 600" in record.getMessage()]
    if warned is None:
        assert lines == []
    else:
        assert lines == [(f"{path} holds {warned} and other users can read it (mode {file_mode:03o}); "
                          f"run `chmod 600 {path}`")]


def test_a_key_from_the_environment_is_not_the_files_secret(tmp_path):
    path = config_file(tmp_path, '[llm]\nmodel = "m"\n', 0o644)

    config = load_config(path, env={"OPENAI_API_KEY": "sk-from-env"})

    assert config.llm.api_key.get_secret_value() == "sk-from-env" and config.warnings == []
