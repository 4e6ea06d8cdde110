"""Issue 15: `pyuse demo` is a sealed world (a simulator that cannot start is one line saying why, and nothing of
the demo stays in the user's data dir), and the terminal says what happens as answers: a retry once, counted."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from conftest import make_config

import gateway.demo


async def test_a_simulator_that_cannot_start_is_one_line_naming_it_and_why(tmp_path, monkeypatch, capsys):
    @contextlib.asynccontextmanager
    async def failing_home(*args: Any, **kwargs: Any) -> AsyncIterator[None]:
        raise RuntimeError("kitchen_counter_lights (wled_strip) did not start: [Errno 98] address already in use")
        yield

    monkeypatch.setattr(gateway.demo, "running_home", failing_home)
    config = make_config(tmp_path, api={"port": 0})

    code = await gateway.demo.run_demo(config)

    assert code == 1
    err = capsys.readouterr().err
    assert err == ("pyuse demo: kitchen_counter_lights (wled_strip) did not start: [Errno 98] address already in "
                   "use\n")
    assert not config.gateway.data_dir.exists()  # the user's data dir was never touched


async def test_a_model_retry_is_shown_once_at_the_console_with_its_count(tmp_path, scripted_llm, gateway_factory,
                                                                          caplog):
    import io
    import logging

    from conftest import code_reply

    from gateway.console import TracePrinter

    llm = await scripted_llm({"conversations": [{"match": "flaky", "errors": [500, 500],
                                                  "replies": [code_reply('final_answer("third time lucky")')]}]})
    gateway = await gateway_factory(make_config(tmp_path, llm, llm={"max_retries": 3}))
    console = io.StringIO()

    with caplog.at_level(logging.WARNING):
        result = await gateway.run_task("a flaky model", on_event=TracePrinter(console))

    assert result.status == "done", result.error
    shown = [line for line in console.getvalue().splitlines() if "model call failed" in line]
    assert [line.split("; ")[1].split(" in ")[0] for line in shown] == ["retry 1 of 3", "retry 2 of 3"]
    assert not [record for record in caplog.records if "model call failed" in record.getMessage()]  # not twice


def test_a_demo_ending_leaves_the_link_of_a_demo_started_after_it(tmp_path):
    """Two demos for one user: the first to end must not take away the file through which the CLI reaches the
    other."""
    import json

    from gateway.demo_link import DEMO_FILE, announced

    user = tmp_path / "user"
    first, second = announced(user, tmp_path / "first", 1001), announced(user, tmp_path / "second", 1002)
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert json.loads((user / DEMO_FILE).read_text())["port"] == 1002
    second.__exit__(None, None, None)
    assert not (user / DEMO_FILE).exists()
