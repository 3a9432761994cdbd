"""retrieve_memory: one ranked list across tiers, with provenance, on the real local embedder."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from memoryos_core import InvalidInputError, MemoryOS
from memoryos_core.app.mcp import retrieve_memory_dict
from memoryos_core.llm.rules import RuleBasedLLM

CONVERSATION = [
    (
        "I just started a new job as a nurse at the city hospital.",
        "Congratulations! How are the shifts?",
        "m1",
    ),
    ("My sister Anna is getting married in June.", "How exciting! Are you in the wedding party?", "m2"),
    ("I adopted a grey cat called Pixel last week.", "Pixel is a lovely name for a cat.", "m3"),
    ("We are planning a road trip to Portugal this summer.", "Lisbon and Porto are wonderful.", "m4"),
    ("I have been learning to play the cello for two years.", "That takes real dedication.", "m5"),
    ("My favourite food is spicy ramen.", "Do you make it yourself?", "m6"),
    ("I ran my first half marathon in October.", "Great achievement! What was your time?", "m7"),
    ("The weather has been rainy all week.", "Perfect weather for reading indoors.", "m8"),
    ("I am allergic to peanuts, so I check every label.", "That must take care when eating out.", "m9"),
    ("I want to learn Japanese before visiting Tokyo.", "Try a little practice every day.", "m10"),
]


@pytest.fixture
def memory(make_memory: Callable[..., MemoryOS], local_embedder: Any) -> MemoryOS:
    memory = make_memory(embedder=local_embedder, short_term_capacity=3)
    memory.add_memories(
        [
            {
                "user_input": u,
                "agent_response": a,
                "timestamp": f"2024-03-{i + 1:02d} 09:00:00",
                "meta_data": {"message_id": mid},
            }
            for i, (u, a, mid) in enumerate(CONVERSATION)
        ]
    )
    memory.flush()
    return memory


@pytest.mark.parametrize(
    ("question", "message_id"),
    [
        ("What is my profession?", "m1"),
        ("Do I have any pets?", "m3"),
        ("Which musical instrument do I play?", "m5"),
        ("What food should I avoid?", "m9"),
        ("Where am I travelling this summer?", "m4"),
    ],
)
def test_paraphrased_questions_find_the_page_that_answers_them(
    memory: MemoryOS, question: str, message_id: str
) -> None:
    # Ranking is hybrid (BM25 + dense): a page sharing a literal word with the question may
    # come first ("food" in "What food should I avoid?"), so the answer must be among the top two.
    context = memory.retrieve_memory(question, top_k=3)
    pages = sorted(
        (u for u in context.all_units if u.tier in ("mid_term", "short_term")), key=lambda u: -u.score
    )
    assert (message_id,) in [u.source_ids for u in pages[:2]]


def test_units_carry_tier_score_timestamp_and_provenance(memory: MemoryOS) -> None:
    context = memory.retrieve_memory("Tell me about my cat", top_k=4)
    assert [u.score for u in context.units] == sorted((u.score for u in context.units), reverse=True)
    short = context.by_tier("short_term")
    assert [u.source_ids[0] for u in sorted(short, key=lambda u: u.timestamp)] == ["m8", "m9", "m10"]
    mid = context.by_tier("mid_term")
    assert len(mid) == 4
    page_ids = {p["id"] for p in memory.export_memory()["pages"]}
    for unit in context.all_units:
        assert unit.page_ids and set(unit.page_ids) <= page_ids
        assert unit.timestamp.startswith("2024-03-")
        assert math.isfinite(unit.score)
    assert context.cost.ms > 0 and context.cost.llm_calls == 0


def test_top_k_bounds_the_pages_beyond_short_term(memory: MemoryOS) -> None:
    assert len(memory.retrieve_memory("anything", top_k=1).by_tier("mid_term")) == 1
    assert len(memory.retrieve_memory("anything", top_k=50).by_tier("mid_term")) == 7
    with pytest.raises(InvalidInputError):
        memory.retrieve_memory("anything", top_k=0)


def test_top_k_caps_the_ranked_units_and_short_term_pages_come_apart(
    make_memory: Callable[..., MemoryOS],
) -> None:
    memory = make_memory()  # short-term capacity 7
    memory.add_memories(
        [{"user_input": f"Note {i} about gardening and tomatoes.", "agent_response": "ok"} for i in range(20)]
    )
    memory.flush()
    knowledge = [
        {"id": f"kn_{i}", "text": f"Alice grows tomatoes in the garden, fact {i}.", "page_ids": []}
        for i in range(3)
    ]
    memory.import_memory({"user_id": "alice", "pages": [], "user_knowledge": knowledge})
    context = memory.retrieve_memory("tomatoes in the garden", top_k=10)
    assert len(context.units) == 10  # pages and knowledge share the budget
    assert {u.tier for u in context.units} == {"mid_term", "user_knowledge"}
    assert [u.meta_data["user_input"] for u in context.short_term] == [
        f"Note {i} about gardening and tomatoes." for i in range(13, 20)
    ]  # the recent conversation, oldest first, not counted in top_k
    assert len(context.all_units) == 17 and context.by_tier("short_term") == sorted(
        context.short_term, key=lambda u: -u.score
    )
    rendered = context.render()
    recent = rendered.index("Recent conversation:")
    # (the renderer indents an item's continuation lines, so each page is found by its first line)
    assert all(rendered.index(u.text.splitlines()[0]) > recent for u in context.short_term)
    assert len(memory.retrieve_memory("tomatoes", top_k=2).units) == 2
    shape = retrieve_memory_dict(context)
    assert len(shape["short_term_memory"]) == 7 and shape["total_results"] == 17


def test_mcp_dict_has_the_reference_shape(memory: MemoryOS) -> None:
    shape = retrieve_memory_dict(memory.retrieve_memory("cello", top_k=2))
    assert {
        "short_term_memory",
        "retrieved_pages",
        "retrieved_user_knowledge",
        "retrieved_assistant_knowledge",
        "user_profile",
    } <= set(shape)
    assert len(shape["short_term_memory"]) == 3 and len(shape["retrieved_pages"]) == 2
    assert {"user_input", "agent_response", "timestamp", "meta_info"} <= set(shape["retrieved_pages"][0])


def test_knowledge_and_profile_join_the_ranked_list(
    make_memory: Callable[..., MemoryOS], local_embedder: Any
) -> None:
    memory = make_memory(
        embedder=local_embedder,
        llm=RuleBasedLLM(pages_per_topic=8),
        short_term_capacity=1,
        mid_term_heat_threshold=3,
    )
    memory.add_memories(
        [
            {
                "user_input": f"I work as a nurse at the hospital, shift {i}.",
                "agent_response": "I am proud of you.",
                "meta_data": {"message_id": f"n{i}"},
            }
            for i in range(5)
        ]
    )
    memory.flush()
    context = memory.retrieve_memory("What is my job?")
    knowledge = context.by_tier("user_knowledge")
    assert knowledge and "nurse" in knowledge[0].text and knowledge[0].source_ids
    assert "nurse" in context.profile
    assert context.by_tier("assistant_knowledge")
    rendered = context.render()
    assert (
        rendered.startswith("<recalled_memory>") and "not an instruction" in rendered and "nurse" in rendered
    )


def test_a_rare_exact_word_finds_its_page(make_memory: Callable[..., MemoryOS], local_embedder: Any) -> None:
    memory = make_memory(embedder=local_embedder, short_term_capacity=1)
    filler = [
        {"user_input": f"We talked about the weather and plans, part {i}.", "agent_response": "Nice."}
        for i in range(30)
    ]
    code = {
        "user_input": "My locker code at the gym is ZX-4471.",
        "agent_response": "Noted.",
        "meta_data": {"message_id": "code"},
    }
    memory.add_memories([*filler[:15], code, *filler[15:]])
    memory.flush()
    best = max(memory.retrieve_memory("ZX-4471", top_k=3).all_units, key=lambda u: u.score)
    assert best.source_ids == ("code",)


def test_the_answer_after_a_matching_question_is_recalled(
    make_memory: Callable[..., MemoryOS], local_embedder: Any
) -> None:
    memory = make_memory(embedder=local_embedder, short_term_capacity=1)
    pages = [
        {"user_input": f"Random chat about traffic and errands, number {i}.", "agent_response": "I see."}
        for i in range(20)
    ]
    pages[8] = {
        "user_input": "Have you read the novel Becoming Nicole?",
        "agent_response": "Not yet, is it good?",
        "meta_data": {"message_id": "ask"},
    }
    pages[9] = {
        "user_input": "It taught me self-acceptance and that hope exists.",
        "agent_response": "Lovely.",
        "meta_data": {"message_id": "answer"},
    }
    memory.add_memories(pages)
    memory.flush()
    units = memory.retrieve_memory("What did I take away from Becoming Nicole?", top_k=2).all_units
    assert {("ask",), ("answer",)} <= {u.source_ids for u in units}


def test_a_date_in_the_question_favours_pages_of_that_period(
    make_memory: Callable[..., MemoryOS], local_embedder: Any
) -> None:
    memory = make_memory(embedder=local_embedder, short_term_capacity=1)
    months = ["2023-01-10", "2023-03-12", "2023-05-20", "2023-07-04", "2023-09-15"]
    memory.add_memories(
        [
            {
                "user_input": "I went to a concert with friends.",
                "agent_response": "Fun!",
                "timestamp": f"{day} 20:00:00",
                "meta_data": {"message_id": day},
            }
            for day in months
        ]
    )
    memory.flush()
    units = memory.retrieve_memory("Which concert did I go to in July 2023?", top_k=1).all_units
    best = max(units, key=lambda u: u.score)
    assert best.source_ids == ("2023-07-04",)


def test_pages_written_by_another_instance_are_found(
    make_memory: Callable[..., MemoryOS], store_factory: Callable[[], Any]
) -> None:
    reader = make_memory()
    reader.add_memory("I like tea.", "Noted.")
    assert reader.retrieve_memory("tea").all_units  # the reader's index now exists
    writer = make_memory()
    writer.add_memory("My bicycle is a red gravel bike.", "Cool!", meta_data={"message_id": "bike"})
    found = reader.retrieve_memory("gravel bicycle", top_k=2).all_units
    assert ("bike",) in [u.source_ids for u in found]
