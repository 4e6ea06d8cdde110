"""`pyuse run` as a real process: a non-loopback bind needs the token; kill -9 loses nothing that finished."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from conftest import code_reply, tasmota_entry  # noqa: F401  (fixtures come from conftest)
from gateway.service_notify import notify
from gateway.transports.embedded_broker import free_port
from simulators.base import SimContext
from simulators.tasmota import TasmotaPlug

PYUSE = [sys.executable, "-m", "gateway"]


async def start_daemon(args: list[str], env: dict[str, str]) -> tuple[asyncio.subprocess.Process, list[str]]:
    """Start `pyuse run` and wait for its ready line; returns the process and its stdout lines so far."""
    process = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.DEVNULL, env={**os.environ, **env})
    lines = []
    async with asyncio.timeout(30):
        while not any("is running" in line for line in lines):
            line = (await process.stdout.readline()).decode()
            if not line:
                raise RuntimeError(f"pyuse run exited: {lines}")
            lines.append(line.strip())
    return process, lines


def in_namespace(namespace: str, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", namespace, *command], capture_output=True, text=True, timeout=30)


@pytest.fixture
def namespace():
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("needs root and iproute2 to create a private network namespace for a non-loopback address")
    name = f"pyuse-test-{os.getpid()}"
    # A non-loopback address on the namespace's own lo: real to the kernel, unreachable from anywhere else.
    setup = [["ip", "netns", "add", name], ["ip", "-n", name, "link", "set", "lo", "up"],
             ["ip", "-n", name, "addr", "add", "10.77.0.1/32", "dev", "lo"]]
    for command in setup:
        if subprocess.run(command, capture_output=True).returncode != 0:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            pytest.skip(f"cannot create a network namespace here ({' '.join(command)} failed)")
    yield name
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


async def test_a_non_loopback_bind_refuses_requests_without_the_token(tmp_path, namespace):
    """The address 10.77.0.1 exists only inside a namespace this test made: nothing leaves the machine."""
    env = {"PYUSE_GATEWAY_DATA_DIR": str(tmp_path), "PYUSE_API_HOST": "10.77.0.1", "PYUSE_API_PORT": "18321",
           "PYUSE_DISCOVERY_MQTT": "false", "PYUSE_API_MQTT_INTAKE": "false"}
    process, _ = await start_daemon(["ip", "netns", "exec", namespace, *PYUSE, "run"], env)
    try:
        announced = (await process.stdout.readline()).decode().strip()
        assert announced.startswith("API token (shown once")
        token = announced.rsplit(" ", 1)[1]
        assert (tmp_path / "api_token").read_text().strip() == token
        assert oct((tmp_path / "api_token").stat().st_mode & 0o777) == "0o600"
        probe = ("import urllib.request, urllib.error, sys\n"
                 "def status(headers):\n"
                 "    try:\n"
                 "        return urllib.request.urlopen(urllib.request.Request('http://10.77.0.1:18321/api/health',"
                 " headers=headers), timeout=5).status\n"
                 "    except urllib.error.HTTPError as e:\n"
                 "        return e.code\n"
                 f"print(status({{}}), status({{'Authorization': 'Bearer wrong'}}), "
                 f"status({{'Authorization': 'Bearer {token}'}}))")
        result = await asyncio.to_thread(in_namespace, namespace, sys.executable, "-c", probe)
        assert result.stdout.split() == ["401", "401", "200"], result.stderr
    finally:
        process.send_signal(signal.SIGTERM)
        await process.wait()


def api(data_dir: Path, base: str, path: str, body: dict | None = None) -> dict:
    """A call as a script on the machine makes it: with the token the daemon keeps in its data dir."""
    token = (data_dir / "api_token").read_text().strip()
    request = urllib.request.Request(f"{base}{path}", data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
                                     method="POST" if body else "GET")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


async def test_kill_9_during_a_task_loses_nothing_that_finished(tmp_path, scripted_llm, mqtt_broker):
    llm = await scripted_llm({"conversations": [
        {"match": "quick", "replies": [code_reply('devices["kitchen_kettle"]  # a lookup: the answer stands on it\n'
                                                  'final_answer("quick answer")')]},
        {"match": "slow", "replies": [code_reply("sleep(25)")]}]})
    port = free_port()
    config = tmp_path / "pyuse.toml"
    config.write_text(f'[gateway]\ndata_dir = "{tmp_path / "data"}"\n[llm]\nbase_url = "{llm.base_url}"\n'
                      f'model = "scripted"\n[api]\nport = {port}\n[mqtt]\nport = {mqtt_broker.port}\n[discovery]\nmdns = false\n'
                      '[sandbox]\nexec_timeout_s = 30\n')
    plug = TasmotaPlug("kettle", "tasmota_0A0B0C", name="Kitchen Kettle")
    await plug.start(SimContext(mqtt_port=mqtt_broker.port))
    base, data_dir = f"http://127.0.0.1:{port}", tmp_path / "data"
    process, _ = await start_daemon([*PYUSE, "run", "-c", str(config)], {})
    try:
        async with asyncio.timeout(10):
            while not await asyncio.to_thread(api, data_dir, base, "/api/devices"):
                await asyncio.sleep(0.1)
        quick = (await asyncio.to_thread(api, data_dir, base, "/api/tasks", {"text": "a quick one"}))["id"]
        async with asyncio.timeout(10):
            while (await asyncio.to_thread(api, data_dir, base, f"/api/tasks/{quick}"))["status"] != "done":
                await asyncio.sleep(0.1)
        slow = (await asyncio.to_thread(api, data_dir, base, "/api/tasks", {"text": "a slow one"}))["id"]
        async with asyncio.timeout(10):
            while not (await asyncio.to_thread(api, data_dir, base, f"/api/tasks/{slow}"))["steps"]:
                await asyncio.sleep(0.1)
    finally:
        process.kill()  # SIGKILL: no shutdown code runs
        await process.wait()
    await plug.stop()  # the device is gone too: what comes back must come from the store

    process, _ = await start_daemon([*PYUSE, "run", "-c", str(config)], {})
    try:
        assert (await asyncio.to_thread(api, data_dir, base, f"/api/tasks/{slow}"))["status"] == "interrupted"
        finished = await asyncio.to_thread(api, data_dir, base, f"/api/tasks/{quick}")
        assert (finished["status"], finished["answer"]) == ("done", "quick answer")
        devices = await asyncio.to_thread(api, data_dir, base, "/api/devices")
        assert [(device["id"], device["kind"]) for device in devices] == [("kitchen_kettle", "tasmota_plug")]
    finally:
        process.send_signal(signal.SIGTERM)
        assert await process.wait() == 0
    assert not Path(f"/proc/{process.pid}").exists()


def receive_notification(listener: socket.socket) -> tuple[str, int]:
    """One sd_notify datagram and the pid the kernel vouches sent it (systemd heeds only the unit's main pid)."""
    data, ancillary, _, _ = listener.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("3i")))
    credentials = [item for level, kind, item in ancillary
                   if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS)]
    return data.decode(), struct.unpack("3i", credentials[0])[0]


