"""delete (with derived data), export (every page once, with its tier) and import."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from memoryos_core import InvalidInputError, MemoryOS, NotFoundError
from memoryos_core.engine.lease import LeaseBusyError, Leases
from memoryos_core.llm.rules import RuleBasedLLM

KINDS = ("pages", "segments", "knowledge", "state")


def _filled(make_memory: Callable[..., MemoryOS], user: str = "alice") -> MemoryOS:
    memory = make_memory(
        llm=RuleBasedLLM(pages_per_topic=8), short_term_capacity=2, mid_term_heat_threshold=3
    )
    for owner in (user, "bob"):
        memory.add_memories(
            [
                {
                    "user_input": f"I love sailing on the lake, trip {i}.",
                    "agent_response": "I am jealous.",
                    "meta_data": {"message_id": f"{owner}-{i}"},
                }
                for i in range(8)
            ],
            user_id=owner,
        )
    memory.flush()
    return memory


def _records(memory: MemoryOS, user: str) -> int:
    return sum(len(memory.store.get(kind, where={"user_id": user})) for kind in KINDS)


def test_export_has_every_page_once_with_its_tier(make_memory: Callable[..., MemoryOS]) -> None:
    memory = _filled(make_memory)
    export = memory.export_memory()
    json.dumps(export)  # JSON-ready
    assert {"pages", "segments", "profile", "user_knowledge", "assistant_knowledge"} <= set(export)
    ids = [p["id"] for p in export["pages"]]
    assert len(ids) == len(set(ids)) == 8
    assert sorted({p["tier"] for p in export["pages"]}) == ["mid_term", "short_term"]
    assert export["user_knowledge"] and export["profile"] and export["segments"]


def test_deleting_a_user_removes_every_trace_and_touches_no_one_else(
    make_memory: Callable[..., MemoryOS],
) -> None:
    memory = _filled(make_memory)
    bob_before = memory.export_memory("bob")
    with pytest.raises(InvalidInputError):
        memory.delete_memory()  # no page and no everything=True: refuse
    assert memory.delete_memory(everything=True) == 8
    assert _records(memory, "alice") == 0
    assert memory.retrieve_memory("sailing").all_units == ()
    assert memory.get_user_profile().traits == ()
    assert memory.export_memory("bob") == bob_before


def test_a_user_delete_holds_their_lease_until_it_is_over(
    make_memory: Callable[..., MemoryOS], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deleting the user's records does not delete the lease the delete holds: another process
    cannot take it while the delete still erases (the wordpieces are dropped again last)."""
    memory = _filled(make_memory)
    other = Leases(memory.store)  # another process's
    drop, seen = memory._runtime.late.drop, []

    def drop_and_look(user_id: str) -> None:
        drop(user_id)
        try:
            with other.hold(user_id, wait_s=0.0):
                seen.append("taken")
        except LeaseBusyError:
            seen.append("held")

    monkeypatch.setattr(memory._runtime.late, "drop", drop_and_look)
    assert memory.delete_memory(everything=True) == 8
    assert seen == ["held", "held"]  # before the records went, and after
    assert _records(memory, "alice") == 0  # the lease given back too
    with other.hold("alice", wait_s=0.0):
        pass


def test_deleting_a_page_removes_what_was_derived_from_it(make_memory: Callable[..., MemoryOS]) -> None:
    memory = _filled(make_memory)
    export = memory.export_memory()
    cited = export["user_knowledge"][0]["page_ids"][0]
    victim = next(p for p in export["pages"] if p["id"] == cited)
    assert memory.delete_memory(victim["id"]) == 1
    after = memory.export_memory()
    assert victim["id"] not in {p["id"] for p in after["pages"]}
    assert len(after["pages"]) == 7
    text = json.dumps(after)
    assert victim["id"] not in text
    assert victim["meta_data"]["message_id"] not in json.dumps(after["user_knowledge"] + after["profile"])
    segment = next(s for s in after["segments"] if s["id"] == victim["segment_id"])
    assert victim["user_input"] not in segment["summary"]
    with pytest.raises(NotFoundError):
        memory.delete_memory(victim["id"])
    bob_page = memory.export_memory("bob")["pages"][0]["id"]
    with pytest.raises(NotFoundError):
        memory.delete_memory(bob_page)  # another user's page is not found, not deleted
    assert len(memory.export_memory("bob")["pages"]) == 8


def test_export_import_round_trip_into_a_fresh_store(make_memory: Callable[..., MemoryOS]) -> None:
    source = _filled(make_memory)
    export = source.export_memory()
    target = make_memory(short_term_capacity=2)
    assert target.import_memory(export) == 8
    again = target.export_memory()
    for key in ("pages", "profile"):
        assert again[key] == export[key]
    assert [s["page_ids"] for s in again["segments"]] == [s["page_ids"] for s in export["segments"]]
    assert {k["text"] for k in again["user_knowledge"]} == {k["text"] for k in export["user_knowledge"]}
    assert target.import_memory(export) == 8  # same ids: nothing doubles
    assert len(target.export_memory()["pages"]) == 8
    assert target.retrieve_memory("sailing").all_units


def test_import_into_another_user_copies_without_touching_the_original(
    make_memory: Callable[..., MemoryOS],
) -> None:
    memory = _filled(make_memory)
    export = memory.export_memory()
    memory.import_memory(export, user_id="carol")
    carol = memory.export_memory("carol")
    assert len(carol["pages"]) == 8
    assert not {p["id"] for p in carol["pages"]} & {p["id"] for p in export["pages"]}
    assert memory.export_memory() == export
    carol_pages = {p["id"] for p in carol["pages"]}
    assert all(set(s["page_ids"]) <= carol_pages for s in carol["segments"])


def test_bad_imports_are_rejected_before_anything_is_written(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory()
    with pytest.raises(InvalidInputError):
        memory.import_memory({"pages": "nope"})
    with pytest.raises(InvalidInputError):
        memory.import_memory(
            {
                "pages": [
                    {"id": "ok1", "user_input": "a", "tier": "short_term"},
                    {"id": "../x", "user_input": "b"},
                ]
            }
        )
    assert memory.export_memory()["pages"] == []
