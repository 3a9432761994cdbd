"""Reading LoCoMo-format files: evidence quirks, skipped questions, pages and provenance."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from memoryos_core.bench.locomo_data import (
    canonical_dia_id,
    load_locomo,
    normalize_evidence,
    safe_user_id,
    session_pages,
)
from tests.bench.conftest import tiny_locomo

KNOWN = {"D1:1", "D1:2", "D2:5", "D11:26", "D30:5"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("D1:1", "D1:1"),
        ("D30:05", "D30:5"),  # a leading zero in the turn number
        ("D:11:26", "D11:26"),  # a colon after the D
        ("d2:5", "D2:5"),
        (" D1:2 ", "D1:2"),
        ("D", None),
        ("D1", None),
        ("S1:2", None),
        ("", None),
    ],
)
def test_canonical_dia_id(raw: str, expected: str | None) -> None:
    assert canonical_dia_id(raw) == expected


@pytest.mark.parametrize(
    ("evidence", "kept", "dropped"),
    [
        (["D1:1"], ("D1:1",), ()),
        (["D1:1; D2:5"], ("D1:1", "D2:5"), ()),  # several ids in one string: ;
        (["D1:1,D2:5"], ("D1:1", "D2:5"), ()),  # ,
        (["D1:1 D2:5  D1:2"], ("D1:1", "D2:5", "D1:2"), ()),  # spaces
        (["D2:5 D1:1, D1:2; D30:05"], ("D2:5", "D1:1", "D1:2", "D30:5"), ()),  # mixed
        (["D:11:26", "D11:26"], ("D11:26",), ()),  # repeats after normalisation kept once
        (["D9:9", "D", "D1:1"], ("D1:1",), ("D9:9", "D")),  # ids naming no turn are dropped
        ([], (), ()),
        (None, (), ()),
        ("D1:1;D1:2", ("D1:1", "D1:2"), ()),  # a bare string instead of a list
    ],
)
def test_normalize_evidence(evidence: object, kept: tuple[str, ...], dropped: tuple[str, ...]) -> None:
    assert normalize_evidence(evidence, KNOWN) == (kept, dropped)  # type: ignore[arg-type]


def test_questions_without_evidence_are_skipped_and_counted(locomo_file: Callable[..., Path]) -> None:
    first, second = load_locomo(locomo_file())
    # One question has no evidence, one only ids that name no turn: both skipped.
    assert first.skipped == 2 and second.skipped == 0
    assert len(first.questions) == 6 and len(second.questions) == 2
    assert set(first.dropped_ids) == {"D9:9", "D", "D7:1"}
    by_text = {q.question: q for q in first.questions}
    assert by_text["What did Ann make in her pottery class?"].evidence == ("D1:3", "D1:4")
    assert by_text["When did Ann run along the river?"].evidence == ("D2:2",)
    assert by_text["Who visits Ann from Berlin?"].evidence == ("D10:1",)
    assert by_text["How far did Ann run and where is the marathon?"].evidence == ("D2:2", "D2:3")
    # Category 5 reads its answer from adversarial_answer.
    adversarial = by_text["What did Bob adopt?"]
    assert (adversarial.category, adversarial.answer) == (5, "a golden retriever")


def test_limit_keeps_the_first_conversations(locomo_file: Callable[..., Path]) -> None:
    assert [c.sample_id for c in load_locomo(locomo_file(), limit=1)] == ["conv-1"]


def test_a_file_that_is_not_a_list_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"sample_id": "x"}))
    with pytest.raises(ValueError, match="list of LoCoMo samples"):
        load_locomo(path)


def _pages(locomo_file: Callable[..., Path]) -> list[list[dict]]:
    return [[page for pages in session_pages(c) for page in pages] for c in load_locomo(locomo_file())]


def test_pages_pair_a_with_the_following_b_and_keep_every_turn(locomo_file: Callable[..., Path]) -> None:
    first, second = _pages(locomo_file)
    assert [p["meta_data"]["dia_ids"] for p in first] == [
        ["D1:1", "D1:2"],
        ["D1:3"],  # two A turns in a row: the first has no partner
        ["D1:4", "D1:5"],
        ["D2:1"],  # a session opened by B: a page with an empty user side
        ["D2:2", "D2:3"],
        ["D10:1", "D10:2"],  # session 10 after session 2; session 11 has a date only
    ]
    # conv-2 opens with speaker B.
    assert [p["meta_data"]["dia_ids"] for p in second] == [["D1:1"], ["D1:2", "D1:3"], ["D1:4"]]
    assert first[1]["agent_response"] == "" and first[3]["user_input"] == ""
    assert first[3]["agent_response"] == "Bob: How was the marathon training this week?"
    every_turn = [i for sample in tiny_locomo() for i in _turn_ids(sample)]
    ingested = [i for pages in (first, second) for p in pages for i in p["meta_data"]["dia_ids"]]
    assert sorted(ingested) == sorted(every_turn)


def test_one_add_per_session(locomo_file: Callable[..., Path]) -> None:
    first = load_locomo(locomo_file())[0]
    assert [len(pages) for pages in session_pages(first)] == [3, 2, 1]


def test_pages_carry_speaker_session_date_and_image_caption(locomo_file: Callable[..., Path]) -> None:
    pages = _pages(locomo_file)[0]
    assert pages[0]["user_input"] == "Ann: I adopted a golden retriever puppy called Biscuit."
    assert pages[0]["timestamp"] == "1:56 pm on 8 May, 2023"
    assert pages[3]["timestamp"] == "7:00 pm on 20 May, 2023"
    assert pages[5]["timestamp"] == "9:15 am on 2 June, 2023"
    assert "a photo of a blue ceramic bowl" in pages[2]["user_input"]


def test_baselines_index_the_very_text_that_is_ingested(locomo_file: Callable[..., Path]) -> None:
    for conversation, pages in zip(load_locomo(locomo_file()), _pages(locomo_file)):
        turns = {turn.dia_id: turn for turn in conversation.turns}
        for page in pages:
            sides = [side for side in (page["user_input"], page["agent_response"]) if side]
            expected = [f"{turns[i].speaker}: {turns[i].text}" for i in page["meta_data"]["dia_ids"]]
            assert sides == expected
            assert all(turns[i].date == page.get("timestamp", "") for i in page["meta_data"]["dia_ids"])


def test_user_ids_are_made_safe() -> None:
    assert safe_user_id("conv-26") == "conv-26"
    assert safe_user_id("conv 7/a") == "conv_7_a"
    assert safe_user_id("///") == "conversation"


def _turn_ids(sample: dict) -> list[str]:
    conversation = sample["conversation"]
    return [
        turn["dia_id"]
        for key, turns in conversation.items()
        if key.startswith("session_") and not key.endswith("date_time")
        for turn in turns
    ]
