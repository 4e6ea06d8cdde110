"""How model replies become code or answers."""

from gateway.agent.parse import parse_reply


def test_python_fence_is_code_and_the_text_before_it_is_the_thought():
    reply = parse_reply("Thought: read the plug.\n```python\nx = 1\nprint(x)\n```")
    assert reply.thought == "read the plug."
    assert reply.code == "x = 1\nprint(x)"
    assert reply.answer is None


def test_bare_and_short_fences_are_code():
    assert parse_reply("```\nprint(2)\n```").code == "print(2)"
    assert parse_reply("```py\nprint(3)\n```").code == "print(3)"
    assert parse_reply("```Python3\nprint(4)\n```").code == "print(4)"


def test_an_unclosed_last_fence_runs_to_the_end():
    reply = parse_reply("Doing it.\n```python\nx = 5\nx")
    assert reply.code == "x = 5\nx"
    assert reply.kept.endswith("x\n```")


def test_everything_after_the_first_code_block_is_dropped():
    text = "```python\nprint(1)\n```\nObservation: 1\nFINAL ANSWER: made up\n```python\nprint(2)\n```"
    reply = parse_reply(text)
    assert reply.code == "print(1)"
    assert "made up" not in reply.kept and "print(2)" not in reply.kept


def test_a_block_in_another_language_is_not_code():
    reply = parse_reply('The payload is\n```json\n{"on": true}\n```\nFINAL ANSWER: sent')
    assert reply.code is None
    assert reply.answer == "sent"


def test_a_json_block_before_python_is_skipped_not_mistaken_for_a_bare_fence():
    reply = parse_reply('```json\n{"a": 1}\n```\nthen\n```python\nprint("ok")\n```')
    assert reply.code == 'print("ok")'


def test_final_answer_marker_in_any_case():
    assert parse_reply("Thought: done.\nFINAL ANSWER: It is 21.5 °C.").answer == "It is 21.5 °C."
    assert parse_reply("Final answer: off").answer == "off"


def test_a_reply_with_neither_code_nor_marker_is_the_answer():
    reply = parse_reply("  The lamp is on.  ")
    assert reply.code is None and reply.answer == "The lamp is on."


def test_an_empty_fence_is_not_code():
    assert parse_reply("```python\n\n```\nFINAL ANSWER: nothing to do").answer == "nothing to do"


def test_a_reply_that_says_nothing_is_no_answer():
    for nothing in ("", "  \n\t", "```", "```python\n```", "...", "FINAL ANSWER:", "FINAL ANSWER: ```\n```",
                    '```json\n{}\n```'):
        reply = parse_reply(nothing)
        assert reply.code is None and reply.answer == "", repr(nothing)
    assert parse_reply("好的").answer == "好的" and parse_reply("FINAL ANSWER: 0").answer == "0"
