"""A client for a running `pyuse run`'s HTTP API, for the commands that act on the daemon (automations).

It reads the API token from the data dir (the daemon made it there, mode 600) and sends it as a bearer header,
so the CLI works wherever the daemon listens, with no step of its own.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from gateway.api.auth import TOKEN_FILE, read_token
from gateway.config import Config


class DaemonUnavailable(Exception):
    """Nothing answers at the configured API address; the message says how to start it."""


class RemoteError(Exception):
    """The daemon answered with an error; the message is its own."""


class DaemonClient:
    def __init__(self, config: Config) -> None:
        host = config.api.host
        connect_to = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else
                                                                   f"[{host}]" if ":" in host else host)
        self.base_url = f"http://{connect_to}:{config.api.port}"
        self.token_path = config.gateway.data_dir / TOKEN_FILE
        try:
            token = read_token(config.gateway.data_dir)
        except PermissionError:  # the daemon runs as another user: the 401 below says where the token is
            token = None
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            async with aiohttp.ClientSession(trust_env=False, timeout=aiohttp.ClientTimeout(total=30)) as session:
                async with session.request(method, self.base_url + path, json=body, headers=self.headers) as reply:
                    data = await reply.json(content_type=None)
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise DaemonUnavailable(f"no gateway answers at {self.base_url} ({exc.__class__.__name__}); automations "
                                    "run in the daemon: start it with `pyuse run`") from None
        if reply.status == 401:
            raise RemoteError(f"the gateway at {self.base_url} refused the API token in {self.token_path}"
                              f"{'' if self.headers else ' (none could be read)'}: use the same config (data_dir) as "
                              "`pyuse run`, and restart the daemon after `pyuse token --rotate`")
        if reply.status >= 400:
            error = (data or {}).get("error", {}) if isinstance(data, dict) else {}
            raise RemoteError(error.get("message") or f"HTTP {reply.status}")
        return data
