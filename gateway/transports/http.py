"""The gateway's one aiohttp ClientSession, used for every HTTP device call.

Redirects are never followed: a device answering 3xx could otherwise send the gateway's own request, made with
the gateway's network access, to any address (the gateway's API, another device, a LAN admin page). A 3xx is an
unsuccessful reply whose body says where the device pointed, so the caller's error names the status and Location.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

MAX_BODY = 1 << 20
LOCATION_LIMIT = 300  # device-supplied text in an error message


@dataclass
class HttpReply:
    status: int
    body: Any  # parsed JSON when the body is JSON, else text

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class HttpTransport:
    def __init__(self, timeout_s: float = 10.0) -> None:
        self.timeout_s = timeout_s  # a call's limit unless it gives its own
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # trust_env=False: device traffic stays on the LAN even when a proxy is set for the model's endpoint.
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            connector=aiohttp.TCPConnector(limit_per_host=4),
            trust_env=False)

    async def close(self) -> None:
        if self._session:
            await self._session.close()

    async def request(self, method: str, host: str, port: int, path: str, *, params: dict[str, Any] | None = None,
                      json_body: Any = None, timeout: float | None = None) -> HttpReply:
        assert self._session is not None, "HttpTransport.start() was not called"
        path, _, query = path.partition("?")
        url = URL.build(scheme="http", host=host, port=port, path=path, query_string=query)
        if params:
            url = url.update_query({key: _query_value(value) for key, value in params.items()})
        kwargs: dict[str, Any] = {}
        if json_body is not None:
            kwargs["json"] = json_body
        if timeout is not None:
            kwargs["timeout"] = aiohttp.ClientTimeout(total=timeout)
        try:
            async with self._session.request(method, url, allow_redirects=False, **kwargs) as response:
                if 300 <= response.status < 400:
                    return HttpReply(response.status, _redirect_note(response.headers.get("Location")))
                raw = bytearray()
                async for chunk in response.content.iter_chunked(1 << 16):
                    raw += chunk
                    if len(raw) > MAX_BODY:
                        raise ValueError(f"the device sent more than {MAX_BODY} bytes")
                return HttpReply(response.status, decode_body(bytes(raw)))
        except aiohttp.ClientError as exc:
            raise ConnectionError(f"{method} http://{host}:{port}{path}: {exc}") from exc


def _redirect_note(location: str | None) -> str:
    """What a refused redirect reply says instead of its body: where the device pointed, quoted and capped."""
    shown = repr(location[:LOCATION_LIMIT]) if location else "no Location"
    return f"a redirect to {shown}, not followed (device calls never follow redirects)"


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def decode_body(raw: bytes) -> Any:
    text = raw.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text