async def test_a_service_manager_hears_ready_once_the_api_serves_and_stopping_on_sigterm(tmp_path):
    """What systemd's Type=notify (deploy/pyuse.service) relies on, with a real datagram socket in its place."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "notify"))
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    listener.settimeout(60)  # a busy machine starts slowly
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "PYUSE_GATEWAY_DATA_DIR": str(tmp_path / "data"),
           "PYUSE_API_PORT": "0", "PYUSE_DISCOVERY_MQTT": "false", "PYUSE_DISCOVERY_MDNS": "false",
           "PYUSE_API_MQTT_INTAKE": "false"}
    process = await asyncio.create_subprocess_exec(*PYUSE, "run", stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.DEVNULL, env={**os.environ, **env},
                                                   cwd=tmp_path)
    try:
        ready, sender = await asyncio.to_thread(receive_notification, listener)
        assert sender == process.pid
        assert ready.startswith("READY=1\nSTATUS=serving http://127.0.0.1:"), ready
        base = ready.rsplit(" ", 1)[1].rstrip("/")
        assert (await asyncio.to_thread(api, tmp_path / "data", base, "/api/health"))  # it serves already
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(receive_notification, listener) == ("STOPPING=1", process.pid)
        assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        listener.close()


def test_notify_reaches_an_abstract_socket_and_is_quiet_without_a_manager(tmp_path):
    name = f"pyuse-test-notify-{os.getpid()}-{tmp_path.name}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        listener.settimeout(5)
        assert notify("READY=1", env={"NOTIFY_SOCKET": f"@{name}"})
        assert listener.recv(64) == b"READY=1"
    assert not notify("READY=1", env={})
    assert not notify("READY=1", env={"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})


def test_the_service_unit_passes_systemd_analyze_verify(tmp_path):
    """deploy/pyuse.service as systemd reads it, with ExecStart at this environment's pyuse (verify wants it to
    exist); and none of the options that would take from the sandbox what it needs."""
    pyuse_binary = Path(sys.executable).parent / "pyuse"
    if shutil.which("systemd-analyze") is None or not pyuse_binary.exists():
        pytest.skip("needs systemd-analyze (apt-get install systemd) and an installed pyuse")
    unit = (Path(__file__).parent.parent / "deploy" / "pyuse.service").read_text()
    settings = [line for line in unit.splitlines() if line and not line.startswith("#")]
    assert {"Type=notify", "User=pyuse", "StateDirectory=pyuse"} <= set(settings)
    assert any(line.startswith("LimitNOFILE=") for line in settings)
    assert not [line for line in settings if line.startswith(("RestrictNamespaces=", "SystemCallFilter=",
                                                              "PrivateDevices=", "PrivateNetwork="))]
    copy = tmp_path / "pyuse.service"
    copy.write_text(unit.replace("ExecStart=/opt/pyuse/.venv/bin/pyuse", f"ExecStart={pyuse_binary}"))
    assert f"ExecStart={pyuse_binary} run" in copy.read_text()
    result = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr, result.stderr
