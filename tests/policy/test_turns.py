"""fold_messages / close_turn: a chat transcript cut into turns (one page each), shared by the adapters."""

from __future__ import annotations

from memoryos_core import Turn, TurnMessage, close_turn, fold_messages


def _m(role: str, text: str = "", id: str | None = None, *tools: str) -> TurnMessage[str]:
    return TurnMessage(role, text, f"src-{id or text}", id, tools)  # type: ignore[arg-type]


def _pairs(turns: list[Turn[str]]) -> list[tuple[str, str]]:
    return [(t.user_input, t.agent_response) for t in turns]


TRANSCRIPT = [
    _m("system", "Be brief."),
    _m("user", "Weather in Oslo?", "u1"),
    _m("assistant", "", "a0", "weather"),  # calls a tool: plumbing
    _m("tool", "-3C, snow", "t1"),
    _m("assistant", "It is -3C and snowing.", "a1"),
    _m("user", "Thanks.", "u2"),
    _m("user", "And tomorrow?", "u3"),
    _m("assistant", "Sun.", "a2"),
    _m("user", "Bye.", "u4"),
]


def test_joined_users_make_one_turn_with_its_plumbing() -> None:
    turns, left = fold_messages(TRANSCRIPT)
    assert _pairs(turns) == [
        ("Weather in Oslo?", "It is -3C and snowing."),
        ("Thanks.\nAnd tomorrow?", "Sun."),
    ]
    first = turns[0]
    assert first.message_ids == ("u1", "a0", "t1", "a1") and first.tool_calls == ("weather",)
    assert [m.id for m in first.users] == ["u1"] and first.answer is not None and first.answer.id == "a1"
    assert turns[1].tool_calls == () and turns[1].message_ids == ("u2", "u3", "a2")
    assert [m.source for m in left] == ["src-u4"]  # the open turn hands back the framework's messages


def test_split_users_store_each_unanswered_message_alone() -> None:
    turns, left = fold_messages(TRANSCRIPT, join_users=False)
    assert _pairs(turns) == [
        ("Weather in Oslo?", "It is -3C and snowing."),
        ("Thanks.", ""),
        ("And tomorrow?", "Sun."),
    ]
    assert turns[1].answer is None and all(len(t.users) == 1 for t in turns)
    assert [m.id for m in left] == ["u4"]


def test_an_open_turn_is_continued_and_an_answer_alone_is_a_turn() -> None:
    opened = _m("user", "I moved to Lyon.", "u0")
    turns, left = fold_messages([_m("assistant", "Lyon is lovely.", "a0")], [opened])
    assert _pairs(turns) == [("I moved to Lyon.", "Lyon is lovely.")] and turns[0].users[0] is opened
    assert left == []
    turns, left = fold_messages([_m("assistant", "Hello!", "a1"), _m("assistant", "  ")])
    assert _pairs(turns) == [("", "Hello!")] and [m.text for m in left] == ["  "]  # blank: plumbing


def test_close_turn_keeps_what_the_user_said() -> None:
    open_turn = [_m("user", "one", "u1"), _m("tool", "x", "t1"), _m("user", " "), _m("user", "two", "u2")]
    turn = close_turn(open_turn)
    assert turn is not None and _pairs([turn]) == [("one\ntwo", "")]
    assert turn.message_ids == ("u1", "u2") and turn.answer is None
    assert close_turn([_m("tool", "x"), _m("user", "  ")]) is None and close_turn([]) is None
