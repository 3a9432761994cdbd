"""delete_knowledge and delete_trait: one long-term item goes, the pages it came from and the rest stay."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from memoryos_core import InvalidInputError, MemoryOS, NotFoundError
from tests.conftest import topic_pages


def _filled(make_memory: Callable[..., MemoryOS]) -> tuple[MemoryOS, list[str]]:
    memory = make_memory()
    pages = [r.page_id for r in memory.add_memories(topic_pages("hiking", 3))]
    memory.import_memory(
        {
            "profile": [
                {"name": "Hobby", "value": "hiking", "page_ids": [pages[0]]},
                {"name": "Diet", "value": "vegetarian", "page_ids": [pages[1]]},
            ],
            "user_knowledge": [
                {"id": "kn_boots", "text": "Owns alpine boots.", "page_ids": [pages[0]]},
                {"id": "kn_trail", "text": "Walks the alpine trail.", "page_ids": [pages[2]]},
            ],
        }
    )
    return memory, pages


def test_delete_trait_removes_that_trait_only(make_memory: Callable[..., MemoryOS]) -> None:
    memory, pages = _filled(make_memory)
    memory.delete_trait("hobby")  # any case
    profile = memory.get_user_profile()
    assert [t.name for t in profile.traits] == ["Diet"]
    assert "hiking" not in profile.summary
    assert len(profile.user_knowledge) == 2
    assert [p.id for p in memory.get_pages(pages)] == pages  # the pages it came from stay
    with pytest.raises(NotFoundError):
        memory.delete_trait("Hobby")
    with pytest.raises(InvalidInputError):
        memory.delete_trait("  ")


def test_delete_knowledge_removes_that_item_only(make_memory: Callable[..., MemoryOS]) -> None:
    memory, pages = _filled(make_memory)
    memory.delete_knowledge("kn_boots")
    profile = memory.get_user_profile()
    assert [k.id for k in profile.user_knowledge] == ["kn_trail"]
    assert len(profile.traits) == 2
    assert memory.get_memory_stats().user_knowledge == 1
    assert [p.id for p in memory.get_pages(pages)] == pages
    with pytest.raises(NotFoundError):
        memory.delete_knowledge("kn_boots")
    with pytest.raises(InvalidInputError):
        memory.delete_knowledge("no spaces allowed")


def test_another_users_item_is_not_found_and_stays(make_memory: Callable[..., MemoryOS]) -> None:
    memory, _ = _filled(make_memory)
    with pytest.raises(NotFoundError):
        memory.delete_knowledge("kn_boots", user_id="bob")
    with pytest.raises(NotFoundError):
        memory.delete_trait("Hobby", user_id="bob")
    assert len(memory.get_user_profile().user_knowledge) == 2
    assert len(memory.get_user_profile().traits) == 2


async def test_the_async_twins_delete(make_memory: Callable[..., MemoryOS]) -> None:
    memory, _ = _filled(make_memory)
    await memory.adelete_knowledge("kn_trail")
    await memory.adelete_trait("Diet")
    profile = await memory.aget_user_profile()
    assert [k.id for k in profile.user_knowledge] == ["kn_boots"]
    assert [t.name for t in profile.traits] == ["Hobby"]


def test_recalled_units_carry_score_parts_that_add_up(make_memory: Callable[..., MemoryOS]) -> None:
    memory, _ = _filled(make_memory)
    memory.add_memories(topic_pages("cooking", 12) + topic_pages("coding", 12))
    memory.flush()
    context = memory.retrieve_memory("pasta with tomato sauce", update_heat=False)
    units = context.all_units
    assert units and all(unit.score_parts for unit in units)
    for unit in units:
        assert sum(unit.score_parts.values()) == pytest.approx(unit.score, abs=1e-4)
        if unit.tier in ("user_knowledge", "assistant_knowledge"):
            assert set(unit.score_parts) == {"dense"}
        else:
            assert set(unit.score_parts) == {"lexical", "dense", "session", "neighbours", "date", "late"}
    best = context.units[0]
    assert "pasta" in best.text and best.score_parts["lexical"] > 0
