"""A scripted OpenAI-compatible server: test equipment, not intelligence.

It replays replies from a script so that the real `openai` client and the real agent loop run over HTTP in
tests and demos. A script (TOML file or dict):

    model = "scripted"          # the only model it serves
    delay_s = 0.0               # wait before each reply (simulates a slow model)
    api_key = ""                # when set, requests without this bearer token get 401
    transcript = ""             # what POST /v1/audio/transcriptions answers for any audio

    [[conversations]]
    match = "turn on the plug"  # case-insensitive substring of the task (the latest user message, not an
                                # observation, that holds one of the script's matches)
    errors = [500, 500]         # status codes answered, in order, before any reply of this conversation
    replies = ["...turn 1...", "...turn 2..."]   # reply N answers a request holding N-1 assistant messages
                                                 # after the task

Replies are cut at the request's stop sequences, as a real server does. Streaming (SSE, with a usage chunk
when asked) and plain responses are both served, as are `GET /v1/models`, `POST /v1/audio/transcriptions`
(the script's transcript) and `GET /_stats` (request counts).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web


@dataclass
class Conversation:
    match: str
    replies: list[str]
    errors: list[int] = field(default_factory=list)
    requests: int = 0


class ScriptedLLM:
    def __init__(self, script: dict[str, Any] | Path) -> None:
        if isinstance(script, Path):
            script = tomllib.loads(script.read_text(encoding="utf-8"))
        self.model: str = script.get("model", "scripted")
        self.delay_s: float = float(script.get("delay_s", 0.0))
        self.api_key: str = script.get("api_key", "")
        self.transcript: str = script.get("transcript", "")
        self.audio: list[bytes] = []
        self.conversations = [Conversation(c["match"].casefold(), list(c.get("replies", [])),
                                           list(c.get("errors", []))) for c in script.get("conversations", [])]
        self.requests: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/audio/transcriptions", self._transcribe)
        app.router.add_get("/_stats", self._stats)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://{host}:{bound}/v1"
        return self.base_url

    async def close(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    def _find(self, messages: list[dict[str, Any]]) -> tuple[Conversation | None, int]:
        """The conversation whose `match` the latest user message that says one holds, and where that message is.

        Observations are skipped, and so is a message nothing matches (a worked example before the task, a note
        after it), so a script follows its task however the prompt frames it."""
        asked = [(index, str(message.get("content", "")).casefold()) for index, message in enumerate(messages)
                 if message.get("role") == "user" and not str(message.get("content", "")).startswith("Observation")]
        for index, text in reversed(asked):
            found = next((c for c in self.conversations if c.match in text), None)
            if found is not None:
                return found, index
        return None, asked[-1][0] if asked else -1

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "The request body is not valid JSON.", "invalid_json")
        self.requests.append(body)
        if self.api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        if body.get("model") != self.model:
            return _error(404, f"The model `{body.get('model')}` does not exist.", "model_not_found")
        messages = body.get("messages", [])
        conversation, task_index = self._find(messages)
        if conversation is not None:
            conversation.requests += 1
            if conversation.errors:
                status = conversation.errors.pop(0)
                return _error(status, f"scripted failure {status}", "scripted_error")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        turn = sum(1 for m in messages[task_index + 1:] if m.get("role") == "assistant")
        text = self._reply(conversation, turn)
        for stop in body.get("stop") or []:
            if stop and stop in text:
                text = text[:text.index(stop)]
        prompt_tokens = sum(len(str(m.get("content", ""))) for m in messages) // 4
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(text) // 4,
                 "total_tokens": prompt_tokens + len(text) // 4}
        if body.get("stream"):
            return await self._stream(request, text, usage, bool((body.get("stream_options") or {})
                                                                .get("include_usage")))
        return web.json_response({
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": int(time.time()),
            "model": self.model, "usage": usage,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}]})

    def _reply(self, conversation: Conversation | None, turn: int) -> str:
        if conversation is None:
            return "FINAL ANSWER: [scripted model] no script matches this task."
        if turn >= len(conversation.replies):
            return f"FINAL ANSWER: [scripted model] the script has no reply for turn {turn + 1}."
        return conversation.replies[turn]

    async def _stream(self, request: web.Request, text: str, usage: dict[str, int],
                      include_usage: bool) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        chunk_id = f"chatcmpl-{len(self.requests)}"

        async def send(choices: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> None:
            payload = {"id": chunk_id, "object": "chat.completion.chunk", "created": int(time.time()),
                       "model": self.model, "choices": choices, **(extra or {})}
            await response.write(f"data: {json.dumps(payload)}\n\n".encode())

        await send([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        for start in range(0, len(text), 16):
            await send([{"index": 0, "delta": {"content": text[start:start + 16]}, "finish_reason": None}])
        await send([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        if include_usage:
            await send([], {"usage": usage})
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _transcribe(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form.get("file")
        if not isinstance(upload, web.FileField):
            return _error(400, "send the audio as the multipart field 'file'", "invalid_request")
        self.audio.append(upload.file.read())
        return web.json_response({"text": self.transcript})

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.model, "object": "model", "created": 0, "owned_by": "pyuse-scripted"}]})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": len(self.requests),
                                  "conversations": {c.match: c.requests for c in self.conversations}})


def _error(status: int, message: str, code: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "invalid_request_error", "code": code}},
                             status=status)


def main() -> None:
    parser = argparse.ArgumentParser(description="Scripted OpenAI-compatible server (test equipment).")
    parser.add_argument("script", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    async def serve() -> None:
        server = ScriptedLLM(args.script)
        print(f"scripted model {server.model!r} at {await server.start(args.host, args.port)}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
