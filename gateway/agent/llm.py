"""The model client: any OpenAI-compatible endpoint (OpenAI, DeepSeek, Ollama, llama.cpp, vLLM) through the
official `openai` package.

Retries with exponential backoff on 429, 5xx, timeouts and refused connections (the library's own retries are
off so that every attempt is visible); 401 and 404 fail at once with a message saying what to fix.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from gateway.agent.tokens import estimate_tokens
from gateway.config import LLMSection
from gateway.errors import GatewayError

log = logging.getLogger(__name__)


def _openai() -> ModuleType:
    """The openai package, imported on first use: it takes half a second, which commands without a model
    (pyuse tasks, exec, doctor, devices) should not pay."""
    return importlib.import_module("openai")

BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 20.0
# A streamed reply longer than [llm] max_tokens at this many characters a token comes from a server that ignores
# max_tokens (or never stops): it is cut there, so one turn cannot run until the task's timeout.
CHARS_PER_TOKEN_CAP = 8


class LLMError(GatewayError):
    """The model could not be used; the message says why and what to change."""


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    duration_ms: float
    usage_estimated: bool = False
    attempts: int = 1


DeltaCallback = Callable[[str], None]
RetryCallback = Callable[[int, float, str], None]


class LLMClient:
    def __init__(self, settings: LLMSection) -> None:
        if not settings.configured:
            raise LLMError(NOT_CONFIGURED)
        self.settings = settings
        openai = _openai()
        self._client = openai.AsyncOpenAI(
            base_url=settings.base_url,
            api_key=settings.api_key.get_secret_value() or "unused",
            timeout=settings.timeout_s,
            max_retries=0)

    async def close(self) -> None:
        await self._client.close()

    async def complete(self, messages: list[dict[str, str]], stop: list[str] | None = None,
                       on_delta: DeltaCallback | None = None, on_retry: RetryCallback | None = None) -> Completion:
        openai = _openai()
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                completion = await self._once(messages, stop, on_delta)
                completion.duration_ms = round((time.perf_counter() - started) * 1000, 1)
                completion.attempts = attempt
                return completion
            except openai.AuthenticationError as exc:
                raise LLMError(f"the model server at {self.settings.base_url} rejected the API key (401). "
                               "Set [llm] api_key in the config or OPENAI_API_KEY in the environment.") from exc
            except openai.NotFoundError as exc:
                raise LLMError(f"not found at {self.settings.base_url} (404): the model {self.settings.model!r} "
                               "does not exist there, or base_url lacks its /v1 suffix. Check [llm] model and "
                               f"[llm] base_url.{await self._available_models()}") from exc
            except (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError,
                    openai.APIConnectionError) as exc:
                if attempt > self.settings.max_retries:
                    raise LLMError(f"the model server at {self.settings.base_url} failed {attempt} time(s); "
                                   f"last error: {_describe(exc)}") from exc
                delay = _retry_delay(exc, attempt)
                # Whoever gave on_retry shows the retry (the terminal, the page): a warning too would say it twice.
                log.log(logging.INFO if on_retry else logging.WARNING, "model call failed (%s); retry %d of %d in "
                        "%.1f s", _describe(exc), attempt, self.settings.max_retries, delay)
                if on_retry:
                    on_retry(attempt, delay, _describe(exc))
                await asyncio.sleep(delay)
            except openai.APIStatusError as exc:
                raise LLMError(f"the model server at {self.settings.base_url} answered {_describe(exc)}") from exc
            except json.JSONDecodeError as exc:  # a proxy's error page, a broken server
                raise LLMError(f"the model server at {self.settings.base_url} sent a reply that is not valid JSON "
                               f"({exc}); check [llm] base_url points at an OpenAI-compatible /v1 endpoint") from exc

    async def _once(self, messages: list[dict[str, str]], stop: list[str] | None,
                    on_delta: DeltaCallback | None) -> Completion:
        request: dict[str, Any] = {"model": self.settings.model, "messages": messages,
                                   "temperature": self.settings.temperature,
                                   "max_tokens": self.settings.max_tokens}
        if stop:
            request["stop"] = stop
        if not self.settings.stream:
            response = await self._client.chat.completions.create(**request)
            text = (response.choices[0].message.content or "") if response.choices else ""
            return _with_usage(text, messages, response.usage)
        stream = await self._client.chat.completions.create(
            **request, stream=True, stream_options={"include_usage": True})
        parts: list[str] = []
        usage = None
        size, limit = 0, self.settings.max_tokens * CHARS_PER_TOKEN_CAP
        async with stream:  # leaving it early closes the connection
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage
                if chunk.choices and chunk.choices[0].delta.content:
                    delta = chunk.choices[0].delta.content
                    parts.append(delta)
                    size += len(delta)
                    if on_delta:
                        on_delta(delta)
                    if size > limit:
                        log.warning("the model server at %s streamed more than %d characters, past [llm] max_tokens "
                                    "= %d; the reply is cut there", self.settings.base_url, limit,
                                    self.settings.max_tokens)
                        break
        return _with_usage("".join(parts), messages, usage)

    async def list_models(self, timeout_s: float = 5.0) -> list[str]:
        openai = _openai()
        try:
            async with asyncio.timeout(timeout_s):
                models = await self._client.models.list()
        except TimeoutError:
            raise LLMError(f"{self.settings.base_url} did not list its models within {timeout_s:g} s") from None
        except openai.APIError as exc:
            raise LLMError(f"{self.settings.base_url}: {_describe(exc)}") from exc
        return [model.id for model in models.data]

    async def _available_models(self) -> str:
        try:
            names = (await self.list_models())[:20]
        except LLMError:  # only decorates an error message
            return ""
        return f" Models there: {', '.join(names)}." if names else ""


def _with_usage(text: str, messages: list[dict[str, str]], usage: Any) -> Completion:
    if usage is not None and usage.prompt_tokens is not None:
        return Completion(text, usage.prompt_tokens, usage.completion_tokens or 0, 0.0)
    prompt = sum(estimate_tokens(message["content"]) for message in messages)
    return Completion(text, prompt, estimate_tokens(text), 0.0, usage_estimated=True)


def _retry_delay(exc: Exception, attempt: int) -> float:
    response = getattr(exc, "response", None)
    header = response.headers.get("retry-after") if response is not None else None
    if header:
        try:
            return min(float(header), BACKOFF_MAX_S)
        except ValueError:
            pass
    return min(BACKOFF_BASE_S * 2.0 ** (attempt - 1), BACKOFF_MAX_S) * random.uniform(0.8, 1.2)


def _describe(exc: Exception) -> str:
    openai = _openai()
    if isinstance(exc, openai.APIStatusError):
        message = exc.message if len(exc.message) < 300 else exc.message[:300] + "..."
        return f"HTTP {exc.status_code}: {message}"
    if isinstance(exc, openai.APITimeoutError):
        return "timed out"
    if isinstance(exc, openai.APIConnectionError):
        return f"cannot connect ({exc.__cause__ or exc})"
    return str(exc)


NOT_CONFIGURED = """no model is configured. Point pyuse at any OpenAI-compatible endpoint, in pyuse.toml:
    [llm]
    base_url = "http://127.0.0.1:11434/v1"   # Ollama; llama.cpp: http://127.0.0.1:8080/v1
    model = "qwen2.5-coder:7b"
    # api_key = "..."                         # OpenAI, DeepSeek, or any server that wants one
or with environment variables: PYUSE_LLM_BASE_URL=... PYUSE_LLM_MODEL=... (and OPENAI_API_KEY=...)."""
