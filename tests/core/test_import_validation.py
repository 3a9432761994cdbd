"""import_memory: a file cannot choose whose memory it writes, and every imported value is validated."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memoryos_core import ChromaStore, HashingEmbedder, InvalidInputError, MemoryOS

NOW_S = time.time()
GOOD: dict[str, Any] = {
    "version": 1,
    "user_id": "alice",
    "pages": [
        {
            "id": "pg_1",
            "user_input": "I sail.",
            "agent_response": "Nice.",
            "tier": "mid_term",
            "segment_id": "seg_1",
            "timestamp": "2025-03-01 10:00:00",
            "created_ns": 1_700_000_000_000_000_000,
            "source_ids": ["m1"],
        },
        {"id": "pg_2", "user_input": "I cook.", "agent_response": "Yum.", "tier": "short_term"},
    ],
    "segments": [
        {
            "id": "seg_1",
            "summary": "Sailing.",
            "keywords": ["sailing"],
            "page_ids": ["pg_1"],
            "n_visit": 2,
            "l_interaction": 1,
            "last_access_s": NOW_S - 10,
            "created_s": NOW_S - 100,
            "pending_page_ids": ["pg_1"],
            "status": "active",
        },
    ],
    "profile": [{"name": "hobby", "value": "sailing", "page_ids": ["pg_1"], "updated_s": NOW_S}],
    "user_knowledge": [{"id": "kn_1", "text": "Alice sails.", "page_ids": ["pg_1"], "updated_s": NOW_S}],
    "assistant_knowledge": [
        {"id": "kn_2", "text": "Promised tips.", "page_ids": ["pg_1"], "assistant_id": "helper"}
    ],
}


@pytest.fixture
def memory(tmp_path: Path) -> Iterator[MemoryOS]:
    made = MemoryOS(store=ChromaStore(path=str(tmp_path / "chroma")), embedder=HashingEmbedder(32),
                    background=False, user_id="alice")  # fmt: skip
    yield made
    made.close()


def nothing_stored(memory: MemoryOS, *users: str) -> bool:
    keys = ("pages", "segments", "profile", "user_knowledge", "assistant_knowledge")
    return all(not any(memory.export_memory(user)[key] for key in keys) for user in users)


def test_a_valid_export_is_imported_whole(memory: MemoryOS) -> None:
    assert memory.import_memory(GOOD) == 2
    export = memory.export_memory()
    assert sorted(p["id"] for p in export["pages"]) == ["pg_1", "pg_2"]
    assert (
        export["segments"][0]["n_visit"] == 2 and export["assistant_knowledge"][0]["assistant_id"] == "helper"
    )


def test_another_users_export_is_refused_unless_a_user_is_named(memory: MemoryOS) -> None:
    bobs = GOOD | {"user_id": "bob"}
    with pytest.raises(InvalidInputError, match=r"user 'bob'.*user_id='bob'"):
        memory.import_memory(bobs)
    assert nothing_stored(memory, "alice", "bob")
    assert memory.import_memory(bobs, user_id="bob") == 2  # asked for: imported as bob
    assert sorted(p["id"] for p in memory.export_memory("bob")["pages"]) == ["pg_1", "pg_2"]
    assert memory.import_memory(bobs, user_id="alice") == 2  # or copied into the instance's user
    assert len(memory.export_memory()["pages"]) == 2 and nothing_stored(memory, "carol")
    with pytest.raises(InvalidInputError, match="user_id of the export"):
        memory.import_memory(GOOD | {"user_id": "../bob"}, user_id="alice")


def changed(path: str, value: Any) -> dict[str, Any]:
    """GOOD with one value replaced, e.g. ``segments.0.n_visit``."""
    data = copy.deepcopy(GOOD)
    *keys, last = path.split(".")
    target: Any = data
    for key in keys:
        target = target[int(key)] if key.isdigit() else target[key]
    target[int(last) if last.isdigit() else last] = value
    return data


BAD = {
    "negative visits": ("segments.0.n_visit", -1),
    "huge visits": ("segments.0.n_visit", 10**30),
    "bool visits": ("segments.0.l_interaction", True),
    "float visits": ("segments.0.n_visit", 2.5),
    "nan access": ("segments.0.last_access_s", float("nan")),
    "infinite access": ("segments.0.last_access_s", float("inf")),
    "far future access": ("segments.0.last_access_s", 1e300),
    "next century": ("segments.0.created_s", NOW_S + 100 * 365 * 86400),
    "before 1970": ("segments.0.created_s", -5.0),
    "text time": ("segments.0.created_s", "yesterday"),
    "nan knowledge time": ("user_knowledge.0.updated_s", float("nan")),
    "infinite trait time": ("profile.0.updated_s", float("inf")),
    "negative created_ns": ("pages.0.created_ns", -1),
    "overflowing created_ns": ("pages.0.created_ns", 10**30),
    "segment without id": ("segments.0.id", None),
    "segment id path": ("segments.0.id", "../seg"),
    "page segment id": ("pages.0.segment_id", "seg 1"),
    "dangling segment id": ("pages.0.segment_id", "seg_9"),
    "pending page id": ("segments.0.pending_page_ids", ["pg/1"]),
    "segment page ids": ("segments.0.page_ids", ["pg_1", 7]),
    "knowledge page ids": ("user_knowledge.0.page_ids", ["a b"]),
    "trait page ids": ("profile.0.page_ids", [None]),
    "knowledge assistant": ("assistant_knowledge.0.assistant_id", "../helper"),
    "knowledge id": ("user_knowledge.0.id", 5),
    "status": ("segments.0.status", "deleted"),
    "keyword type": ("segments.0.keywords", ["sailing", {"x": 1}]),
    "summary type": ("segments.0.summary", ["x"]),
    "trait name": ("profile.0.name", {"a": 1}),
    "trait value": ("profile.0.value", ""),
    "knowledge text": ("user_knowledge.0.text", 42),
    "knowledge not an object": ("user_knowledge.0", "Alice sails."),
    "segment not an object": ("segments.0", 3),
    "source ids": ("pages.0.source_ids", [{"id": 1}]),
    "duplicate page id": ("pages.1.id", "pg_1"),
    "empty page": ("pages.1.user_input", ""),
    "version": ("version", 2),
}


@pytest.mark.parametrize(("path", "value"), BAD.values(), ids=BAD.keys())
def test_a_bad_value_is_a_typed_error_and_nothing_is_written(memory: MemoryOS, path: str, value: Any) -> None:
    if path == "pages.1.user_input":
        data = changed("pages.1.agent_response", "")
        data["pages"][1]["user_input"] = ""
    else:
        data = changed(path, value)
    with pytest.raises(InvalidInputError) as raised:
        memory.import_memory(data)
    assert "Traceback" not in str(raised.value)
    assert nothing_stored(memory, "alice")
    assert memory.get_user_profile().traits == ()
    json.dumps(str(raised.value))  # a message, not an object dump
