"""Configuration: defaults, environment overrides, and errors that name the key and the fix."""

from pathlib import Path

import pytest

from gateway.config import ConfigError, find_config_file, load_config


def test_defaults_send_nothing_anywhere():
    config = load_config(None, env={})
    assert not config.llm.configured
    assert config.mqtt.host == "127.0.0.1"
    assert config.mqtt.embedded is False


def test_environment_overrides_file_and_openai_variables(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[llm]\nbase_url = "http://127.0.0.1:1/v1"\nmodel = "from-file"\ntimeout_s = 5\n')
    config = load_config(path, env={"OPENAI_API_KEY": "k1", "OPENAI_BASE_URL": "http://127.0.0.1:2/v1",
                                    "PYUSE_LLM_MODEL": "from-env", "PYUSE_SANDBOX_EXEC_TIMEOUT_S": "3.5"})
    assert config.llm.model == "from-env"
    assert config.llm.base_url == "http://127.0.0.1:2/v1"
    assert config.llm.api_key.get_secret_value() == "k1"
    assert config.llm.timeout_s == 5
    assert config.sandbox.exec_timeout_s == 3.5


def test_pyuse_base_url_wins_over_openai_base_url():
    config = load_config(None, env={"OPENAI_BASE_URL": "http://127.0.0.1:2/v1",
                                    "PYUSE_LLM_BASE_URL": "http://127.0.0.1:3/v1"})
    assert config.llm.base_url == "http://127.0.0.1:3/v1"


def test_an_unknown_environment_setting_is_reported_with_a_suggestion():
    with pytest.raises(ConfigError) as error:
        load_config(None, env={"PYUSE_LMM_MODEL": "x"})
    assert error.value.problems == [
        "PYUSE_LMM_MODEL (environment): no such setting; expected PYUSE_<SECTION>_<KEY> with a section among "
        "agent, api, discovery, gateway, homeassistant, llm, mqtt, policy, sandbox, skills, stt (did you mean 'llm'?)"]


def test_secrets_never_appear_in_error_messages(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[llm]\napi_key = 12345\n[mqtt]\npassword = ["hunter2"]\n')
    with pytest.raises(ConfigError) as error:
        load_config(path, env={})
    text = "\n".join(error.value.problems)
    assert "llm.api_key" in text and "mqtt.password" in text
    assert "12345" not in text and "hunter2" not in text


def test_a_toml_syntax_error_names_the_file_and_line(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[llm]\nmodel = \n")
    with pytest.raises(ConfigError) as error:
        load_config(path, env={})
    assert error.value.problems[0].startswith(f"{path}: not valid TOML:")
    assert "line 2" in error.value.problems[0]


def test_a_missing_file_says_so(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path / "nope.toml", env={})
    assert "file not found" in error.value.problems[0]


def test_config_file_search_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_config_file(Path("x.toml"), env={"PYUSE_CONFIG": "y.toml"}) == Path("x.toml")
    assert find_config_file(None, env={"PYUSE_CONFIG": "y.toml"}) == Path("y.toml")
    (tmp_path / "pyuse.toml").write_text("")
    assert find_config_file(None, env={}) == Path("pyuse.toml")


def test_config_file_search_goes_on_to_the_users_then_the_systems_file(tmp_path, monkeypatch):
    from gateway.config import loading

    monkeypatch.chdir(tmp_path)
    home, xdg = tmp_path / "home", tmp_path / "xdg"
    system = tmp_path / "etc" / "pyuse" / "pyuse.toml"
    monkeypatch.setattr(loading, "SYSTEM_CONFIG", system)

    def put(path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        return path

    assert find_config_file(None, env={"HOME": str(home)}) is None
    put(system)
    assert find_config_file(None, env={"HOME": str(home)}) == system
    in_home = put(home / ".config" / "pyuse" / "pyuse.toml")
    assert find_config_file(None, env={"HOME": str(home)}) == in_home
    # $XDG_CONFIG_HOME replaces ~/.config (it is not searched as well); a relative one is ignored, as XDG says
    assert find_config_file(None, env={"HOME": str(home), "XDG_CONFIG_HOME": str(xdg)}) == system
    in_xdg = put(xdg / "pyuse" / "pyuse.toml")
    assert find_config_file(None, env={"HOME": str(home), "XDG_CONFIG_HOME": str(xdg)}) == in_xdg
    assert find_config_file(None, env={"HOME": str(home), "XDG_CONFIG_HOME": "xdg"}) == in_home
    put(tmp_path / "pyuse.toml")
    assert find_config_file(None, env={"HOME": str(home), "XDG_CONFIG_HOME": str(xdg)}) == Path("pyuse.toml")
    assert find_config_file(None, env={"PYUSE_CONFIG": "y.toml", "XDG_CONFIG_HOME": str(xdg)}) == Path("y.toml")


def test_the_reference_config_is_valid_and_documents_every_key():
    from gateway.config import AutomationEntry, AutomationTrigger, Config

    reference = Path(__file__).parent.parent / "config.reference.toml"
    config = load_config(reference, env={})
    text = reference.read_text()
    for section, model in Config.model_fields.items():
        if section in ("devices", "automations"):
            continue
        for key in model.annotation.model_fields:
            assert f"{key} =" in text, f"config.reference.toml does not document [{section}] {key}"
    for key in ("name", "kind", "id", "area", "aliases", "host", "port", "base_topic", "topics", "serial_port",
                "baudrate", "exposed"):
        assert f"{key} =" in text, f"config.reference.toml does not document [[devices]] {key}"
    for model in (AutomationEntry, AutomationTrigger):
        for key in model.model_fields:
            assert f"{key} =" in text, f"config.reference.toml does not document [[automations]] {key}"
    # Its tables are shown commented out: loaded as it is, it is the defaults, with nothing made up.
    assert not config.devices and not config.automations and not config.policy.rules
    assert not config.llm.configured  # it sends nothing anywhere until the user says where


def test_the_example_config_is_a_small_valid_start_with_nothing_made_up():
    example = Path(__file__).parent.parent / "config.example.toml"
    config = load_config(example, env={})

    assert not config.devices and not config.automations and not config.policy.rules
    assert not config.llm.configured
    assert len(example.read_text().splitlines()) < 40
