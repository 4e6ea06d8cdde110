"""Every task ends (issue 12, item 1): whatever goes wrong inside a task, it ends `failed` with a one-line reason,
in the store, in the event stream and in the log. Log lines cannot be split or forged by the text they carry.

The surprises come from a real model server gone wrong (a tiny aiohttp server answering bodies that are not JSON,
or JSON of the wrong shape), through the real `openai` client, the daemon's task runner and its event stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from conftest import make_config, serve_app

from gateway.agent.loop import EMPTY_REPLY
from gateway.logs import OneLine

BROKEN_BODIES = {
    "not json": b"{not json",
    "json of the wrong shape": b'{"choices": 5}',
}


def broken_model(body: bytes) -> web.Application:
    """An OpenAI-compatible endpoint in name only: every reply, streamed or not, is `body`; b"endless" streams
    chunks of text until the client hangs up."""

    async def chat(request: web.Request) -> web.StreamResponse:
        if body == b"endless":
            return await endless(request)
        if (await request.json()).get("stream"):
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            await response.write(b"data: " + body + b"\n\n")
            return response
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


async def endless(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    chunk = b'data: {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": ' \
            b'[{"index": 0, "delta": {"content": "and so on "}, "finish_reason": null}]}\n\n'
    while True:  # until the client hangs up: then write() raises, or the handler is cancelled
        await response.write(chunk)
        await asyncio.sleep(0.001)


@pytest.fixture
async def model_server() -> AsyncIterator[Callable[[bytes], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(body: bytes) -> str:
        runner, port = await serve_app(broken_model(body))
        runners.append(runner)
        return f"http://127.0.0.1:{port}/v1"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("body", BROKEN_BODIES)
async def test_a_broken_model_reply_ends_the_task_failed_everywhere(tmp_path, model_server, daemon_factory, caplog,
                                                                    body, stream):
    url = await model_server(BROKEN_BODIES[body])
    daemon = await daemon_factory(make_config(tmp_path, llm={"base_url": url, "model": "m", "stream": stream,
                                                             "max_retries": 0}, agent={"fast_path": False}))
    caplog.set_level(logging.INFO)

    task = daemon.runner.submit("what time is it?", "api")
    events = [event async for event in task.follow()]

    finished = events[-1]
    assert finished.kind == "finished" and finished.data["status"] == "failed"
    error = finished.data["error"]
    if body == "not json":
        assert error.startswith(f"the model server at {url} sent a reply that is not valid JSON"), error
    else:
        assert error.startswith("unexpected TypeError"), error
    record = daemon.gateway.task(task.id)
    assert (record.status, record.error) == ("failed", error)
    assert record.finished_at is not None
    assert any(error in line.getMessage() for line in caplog.records if line.name == "gateway.task_run")
    if body != "not json":  # the unplanned case leaves its trace, at ERROR
        assert any(line.levelno == logging.ERROR and line.exc_info for line in caplog.records)


async def test_the_gateway_keeps_working_after_a_surprise(tmp_path, model_server, gateway_factory):
    url = await model_server(BROKEN_BODIES["json of the wrong shape"])
    gateway = await gateway_factory(make_config(tmp_path, llm={"base_url": url, "model": "m"}))

    first = await gateway.run_task("write me a poem")
    _, execution = await gateway.run_code("print(6 * 7)", "after the surprise")

    assert first.status == "failed" and execution.output == "42\n"
    assert [task.status for task in gateway.store.list_tasks(5)] == ["done", "failed"]


async def test_an_endless_streamed_reply_is_cut_at_max_tokens(tmp_path, model_server, gateway_factory, caplog):
    url = await model_server(b"endless")
    gateway = await gateway_factory(make_config(tmp_path, llm={"base_url": url, "model": "m", "max_tokens": 64}))
    started = time.monotonic()

    result = await gateway.run_task("tell me a story")

    assert time.monotonic() - started < 15
    assert result.status == "done" and 64 * 8 < len(result.answer) <= 64 * 8 + len("and so on ")
    assert any("past [llm] max_tokens = 64; the reply is cut there" in record.getMessage()
               for record in caplog.records)


async def test_a_reply_with_neither_code_nor_answer_is_not_done(tmp_path, scripted_llm, gateway_factory):
    llm = await scripted_llm({"conversations": [{"match": "what is six times seven", "replies": [
        "```python\n```", "  ...  ", "FINAL ANSWER: 42"]}]})
    gateway = await gateway_factory(make_config(tmp_path, llm))

    result = await gateway.run_task("what is six times seven?")

    assert (result.status, result.answer, result.turns) == ("done", "42", 3)
    assert [step.observation for step in gateway.store.steps(result.task_id)] == [EMPTY_REPLY, EMPTY_REPLY, None]


def log_line(message: str, *args: object, as_json: bool = False, exc_info: object = None) -> str:
    record = logging.LogRecord("gateway.app", logging.ERROR, __file__, 1, message, args, exc_info)
    return OneLine(as_json).format(record)


@pytest.mark.parametrize("as_json", [False, True])
def test_a_log_line_cannot_be_split_or_rewritten_by_the_text_it_carries(as_json):
    line = log_line("task from %s: %s", "api", "turn on\r\x1b[2K\x1b[1A2026 INFO all good\n\x00\x9b", as_json=as_json)

    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\x00" not in line
    assert "\x9b" not in line
    assert "turn on" in line


def test_a_traceback_in_the_log_is_capped():
    def deep(depth: int) -> None:
        if depth:
            deep(depth - 1)
        raise ValueError("x" * 20_000)

    try:
        deep(50)
    except ValueError:
        import sys

        line = log_line("failed", exc_info=sys.exc_info())
    assert len(line) < 5000 and "characters of traceback left out" in line and line.endswith("x" * 100)
