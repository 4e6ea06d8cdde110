"""The `pyuse` command as a user runs it: a real process against real simulators and the scripted model."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

from conftest import code_reply

from simulators.scenario import load_scenario

PYUSE = [sys.executable, "-m", "gateway"]


async def pyuse(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None,
                cwd: Path | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *PYUSE, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, **(env or {})}, cwd=cwd)
    out, err = await asyncio.wait_for(process.communicate(stdin), 60)
    return process.returncode, out.decode(), err.decode()


def write_config(tmp_path: Path, base_url: str, extra: str = "") -> Path:
    path = tmp_path / "pyuse.toml"
    path.write_text(f'[gateway]\ndata_dir = "{tmp_path / "data"}"\n\n[llm]\nbase_url = "{base_url}"\n'
                    f'model = "scripted"\n{extra}')
    return path


async def test_ask_json_prints_one_json_object_last_and_exits_zero(tmp_path, scripted_llm, shelly):
    llm = await scripted_llm({"conversations": [{"match": "what it draws", "replies": [
        code_reply('devices["desk_plug"].rpc("Switch.Set", id=0, on=True)\nprint("switched")'),
        "FINAL ANSWER: The desk plug is on."]}]})
    config = write_config(tmp_path, llm.base_url, f'\n[[devices]]\nid = "desk_plug"\nname = "Desk Plug"\n'
                                                  f'kind = "shelly_switch"\nhost = "{shelly.host}"\n'
                                                  f'port = {shelly.port}\n')

    code, out, err = await pyuse("ask", "switch on the desk plug and tell me what it draws", "-c", str(config),
                                 "--json")

    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert set(summary) == {"task_id", "status", "answer", "turns", "tokens", "calls", "duration_ms"}
    assert summary["status"] == "done" and summary["answer"] == "The desk plug is on." and summary["turns"] == 2
    assert summary["tokens"] > 0 and summary["duration_ms"] > 0
    assert shelly.output is True
    assert '│ devices["desk_plug"].rpc("Switch.Set", id=0, on=True)' in err  # the trace went to stderr
    assert "→ switched" in err

    code, out, _ = await pyuse("tasks", "-c", str(config))
    assert code == 0 and summary["task_id"] in out and "done" in out
    code, out, _ = await pyuse("tasks", summary["task_id"][:6], "-c", str(config))
    assert code == 0
    assert "── turn 1 ──" in out and "→ switched" in out
    assert "desk_plug.rpc Switch.Set → ok" in out
    assert "answer: The desk plug is on." in out


async def test_ask_shows_each_turn_and_exits_nonzero_when_the_task_fails(tmp_path, scripted_llm):
    llm = await scripted_llm({"conversations": [{"match": "loop", "replies": [code_reply("print(1)")] * 3}]})
    config = write_config(tmp_path, llm.base_url, "\n[agent]\nmax_turns = 2\n")

    code, out, _ = await pyuse("ask", "loop for ever", "-c", str(config))

    assert code == 1
    assert out.count("── turn") == 2
    assert "task failed: no final answer after 2 turns ([agent] max_turns)" in out


async def test_ask_without_a_model_says_how_to_configure_one(tmp_path):
    code, _, err = await pyuse("ask", "hello", env={"PYUSE_GATEWAY_DATA_DIR": str(tmp_path)}, cwd=tmp_path)

    assert code == 2
    assert "no model is configured" in err and "[llm]" in err and "PYUSE_LLM_BASE_URL" in err


async def test_a_bad_config_exits_with_one_line_per_problem(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[llm]\ntimeout_s = "soon"\nbase_url = "localhost:8080"\n\n[sandbox]\nmemroy_mb = 5\n\n'
                      '[[devices]]\nname = "Lamp"\nkind = "shelly_switch"\nport = 99999\n')

    code, _, err = await pyuse("ask", "x", "-c", str(config), env={"PYUSE_AGENT_MAX_TURNS": "lots"})

    lines = err.strip().splitlines()
    assert code == 2
    assert len(lines) == 5, err
    assert f"config error: {config}: llm.base_url: expected an http:// or https:// URL such as http://127.0.0.1:11434/v1, got 'localhost:8080'" in err
    assert f"config error: {config}: llm.timeout_s: input should be a valid number" in err
    assert f"config error: {config}: sandbox.memroy_mb: unknown key (did you mean 'memory_mb'?)" in err
    assert f"config error: {config}: devices[0].port: input should be less than or equal to 65535" in err
    assert "config error: PYUSE_AGENT_MAX_TURNS (environment): agent.max_turns: input should be a valid integer" \
        in err


async def test_an_unknown_device_kind_is_a_config_error_naming_the_entry(tmp_path, scripted_llm):
    llm = await scripted_llm({"conversations": []})
    config = write_config(tmp_path, llm.base_url, '\n[[devices]]\nname = "Heater"\nkind = "space_heater"\n')

    code, _, err = await pyuse("ask", "x", "-c", str(config))

    assert code == 2
    assert f"{config}: devices[0].kind: unknown device kind 'space_heater'" in err
    assert "shelly_switch" in err


async def test_demo_without_a_model_runs_the_home_and_lab_and_finds_their_devices(tmp_path):
    commands = ("devices\nstate\nprompt turn on the kitchen ceiling light\nturn on the kitchen ceiling light\n"
                "打开客厅的灯\nwhat is the temperature in the lab\nstate\nquit\n").encode()
    code, out, err = await pyuse("demo", env={"PYUSE_GATEWAY_DATA_DIR": str(tmp_path)}, stdin=commands,
                                 cwd=tmp_path)

    assert code == 0, err
    assert "MQTT broker on 127.0.0.1:" in out
    assert "Without a model, simple commands work" in out and "  turn off all the lights\n" in out  # help
    assert re.search(r"web page at http://127\.0\.0\.1:\d+/", out)
    listed = {device_id: (area, transport) for device_id, area, transport in
              re.findall(r"^(?:pyuse> )?  (\w+) +'.*' +\[(.*)\] \w+ \((\w+)\)$", out, re.MULTILINE)}
    # The gateway was given no MQTT device: it discovered them, under the scenario's ids and in their rooms.
    # The HTTP ones were found over mDNS on loopback; the instruments are declared on their serial ports.
    for spec in load_scenario("home").devices + load_scenario("lab").devices:
        transport = ("mqtt" if spec.kind.startswith(("zigbee_", "tasmota_"))
                     else "http" if spec.kind in ("shelly_switch", "wled_strip", "elgato_light") else "serial")
        assert listed.get(spec.id) == (spec.area, transport), spec.id
    assert "kitchen_coffee_machine     {'output': False" in out  # the simulators' own state
    # What the model would be sent: every device of the home and lab, each on one line, in a small prompt.
    size = re.search(r"===== about (\d+) tokens \(budget 3000\); 22 device\(s\) listed, 0 more", out)
    assert size and int(size.group(1)) <= 1200, out[-3000:]
    assert "kitchen_ceiling_light: ZigbeeBulb\n" in out and "lab_korad_supply: KoradPsu\n" in out
    # No model, and simple commands still work: the fast path, in English and Chinese; an ambiguous one asks.
    assert "Kitchen Ceiling Light is on.\n[task " in out and "processed locally, no model" in out
    assert re.search(r"kitchen_ceiling_light +\{'online': True, .*'state': 'ON'", out)
    assert "已打开2盏灯：Living Room Ceiling Light、Living Room Floor Lamp。" in out  # a room's 灯 is all of them
    assert re.search(r"It is \d+(\.\d+)? °C in the lab\.", out)
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # the demo kept its data elsewhere, and removed it


async def test_the_demo_ends_at_the_end_of_its_input_and_cli_commands_reach_it_meanwhile(tmp_path):
    env = {"PYUSE_GATEWAY_DATA_DIR": str(tmp_path / "mine"), "PYUSE_API_PORT": "0"}
    nothing = await asyncio.create_subprocess_exec(*PYUSE, "demo", stdin=asyncio.subprocess.DEVNULL,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                   env={**os.environ, **env})
    out, err = await asyncio.wait_for(nothing.communicate(), 60)  # `pyuse demo < /dev/null`
    assert nothing.returncode == 0, err.decode()
    assert not (tmp_path / "mine").exists()

    demo = await asyncio.create_subprocess_exec(*PYUSE, "demo", stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                env={**os.environ, **env})
    try:
        assert demo.stdout is not None and demo.stdin is not None
        async with asyncio.timeout(60):
            while b"(or Ctrl-D)" not in await demo.stdout.readline():
                pass
        assert sorted(path.name for path in (tmp_path / "mine").iterdir()) == ["demo.json"]
        code, out, err = await pyuse("devices", env=env)
        assert code == 0, err
        assert re.search(r"^garage_ceiling_light +Garage Ceiling Light +garage", out, re.MULTILINE)
        code, out, err = await pyuse("ask", "turn on the garage light", env=env)
        assert code == 0 and "Garage Ceiling Light is on." in out, err
        demo.stdin.close()
        await asyncio.wait_for(demo.wait(), 30)
    finally:
        if demo.returncode is None:
            demo.kill()
    assert demo.returncode == 0
    assert not (tmp_path / "mine").exists()


def test_help_lists_the_commands():
    import subprocess

    result = subprocess.run([*PYUSE, "--help"], capture_output=True, text=True, check=True)
    for name in ("ask", "tasks", "exec", "doctor", "demo"):
        assert name in result.stdout


async def test_doctor_reports_every_sandbox_layer(tmp_path):
    (tmp_path / "skills").mkdir()
    (tmp_path / "skills" / "broken.py").write_text("print('runs on load')\n")
    config = tmp_path / "xdg" / "pyuse" / "pyuse.toml"  # found without -c, as $XDG_CONFIG_HOME says
    config.parent.mkdir(parents=True)
    config.write_text(f'[gateway]\ndata_dir = "{tmp_path}"\n')
    code, out, err = await pyuse("doctor", env={"XDG_CONFIG_HOME": str(tmp_path / "xdg")}, cwd=tmp_path)

    assert code == 0, out + err
    assert out.startswith(f"config: {config}\ndata:   {tmp_path}\n"), out
    for layer in ("session", "fds", "nice", "netns", "scratch", "rlimits", "landlock", "uid", "seccomp"):
        assert f"  {layer:<9} on" in out, out
    assert "=> model code may run" in out
    assert "model: not configured" in out
    assert "saved skills: none\n  skipped: broken.py:1: only imports" in out


async def test_exec_runs_a_file_under_the_same_sandbox_and_policy(tmp_path, psu):
    config = tmp_path / "pyuse.toml"
    config.write_text(f'[gateway]\ndata_dir = "{tmp_path / "data"}"\n\n[[devices]]\nid = "bench_psu"\n'
                      f'name = "Bench"\nkind = "scpi_psu"\nserial_port = "{psu.port}"\n')
    script = tmp_path / "probe.py"
    script.write_text('psu = devices["bench_psu"]\nprint(psu.query("*IDN?"))\n'
                      'try:\n    psu.write("OUTP ON")\nexcept PermissionError as e:\n    print("refused:", e)\n'
                      'open("/etc/hostname").read()\n')

    code, out, err = await pyuse("exec", str(script), "-c", str(config), stdin=b"")

    assert code == 1  # the last line raised
    assert out.splitlines()[0].startswith("PYUSE,SIM-PSU")
    assert "refused: denied: OUTP ON on 'bench_psu' needs a person's confirmation" in out
    assert "PermissionError: [Errno 13] Permission denied: '/etc/hostname'" in out
    assert "layers: session, fds, nice, netns, scratch, rlimits, landlock, uid, seccomp" in err
    assert psu.output is False
    code, out, _ = await pyuse("tasks", "-c", str(config))
    assert "exec " in out and "failed" in out


async def test_ask_on_a_terminal_asks_before_a_dangerous_call(tmp_path, scripted_llm, psu):
    """A real pty: the person sees the question and answers it; piped stdin would have meant 'no'."""
    import pty

    llm = await scripted_llm({"conversations": [{"match": "output on", "replies": [
        code_reply('psu = devices["bench_psu"]\npsu.write("VOLT 3.3")\npsu.write("OUTP ON")\n'
                   'final_answer(psu.query("MEAS:VOLT?"))')]}]})
    config = write_config(tmp_path, llm.base_url, f'\n[[devices]]\nid = "bench_psu"\nname = "Bench"\n'
                                                  f'kind = "scpi_psu"\nserial_port = "{psu.port}"\n')
    controller, terminal = pty.openpty()
    process = await asyncio.create_subprocess_exec(*PYUSE, "ask", "switch the output on", "-c", str(config),
                                                   stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    seen = b""
    try:
        while b"[y/N]" not in seen:
            chunk = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, os.read, controller,
                                                                                       4096), 30)
            seen += chunk
        assert b"Confirm: Bench (bench_psu): OUTP ON" in seen and b"switches the supply's output on" in seen
        assert psu.output is False  # nothing happens before the answer
        os.write(controller, b"y\n")
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
        os.close(controller)
    assert psu.output is True and psu.volts_set == 3.3


async def test_devices_and_prompt_show_what_the_gateway_knows(tmp_path, shelly):
    config = tmp_path / "pyuse.toml"
    config.write_text(f'[gateway]\ndata_dir = "{tmp_path / "data"}"\n\n[discovery]\nmqtt = false\nmdns = false\n\n'
                      f'[[devices]]\nid = "desk_plug"\nname = "Desk Plug"\narea = "office"\nkind = "shelly_switch"\n'
                      f'host = "{shelly.host}"\nport = {shelly.port}\n')

    code, out, err = await pyuse("devices", "-c", str(config), "--json")
    assert code == 0, err
    [device] = json.loads(out)
    assert (device["id"], device["kind"], device["area"], device["transport"]) == \
        ("desk_plug", "shelly_switch", "office", "http")
    code, out, _ = await pyuse("devices", "-c", str(config))
    assert out.splitlines()[0].split() == ["id", "name", "area", "kind", "transport", "online", "state"]
    assert "desk_plug" in out.splitlines()[1] and "online" in out.splitlines()[1]

    code, out, _ = await pyuse("prompt", "turn on the desk plug", "-c", str(config))
    assert code == 0
    assert "===== system =====" in out and "===== user =====\nTask: turn on the desk plug" in out
    assert "class ShellySwitch(Switch):\n    on()  off()" in out and "desk_plug: ShellySwitch [office]\n" in out
    assert "1 device(s) listed, 0 more searchable" in out

    config.write_text(config.read_text().split("[[devices]]")[0])  # the device leaves the config
    code, out, _ = await pyuse("devices", "-c", str(config), "--json")
    assert json.loads(out) == []
