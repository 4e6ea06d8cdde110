"""The one conversion of a skill's arguments, shared by the API, the CLI and automations."""

import pytest

from gateway.agent.skills import Skill
from gateway.errors import GatewayError
from gateway.saved_skills import SkillNotFound, convert_arguments
from gateway.tasks import SkillArgumentError

SKILL = Skill("set_lamp", "", "", {"on": "bool", "level": "int", "gap": "float"})


def test_words_and_json_values_become_the_parameters_types() -> None:
    assert convert_arguments(SKILL, {"on": "Off", "level": "3", "gap": "0.5"}) == {"on": False, "level": 3,
                                                                                  "gap": 0.5}
    assert convert_arguments(SKILL, {"on": True, "level": 3, "gap": 1}) == {"on": True, "level": 3, "gap": 1.0}


def test_an_unknown_yes_or_no_word_is_refused_naming_the_parameter_and_the_words() -> None:
    with pytest.raises(SkillArgumentError) as refused:
        convert_arguments(SKILL, {"on": "maybe", "level": "3", "gap": "1"})
    assert "set_lamp(): on must be bool" in str(refused.value) and "yes" in str(refused.value)
    assert "'maybe'" in str(refused.value)


def test_a_missing_skill_is_a_gateway_error_and_a_key_error() -> None:
    error = SkillNotFound("no skill named 'x'")
    assert isinstance(error, GatewayError) and isinstance(error, KeyError) and str(error) == "no skill named 'x'"
