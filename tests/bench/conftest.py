"""A tiny LoCoMo-format file, written to tmp_path by each test that needs one."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def _turn(speaker: str, dia_id: str, text: str, caption: str | None = None) -> dict[str, Any]:
    turn = {"speaker": speaker, "dia_id": dia_id, "text": text}
    if caption:
        turn["blip_caption"] = caption
    return turn


def tiny_locomo() -> list[dict[str, Any]]:
    """Two conversations exercising every quirk of the format (see docs/benchmark.md)."""
    first = {
        "sample_id": "conv-1",
        "conversation": {
            "speaker_a": "Ann",
            "speaker_b": "Bob",
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": [
                _turn("Ann", "D1:1", "I adopted a golden retriever puppy called Biscuit."),
                _turn("Bob", "D1:2", "Biscuit is a lovely name for a dog!"),
                _turn("Ann", "D1:3", "I also started pottery classes on Tuesdays."),
                _turn("Ann", "D1:4", "Look at my first bowl.", caption="a photo of a blue ceramic bowl"),
                _turn("Bob", "D1:5", "That bowl looks great, the glaze is beautiful."),
            ],
            "session_2_date_time": "7:00 pm on 20 May, 2023",
            "session_2": [
                _turn("Bob", "D2:1", "How was the marathon training this week?"),
                _turn("Ann", "D2:2", "I ran thirty kilometres along the river on Sunday."),
                _turn("Bob", "D2:3", "Impressive, the Lisbon marathon is in October, right?"),
            ],
            # Numeric order: session 10 comes after session 2, not after session 1.
            "session_10_date_time": "9:15 am on 2 June, 2023",
            "session_10": [
                _turn("Ann", "D10:1", "My sister Clara visits from Berlin next week."),
                _turn("Bob", "D10:2", "You could show Clara the pottery studio."),
            ],
            # A date without a session (as in conv-26): ignored.
            "session_11_date_time": "10:00 am on 3 June, 2023",
        },
        "qa": [
            {
                "question": "What is the name of Ann's dog?",
                "answer": "Biscuit",
                "evidence": ["D1:1"],
                "category": 4,
            },
            {
                "question": "What did Ann make in her pottery class?",
                "answer": "a blue bowl",
                "evidence": ["D1:3; D1:4"],
                "category": 1,
            },
            {
                "question": "When did Ann run along the river?",
                "answer": "21 May 2023",
                "evidence": ["D2:02"],
                "category": 2,
            },
            {
                "question": "Who visits Ann from Berlin?",
                "answer": "her sister Clara",
                "evidence": ["D:10:1", "D10:1"],
                "category": 3,
            },
            {
                "question": "What did Bob adopt?",
                "adversarial_answer": "a golden retriever",
                "evidence": ["D1:1"],
                "category": 5,
            },
            {"question": "What is Ann's favourite colour?", "answer": "blue", "evidence": [], "category": 4},
            {
                "question": "Where is the marathon?",
                "answer": "Lisbon",
                "evidence": ["D9:9", "D"],
                "category": 4,
            },
            {
                "question": "How far did Ann run and where is the marathon?",
                "answer": "30 km, Lisbon",
                "evidence": ["D2:2 D2:3, D7:1"],
                "category": 1,
            },
        ],
    }
    second = {
        "sample_id": "conv-2",
        "conversation": {
            "speaker_a": "Cid",
            "speaker_b": "Dee",
            "session_1_date_time": "8:00 am on 1 January, 2024",
            "session_1": [
                _turn("Dee", "D1:1", "Happy new year Cid! Any resolutions?"),
                _turn("Cid", "D1:2", "I want to learn the violin this year."),
                _turn("Dee", "D1:3", "A violin teacher lives near my flat."),
                _turn("Cid", "D1:4", "Great, please send me her number."),
            ],
        },
        "qa": [
            {
                "question": "Which instrument does Cid want to learn?",
                "answer": "violin",
                "evidence": ["D1:2"],
                "category": 4,
            },
            {
                "question": "Who lives near Dee's flat?",
                "answer": "a violin teacher",
                "evidence": ["D1:3"],
                "category": 2,
            },
        ],
    }
    return [first, second]


@pytest.fixture
def locomo_file(tmp_path: Path) -> Callable[..., Path]:
    """Writes the tiny file (or given samples) into tmp_path and returns its path."""

    def write(samples: list[dict[str, Any]] | None = None, name: str = "tiny_locomo.json") -> Path:
        path = tmp_path / name
        path.write_text(json.dumps(tiny_locomo() if samples is None else samples))
        return path

    return write
