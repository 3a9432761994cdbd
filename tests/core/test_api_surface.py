"""MemoryOS's public surface: every sync call has an async twin with the same signature, and the
export format carries a version that import checks."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable

import pytest

from memoryos_core import InvalidInputError, MemoryOS
from memoryos_core.engine.records import record_from_json, record_to_json
from memoryos_core.storage.base import Record
from tests.conftest import topic_pages

# Not calls on memory: the sync and async context-manager protocols are twinned by hand below.
_NOT_TWINNED = {"__enter__", "__exit__", "__aenter__", "__aexit__"}


def _public_methods() -> dict[str, Callable[..., object]]:
    return {
        name: member
        for name, member in inspect.getmembers(MemoryOS, inspect.isfunction)
        if not name.startswith("_")
    }


def _sync_calls() -> list[str]:
    methods = _public_methods()
    # "aadd_memory" is a twin (of "add_memory"); "add_memory" is not one (there is no "dd_memory").
    return sorted(name for name in methods if not (name.startswith("a") and name[1:] in methods))


def test_the_sync_surface_is_what_the_reference_and_the_docs_name() -> None:
    expected = {
        "add_memory",
        "add_memories",
        "retrieve_memory",
        "generate_response",
        "get_response",
        "update_memory",
        "recent_pages",
        "list_users",
        "get_user_profile",
        "get_user_profile_summary",
        "get_assistant_knowledge_summary",
        "get_memory_stats",
        "delete_memory",
        "export_memory",
        "import_memory",
        "flush",
        "force_mid_term_analysis",
        "close",
    }
    assert expected <= set(_sync_calls())  # the test below is not vacuous


@pytest.mark.parametrize("name", _sync_calls())
def test_every_sync_call_has_an_async_twin_with_the_same_signature(name: str) -> None:
    methods = _public_methods()
    assert f"a{name}" in methods, f"MemoryOS.{name} has no async twin a{name}"
    sync, twin = methods[name], methods[f"a{name}"]
    assert not inspect.iscoroutinefunction(sync)
    assert inspect.iscoroutinefunction(twin)
    sync_signature, twin_signature = inspect.signature(sync), inspect.signature(twin)
    assert list(twin_signature.parameters.values()) == list(sync_signature.parameters.values())
    assert twin_signature.return_annotation == sync_signature.return_annotation
    kinds = {p.kind for p in twin_signature.parameters.values()}
    assert not kinds & {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD}


def test_every_public_method_is_a_call_or_its_twin() -> None:
    methods = _public_methods()
    twins = {name for name in methods if name.startswith("a") and name[1:] in methods}
    assert set(methods) == set(_sync_calls()) | twins
    assert not _NOT_TWINNED & set(methods)


def test_the_new_twins_answer_as_their_sync_calls(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory()
    page = {"id": "pg_1", "user_input": "I sail on weekends.", "agent_response": "Nice."}
    memory.import_memory(
        {
            "pages": [page],
            "profile": [{"name": "hobby", "value": "sailing", "page_ids": ["pg_1"], "updated_s": 1.7e9}],
            "assistant_knowledge": [{"text": "Suggested a sailing club.", "page_ids": ["pg_1"]}],
        }
    )
    summary, knowledge = memory.get_user_profile_summary(), memory.get_assistant_knowledge_summary()
    assert summary == "- hobby: sailing" and knowledge[0]["knowledge"] == "Suggested a sailing club."

    async def run() -> tuple[str, list[dict[str, object]]]:
        answers = await memory.aget_user_profile_summary(), await memory.aget_assistant_knowledge_summary()
        await memory.aclose()
        return answers

    assert asyncio.run(run()) == (summary, knowledge)


def test_an_export_carries_its_format_version_and_reads_back(make_memory: Callable[..., MemoryOS]) -> None:
    source = make_memory()
    source.add_memories(topic_pages("hiking", 3))
    exported = source.export_memory()
    assert exported["version"] == 1
    target = make_memory()
    assert target.import_memory(exported, user_id="bob") == 3
    unversioned = {key: value for key, value in exported.items() if key != "version"}
    assert target.import_memory(unversioned, user_id="carol") == 3  # exports before the field: version 1


@pytest.mark.parametrize("version", [2, 0, "1", None, 1.5, True])
def test_an_export_of_an_unknown_version_is_refused_and_nothing_written(
    make_memory: Callable[..., MemoryOS], version: object
) -> None:
    source = make_memory()
    source.add_memories(topic_pages("hiking", 3))
    exported = source.export_memory() | {"version": version}
    target = make_memory()
    with pytest.raises(InvalidInputError, match=f"unknown export version {version!r}"):
        target.import_memory(exported, user_id="bob")
    assert target.recent_pages(user_id="bob") == []
    assert "bob" not in target.list_users()


def test_one_json_form_for_records_and_older_plans_still_read() -> None:
    record = Record("pg_1", "User: hi", {"user_id": "alice", "tier": "short_term"}, [0.5, -1.0])
    data = record_to_json(record)
    assert set(data) == {"id", "doc", "meta", "vec"}
    assert record_from_json(data) == record
    # A consolidation batch journaled by an older version (long key names) is still replayed.
    older = {"id": "pg_1", "document": "User: hi", "metadata": record.metadata, "embedding": [0.5, -1.0]}
    assert record_from_json(older) == record
    with pytest.raises(KeyError):
        record_from_json({"id": "pg_1", "doc": "User: hi"})
