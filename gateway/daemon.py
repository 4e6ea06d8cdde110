"""`pyuse run`: the gateway as a long-running service with its HTTP API, web page, MQTT command topic and
automations.

Shuts down in order on SIGINT or SIGTERM: automations stop, running and queued tasks are cancelled (and marked
so), jobs are killed, the API stops, and the MQTT connection closes after publishing the gateway's offline
status. Under a service manager (systemd's `Type=notify`) it reports READY=1 once the API serves and STOPPING=1
as it begins to stop.

Before anything else it raises the soft open-file limit and starts logging repeated errors once a minute, so that
a flood of connections is turned away (gateway/api/limits.py) rather than taking the gateway down with it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal

from gateway.api.auth import Access, load_or_create_token
from gateway.api.limits import Limits, RepeatedErrors, raise_open_file_limit
from gateway.api.homeassistant import HomeAssistant
from gateway.api.mqtt_intake import MqttIntake
from gateway.api.server import ApiServer
from gateway.api.voice import Transcriber
from gateway.app import Gateway
from gateway.automations import Automations
from gateway.config import Config, ConfigError
from gateway.runner import TaskRunner
from gateway.service_notify import notify

log = logging.getLogger(__name__)


class Daemon:
    def __init__(self, config: Config, source: str = "defaults", any_port_if_taken: bool = False) -> None:
        """`any_port_if_taken`: when [api] port is in use, serve on any free one (the demo) instead of failing."""
        self.config = config
        self.any_port_if_taken = any_port_if_taken
        self.gateway = Gateway(config, source, role="daemon")
        self.runner: TaskRunner | None = None
        self.automations: Automations | None = None
        self.server: ApiServer | None = None
        self.intake: MqttIntake | None = None
        self.home_assistant: HomeAssistant | None = None
        self.access: Access | None = None
        self.token_created = False
        self.repeated_errors = RepeatedErrors()

    async def start(self) -> None:
        config = self.config
        for handler in logging.getLogger().handlers:
            handler.addFilter(self.repeated_errors)
        log.debug("open-file limit: %d", raise_open_file_limit())
        await self.gateway.start()
        self.runner = TaskRunner(self.gateway, config.api.max_concurrent_tasks, config.api.max_queued_tasks)
        self.runner.start_watchdog()
        token, self.token_created = load_or_create_token(config.gateway.data_dir)
        self.access = Access.for_bind(config.api.host, token, tuple(config.api.names))
        self.automations = Automations(self.gateway, self.runner)
        await self.automations.start()
        try:
            self.server = await self._serve(config.api.port)
        except OSError as exc:
            if not (self.any_port_if_taken and exc.errno == errno.EADDRINUSE):
                raise ConfigError([listen_problem(self.gateway.config_source, config.api.host, config.api.port,
                                                  exc)]) from None
            self.server = await self._serve(0)  # free a moment ago, taken since: a demo starting alongside
        if config.api.mqtt_intake:
            self.intake = MqttIntake(self.gateway.mqtt, self.runner, config.gateway.id)
            await self.intake.start()
        if config.homeassistant.discovery:
            self.home_assistant = HomeAssistant(self.gateway.mqtt, self.runner, config.gateway.id,
                                                config.homeassistant.prefix or config.discovery.ha_prefix)
            await self.home_assistant.start()
        log.info("ready: web page and API at %s; sandbox layers: %s", self.server.url,
                 ", ".join(self.gateway.health().sandbox_layers) or "none")

    async def _serve(self, port: int) -> ApiServer:
        assert self.runner is not None and self.automations is not None and self.access is not None
        api = self.config.api
        server = ApiServer(self.runner, self.automations, api.host, port, self.access, Transcriber(self.config.stt),
                           Limits(api.max_connections, api.max_event_streams))
        try:
            await server.start()
        except OSError:
            await server.close()
            raise
        return server

    async def close(self) -> None:
        if self.automations:
            await self.automations.close()
        if self.runner:
            await self.runner.close()
        if self.intake:
            self.intake.stop()
        if self.home_assistant:
            self.home_assistant.stop()
        if self.server:
            await self.server.close()
        await self.gateway.close()
        for handler in logging.getLogger().handlers:
            handler.removeFilter(self.repeated_errors)

    @property
    def token_to_show(self) -> str | None:
        """The token, printed once when it was just made and the page cannot be given it (a non-loopback bind):
        the person pastes it into the page. Local scripts and the CLI read the file instead."""
        if self.access is None or not self.token_created or self.access.page_gets_token:
            return None
        return self.access.token


def listen_problem(source: str, host: str, port: int, exc: OSError) -> str:
    """Why the API cannot listen, as a config error line naming the key to change."""
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        origin = "PYUSE_API_PORT (environment)" if os.environ.get("PYUSE_API_PORT") else source
        return (f"{origin}: api.port: {address} is in use by another program (or another gateway); set [api] "
                "port to a free port, or 0 for any free one")
    origin = "PYUSE_API_HOST (environment)" if os.environ.get("PYUSE_API_HOST") else source
    reason = os.strerror(exc.errno).lower() if exc.errno and exc.errno > 0 else exc.strerror or str(exc)
    return (f"{origin}: api.host: cannot listen on {address} ({reason}); set [api] host to an address of this "
            "machine, such as 127.0.0.1")


async def run_daemon(config: Config, source: str) -> int:
    daemon = Daemon(config, source)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await daemon.start()
        assert daemon.server is not None
        print(f"pyuse gateway {config.gateway.id!r} is running: {daemon.server.url}/", flush=True)
        if daemon.token_to_show:
            print(f"API token (shown once; `pyuse token` prints it again): {daemon.token_to_show}", flush=True)
        notify(f"READY=1\nSTATUS=serving {daemon.server.url}/")  # systemd's Type=notify (deploy/pyuse.service)
        await stop.wait()
        log.info("stopping")
        notify("STOPPING=1")
    finally:
        await daemon.close()
    return 0
