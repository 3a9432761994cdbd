"""Parsing of model replies: reasoning blocks, JSON extraction and repair, and the corrective re-ask."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memoryos_core._exceptions import LLMError, LLMOutputError
from memoryos_core._types import ChatMessage
from memoryos_core.llm.fake import FunctionLLM, ScriptedLLM
from memoryos_core.llm.parsing import (
    complete_json,
    extract_json,
    parse_json_reply,
    strip_reasoning,
)

EXTRACT_CASES = [
    ("plain", '{"a": 1}', {"a": 1}),
    ("plain array", "[1, 2]", [1, 2]),
    ("json fence", 'Here you go:\n```json\n{"a": [1, 2]}\n```\nDone.', {"a": [1, 2]}),
    ("bare fence", '```\n{"a": "x"}\n```', {"a": "x"}),
    ("leading prose", 'Sure! The result is {"a": 1}', {"a": 1}),
    ("trailing prose", '{"a": 1}\nHope this helps {really}.', {"a": 1}),
    ("think block", '<think>maybe {"wrong": 1, "also": 2}</think>\n{"a": 1}', {"a": 1}),
    ("thinking block", '<thinking>hmm</thinking>```json\n{"a": 1}\n```', {"a": 1}),
    ("orphan closing tag", 'the user wants a</think>{"a": 1}', {"a": 1}),
    ("think text inside a value", '{"a": "<think>kept</think>"}', {"a": "<think>kept</think>"}),
    ("trailing commas", '{"a": [1, 2,], "b": {"c": 3,},}', {"a": [1, 2], "b": {"c": 3}}),
    ("single quotes", "{'a': 'it\\'s', 'b': \"say \\\"hi\\\"\"}", {"a": "it's", "b": 'say "hi"'}),
    ("python literals", "{'a': True, 'b': False, 'c': None}", {"a": True, "b": False, "c": None}),
    ("unquoted keys", '{a: 1, b_2: "x"}', {"a": 1, "b_2": "x"}),
    ("newline in a string", '{"a": "line one\nline two"}', {"a": "line one\nline two"}),
    # A reply cut inside a string or number: the fragment goes, with its key (issue 13 item 17).
    ("truncated string", '{"topic": "hiking", "summary": "The user likes hik', {"topic": "hiking"}),
    ("truncated string in a list", '{"keywords": ["hiking", "alp', {"keywords": ["hiking"]}),
    ("truncated nested", '{"a": 1, "b": [{"c": 2}, {"d": tr', {"a": 1, "b": [{"c": 2}, {"d": True}]}),
    ("truncated after key", '{"a": 1, "b":', {"a": 1}),
    ("truncated key", '{"a": 1, "be', {"a": 1}),
    ("truncated number", '{"a": [1, 2.5e', {"a": [1]}),
    ("number ended by a newline", '{"a": [1, 2\n', {"a": [1, 2]}),
    (
        "truncated in fence",
        '```json\n{"topics": [{"id": 1}, {"id": 2\n```',
        {"topics": [{"id": 1}, {"id": 2}]},
    ),
    ("stray bracket in prose", 'Options: [ {"a": 1} ... pick one', {"a": 1}),
    ("truncated after prose", 'I can\'t {do} it. {"a": 1, "b": [1,', {"a": 1, "b": [1]}),
    ("longest of several", 'see [1] and then {"a": {"b": [1, 2, 3]}}', {"a": {"b": [1, 2, 3]}}),
]


@pytest.mark.parametrize(
    ("text", "expected"), [case[1:] for case in EXTRACT_CASES], ids=[c[0] for c in EXTRACT_CASES]
)
def test_extract_json(text: str, expected: Any) -> None:
    assert extract_json(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "no JSON here",
        "I can't {do} that",
        "{help}",
        "Sure! {",
        "[",
        "<think>never closed",
        '"a string"',
        "42",
        '{"summary": "The user likes hik',  # nothing complete but the fragment
    ],
)
def test_extract_json_rejects_garbage(text: str) -> None:
    with pytest.raises(LLMOutputError) as caught:
        extract_json(text)
    assert caught.value.raw == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>a</think>Hello", "Hello"),
        ("<THINK>\nsteps\n</THINK>\n\nHello <thinking>b</thinking>world", "Hello world"),
        ("reasoning only</think>Answer", "Answer"),
        ("<think>cut off while reasoning", ""),
        ("No reasoning at all", "No reasoning at all"),
    ],
)
def test_strip_reasoning(text: str, expected: str) -> None:
    assert strip_reasoning(text) == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)
json_dicts = st.dictionaries(st.text(), json_values, max_size=6)


@settings(max_examples=200, deadline=None)
@given(json_dicts)
def test_fenced_or_after_reasoning_json_round_trips(value: dict[str, Any]) -> None:
    assert extract_json("```json\n" + json.dumps(value) + "\n```") == value
    assert extract_json("<think>x</think>" + json.dumps(value)) == value


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_text_gives_json_or_llm_output_error(text: str) -> None:
    try:
        result = extract_json(text)
    except LLMOutputError:
        return
    assert isinstance(result, (dict, list))


def test_parse_json_reply_checks_shape_and_keys() -> None:
    assert parse_json_reply('```json\n{"a": 1, "b": 2}\n```', required_keys=("a", "b")) == {"a": 1, "b": 2}
    with pytest.raises(LLMOutputError, match="JSON array"):
        parse_json_reply("[1, 2]")
    with pytest.raises(LLMOutputError, match="lacks the keys: b") as caught:
        parse_json_reply('{"a": 1}', required_keys=("a", "b"))
    assert caught.value.raw == '{"a": 1}'


PROMPT = [ChatMessage("system", "Reply in JSON."), ChatMessage("user", "Summarise.")]


def test_complete_json_reasks_once_with_the_error() -> None:
    llm = ScriptedLLM(["Sorry, I cannot do that.", '{"summary": "ok"}'])
    value, raws = complete_json(llm, PROMPT, required_keys=("summary",))
    assert value == {"summary": "ok"}
    assert raws == ["Sorry, I cannot do that.", '{"summary": "ok"}']
    assert len(llm.calls) == 2
    assert llm.json_modes == [True, True]
    assert llm.calls[0] == PROMPT
    assert llm.calls[1][:2] == PROMPT
    corrective = llm.calls[1][2]
    assert corrective.role == "user"
    assert "no JSON object or array found" in corrective.content
    assert "summary" in corrective.content


def test_complete_json_reasks_when_keys_are_missing() -> None:
    llm = ScriptedLLM(['{"other": 1}', '{"summary": "ok"}'])
    value, raws = complete_json(llm, PROMPT, required_keys=("summary",))
    assert value == {"summary": "ok"}
    assert len(raws) == 2
    assert "lacks the keys: summary" in llm.calls[1][-1].content


def test_complete_json_gives_up_after_the_retry() -> None:
    llm = ScriptedLLM(["not json", "still not json", '{"summary": "never asked"}'])
    with pytest.raises(LLMOutputError, match="after 2 calls") as caught:
        complete_json(llm, PROMPT, required_keys=("summary",))
    assert caught.value.raw == "still not json"
    assert caught.value.backend == "scripted"
    assert len(llm.calls) == 2


def test_complete_json_reasks_after_an_empty_reply_error() -> None:
    llm = ScriptedLLM([LLMOutputError("empty reply", raw=""), '{"summary": "ok"}'])
    value, raws = complete_json(llm, PROMPT, required_keys=("summary",))
    assert value == {"summary": "ok"}
    assert raws == ["", '{"summary": "ok"}']


def test_complete_json_does_not_reask_when_the_llm_fails() -> None:
    llm = ScriptedLLM([LLMError("unreachable", backend="x"), '{"summary": "ok"}'])
    with pytest.raises(LLMError, match="unreachable"):
        complete_json(llm, PROMPT)
    assert len(llm.calls) == 1


def test_complete_json_with_no_retry() -> None:
    llm = ScriptedLLM(["nope", '{"a": 1}'])
    with pytest.raises(LLMOutputError):
        complete_json(llm, PROMPT, retries=0)
    assert len(llm.calls) == 1


def test_complete_json_repairs_a_truncated_reply_before_reasking() -> None:
    llm = ScriptedLLM(["```json\n{'summary': 'ok',", '{"summary": "ok"}'])
    value, raws = complete_json(llm, PROMPT, required_keys=("summary",))
    assert value == {"summary": "ok"}  # the truncated first reply was repaired
    assert raws == ["```json\n{'summary': 'ok',"]
    failing = ScriptedLLM(["no", "no"])
    with pytest.raises(LLMOutputError):
        complete_json(failing, PROMPT)
    assert len(failing.calls) == 2


def test_function_llm_receives_messages_and_json_mode() -> None:
    seen: list[tuple[list[ChatMessage], bool]] = []

    def handler(messages: Any, json_mode: bool) -> str:
        seen.append((list(messages), json_mode))
        return json.dumps({"n": len(messages)})

    value, _ = complete_json(FunctionLLM(handler), PROMPT)
    assert value == {"n": 2}
    assert seen == [(PROMPT, True)]


def test_scripted_llm_raises_items_and_when_exhausted() -> None:
    llm = ScriptedLLM(["one", ValueError("boom")])
    assert llm.complete(PROMPT) == "one"
    with pytest.raises(ValueError, match="boom"):
        llm.complete(PROMPT)
    with pytest.raises(LLMError, match="exhausted"):
        llm.complete(PROMPT)
    assert len(llm.calls) == 3
    assert llm.remaining == 0
