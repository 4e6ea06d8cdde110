"""Run by a Python that has Home Assistant 2024.1 (see tests/test_homeassistant.py): the automations of the README's
Home Assistant section, checked with Home Assistant's automation and trigger schemas, and a spoken sentence matched
against the voice trigger's sentences the way its conversation agent does (hassil, `{slot}` as a wildcard).

argv: the README, a sentence; stdout: {"aliases": [...], "slots": {slot: value} or null}
"""

import json
import re
import sys
from pathlib import Path

import homeassistant.components.persistent_notification  # noqa: F401  first, or the imports go in a circle
import yaml
from hassil import Intents, recognize
from hassil.intents import WildcardSlotList
from homeassistant.components.automation.config import PLATFORM_SCHEMA as AUTOMATION_SCHEMA
from homeassistant.components.conversation.trigger import TRIGGER_SCHEMA as CONVERSATION_TRIGGER
from homeassistant.components.homeassistant.triggers.state import TRIGGER_STATE_SCHEMA as STATE_TRIGGER

NEWER = "set_conversation_response"  # a step of Home Assistant 2024.2 and later, which 2024.1 cannot judge

readme, sentence = Path(sys.argv[1]).read_text(encoding="utf-8"), sys.argv[2]
block = re.search(r"\n## Home Assistant\n.*?```yaml\n(.*?)```", readme, re.DOTALL)
assert block is not None, "no yaml block in the README's Home Assistant section"
aliases, sentences = [], []
for automation in yaml.safe_load(block.group(1)):
    automation["action"] = [step for step in automation["action"] if NEWER not in step]
    config = AUTOMATION_SCHEMA(automation)
    for trigger in config["trigger"]:
        if trigger["platform"] == "conversation":
            sentences += CONVERSATION_TRIGGER(trigger)["command"]
        else:
            STATE_TRIGGER(trigger)
    aliases.append(config["alias"])
intents = Intents.from_dict({"language": "en", "intents": {"voice": {"data": [{"sentences": sentences}]}}})
for name in re.findall(r"\{(\w+)\}", " ".join(sentences)):
    intents.slot_lists[name] = WildcardSlotList()
found = recognize(sentence, intents)
slots = {name: entity.value for name, entity in found.entities.items()} if found else None
json.dump({"aliases": aliases, "slots": slots}, sys.stdout)
