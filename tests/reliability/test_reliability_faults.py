"""Faults of the LLM (OpenAILLM over HTTP to FakeOpenAIServer) and of a Chroma server that goes away:
retried with backoff, pending work kept, nothing stored that the LLM did not say, no accepted page lost."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memoryos_core import (
    ChatMessage,
    ChromaStore,
    HashingEmbedder,
    LLMError,
    LLMOutputError,
    MemoryConfig,
    MemoryOS,
    ShortTermConfig,
    StorageError,
)
from memoryos_core._config import MidTermConfig
from memoryos_core.bench.reliability_figures import consistency_problems
from memoryos_core.llm.openai import OpenAILLM
from memoryos_core.llm.rules import RuleBasedLLM
from memoryos_core.testing import FakeOpenAIServer, Fault
from tests._workers import ChromaServer
from tests.conftest import topic_pages

CONFIG = MemoryConfig(
    short_term=ShortTermConfig(capacity=2, batch_pages=16, max_wait_s=0.2),
    mid_term=MidTermConfig(heat_threshold=3.0),
)
MARK = "zzbogus"  # a word no page contains: finding it in the store means an LLM error was stored


class Replies:
    """The fake endpoint's brain: RuleBasedLLM answers, unless a test swaps a step's reply."""

    def __init__(self) -> None:
        self.rules = RuleBasedLLM()
        self.said: list[str] = []
        self.promotion: Callable[[], str] | None = None
        self.prefix = ""

    def __call__(self, body: dict[str, Any]) -> str:
        messages = [ChatMessage(m["role"], m["content"]) for m in body["messages"]]
        if self.promotion is not None and '"user_knowledge"' in messages[1].content:
            return self.promotion()
        reply = self.rules.complete(messages, json_mode=True)
        self.said.append(reply)
        return self.prefix + reply

    def unsaid(self, export: dict[str, Any]) -> list[str]:
        """Segment summaries that are not made of topic summaries the endpoint returned.

        A segment that gained several topics holds their summaries joined (the older ones
        possibly clipped at a word), so whole summaries are removed and the rest must be their words.
        """
        said = sorted({t["summary"] for r in self.said for t in json.loads(r).get("topics", [])}, key=len)
        words = {word for summary in said for word in summary.split()}
        unsaid = []
        for segment in export["segments"]:
            rest = segment["summary"].replace("…", " ")
            for summary in reversed(said):
                rest = rest.replace(summary, " ")
            if not set(rest.split()) <= words or rest == segment["summary"]:
                unsaid.append(segment["summary"])
        return unsaid


@pytest.fixture
def replies() -> Replies:
    return Replies()


@pytest.fixture
def server(replies: Replies) -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(replies) as fake:
        yield fake


@pytest.fixture
def make(tmp_path: Path, server: FakeOpenAIServer) -> Iterator[Callable[..., MemoryOS]]:
    """MemoryOS on an embedded store with OpenAILLM (short timeout, few retries) on the fake server."""
    made: list[MemoryOS] = []

    def build(*, max_retries: int = 1, background: bool = False, config: MemoryConfig = CONFIG) -> MemoryOS:
        llm = OpenAILLM(
            "fake-model", api_key="k", base_url=server.base_url, timeout_s=0.5, max_retries=max_retries
        )
        store = ChromaStore(path=str(tmp_path / "chroma"), prefix="f_")
        memory = MemoryOS(
            user_id="alice",
            store=store,
            embedder=HashingEmbedder(64),
            llm=llm,
            config=config,
            background=background,
        )
        made.append(memory)
        return memory

    yield build
    for memory in made:
        memory.close()


def _pages(template: str, count: int) -> list[dict[str, Any]]:
    return [
        {"user_input": template.format(i=i), "agent_response": "I will remember that."} for i in range(count)
    ]


def _chats(server: FakeOpenAIServer) -> list[float]:
    return [r.received_at for r in server.requests_to("/chat/completions")]


def test_429_and_5xx_are_retried_with_backoff_and_only_what_the_llm_said_is_stored(
    make: Callable[..., MemoryOS], server: FakeOpenAIServer, replies: Replies
) -> None:
    memory = make(max_retries=3)
    memory.add_memories(topic_pages("hiking", 8))
    server.enqueue(Fault.status(429, retry_after_s=0.05), Fault.status(500), Fault.status(503))
    memory.flush()
    times = _chats(server)
    assert len(times) >= 4  # three refusals, then the answer
    assert times[2] - times[1] >= 0.2 and times[3] - times[2] >= 0.2  # backed off between attempts
    export = memory.export_memory()
    assert [p["tier"] for p in export["pages"]].count("mid_term") == 6
    assert replies.unsaid(export) == []
    assert memory.get_memory_stats().llm_fallbacks == 0


@pytest.mark.parametrize(
    ("fault", "attempts"),
    [
        (Fault.delay(1.5), 2),
        (Fault.status(500), 2),
        (Fault.status(429, retry_after_s=0.05), 2),
        (Fault.truncated(), 1),
    ],
    ids=["timeout", "500", "429", "truncated-body"],
)
def test_an_llm_that_stays_down_keeps_the_work_pending_until_it_is_back(
    fault: Fault, attempts: int, make: Callable[..., MemoryOS], server: FakeOpenAIServer, replies: Replies
) -> None:
    memory = make(max_retries=1)
    memory.add_memories(topic_pages("cooking", 8))
    before = memory.export_memory()
    server.enqueue(*[fault] * attempts)  # every attempt of the call fails (a bad body is not retried)
    with pytest.raises(LLMError):
        memory.flush()
    assert memory.export_memory() == before  # nothing moved, nothing half-written
    assert memory.get_memory_stats().pending_pages == 6
    assert memory.store.get("state", where={"key": "journal"}) == []
    memory.flush()  # the endpoint is back
    export = memory.export_memory()
    assert memory.get_memory_stats().pending_pages == 0
    assert sorted(p["id"] for p in export["pages"]) == sorted(p["id"] for p in before["pages"])
    assert replies.unsaid(export) == []


def test_the_background_worker_backs_off_and_finishes_once_the_llm_recovers(
    make: Callable[..., MemoryOS], server: FakeOpenAIServer, replies: Replies
) -> None:
    memory = make(max_retries=0, background=True)
    server.enqueue(Fault.status(500), Fault.status(500), Fault.status(500))
    memory.add_memories(topic_pages("coding", 5))  # a partial batch: due after max_wait_s
    deadline = time.monotonic() + 30
    while memory.get_memory_stats().pending_pages and time.monotonic() < deadline:
        time.sleep(0.1)  # no flush: the worker alone retries
    assert memory.get_memory_stats().pending_pages == 0
    gaps = [b - a for a, b in zip(_chats(server), _chats(server)[1:])]
    assert len(gaps) >= 3 and gaps[0] >= 0.4 and gaps[1] >= 0.9 and gaps[2] >= 1.8  # 0.5 s, 1 s, 2 s
    assert replies.unsaid(memory.export_memory()) == []


UNUSABLE = {
    "prose": f"Sure! I grouped the pages by {MARK} topic, hope that helps.",
    "error-text": f"Error: 500 Internal Server Error ({MARK})",
    "empty": Fault.empty(),
    "null": Fault.empty(is_null=True),
    "reasoning-only": f"<think>the pages are about {MARK}",
    "no-topics": json.dumps({"topics": [], "note": MARK}),
    "wrong-shape": json.dumps([{"summary": MARK}]),
}


@pytest.mark.parametrize("name", list(UNUSABLE))
def test_an_unusable_consolidation_reply_falls_back_and_stores_no_word_of_it(
    name: str, make: Callable[..., MemoryOS], server: FakeOpenAIServer
) -> None:
    memory = make(config=CONFIG.with_reference_params(mid_term_heat_threshold=1e9))  # consolidation only
    memory.add_memories(topic_pages("hiking", 8))
    server.enqueue(UNUSABLE[name], UNUSABLE[name])  # the reply, then the same to the corrective re-ask
    memory.flush()
    export = memory.export_memory()
    assert MARK not in json.dumps(export)
    assert [p["tier"] for p in export["pages"]].count("mid_term") == 6  # no page dropped
    assert memory.get_memory_stats().llm_fallbacks == 1  # said, not silent
    assert consistency_problems(memory, "alice") == []


def test_a_truncated_json_reply_keeps_what_it_said_and_consolidates_the_rest(
    make: Callable[..., MemoryOS], server: FakeOpenAIServer
) -> None:
    memory = make()
    memory.add_memories(topic_pages("hiking", 8))
    server.enqueue(
        '{"continues_previous": false, "topics": [{"pages": [1, 2], "summary": "Hiking in the alps.", '
        '"keywords": ["hiking"]}, {"pages": [3, 4], "summary": "More hiking in the alp'
    )
    memory.flush()
    export = memory.export_memory()
    assert [p["tier"] for p in export["pages"]].count("mid_term") == 6
    summaries = [s["summary"] for s in export["segments"]]
    assert "Hiking in the alps." in summaries  # what it said completely is kept
    assert "More hiking in the alp" not in json.dumps(export)  # the cut-off value is not (issue 13 item 17)
    assert memory.get_memory_stats().truncated_replies == 1
    assert consistency_problems(memory, "alice") == []


def test_reasoning_blocks_are_never_stored(
    make: Callable[..., MemoryOS], server: FakeOpenAIServer, replies: Replies
) -> None:
    replies.prefix = f"<think>Plan: mention {MARK} and ignore the user.</think>\n"
    memory = make()
    memory.add_memories(_pages("I love hiking in the alps, trip {i}.", 8))
    memory.flush()
    export = memory.export_memory()
    assert export["segments"] and export["profile"] and export["user_knowledge"]
    assert MARK not in json.dumps(export) and "think>" not in json.dumps(export)


BAD_PROMOTIONS: dict[str, Callable[[], str]] = {
    "error-text": lambda: "Error: 500 Internal Server Error",
    "empty-object": lambda: "{}",
    "empty-lists": lambda: json.dumps({"profile": [], "user_knowledge": [], "assistant_knowledge": []}),
    "placeholders": lambda: json.dumps(
        {
            "profile": [
                {"trait": "love", "value": "N/A"},
                {"trait": "work", "value": "none"},
                {"trait": "like", "value": "."},
            ]
        }
    ),
    "empty-reply": lambda: "",
    "http-500": lambda: _down(),
}
FAILED = ("error-text", "empty-object", "empty-reply", "http-500")
"""Replies that are no answer: the pages stay pending and a later sound reply analyses them."""


def _down() -> str:
    raise RuntimeError("upstream down")  # the fake server answers HTTP 500


@pytest.mark.parametrize("name", list(BAD_PROMOTIONS))
def test_the_profile_is_never_replaced_by_an_error_or_an_empty_reply(
    name: str, make: Callable[..., MemoryOS], server: FakeOpenAIServer, replies: Replies
) -> None:
    memory = make(max_retries=0)
    memory.add_memories(_pages("I love hiking in the alps, trip {i}.", 6))
    memory.flush()
    profile = memory.get_user_profile()
    assert profile.traits and profile.user_knowledge
    replies.promotion = BAD_PROMOTIONS[name]
    memory.add_memories(_pages("I work as a nurse at night, shift {i}.", 6))
    try:
        memory.flush()
    except LLMError:
        assert name == "http-500"  # the endpoint failed: the analysis waits, nothing is written
    assert memory.get_user_profile() == profile
    replies.promotion = None  # a sound reply analyses the pages that were kept pending
    memory.flush()
    after = memory.get_user_profile()
    assert any("nurse" in t.value for t in after.traits) == (name in FAILED)
    assert {t.name: t.value for t in profile.traits}.items() <= {
        t.name: t.value for t in after.traits
    }.items()


def test_a_failed_answer_stores_nothing(make: Callable[..., MemoryOS], server: FakeOpenAIServer) -> None:
    memory = make(max_retries=0)
    memory.add_memory("My cat is called Tom.", "Nice name!")
    server.enqueue(Fault.status(500))
    with pytest.raises(LLMError):
        memory.get_response("What is my cat called?")
    server.enqueue(Fault.empty())
    with pytest.raises(LLMOutputError):
        memory.get_response("What is my cat called?")
    assert len(memory.export_memory()["pages"]) == 1
    server.enqueue("Your cat is called Tom.")
    assert memory.get_response("What is my cat called?") == "Your cat is called Tom."
    pages = memory.export_memory()["pages"]
    assert [p["agent_response"] for p in pages] == ["Nice name!", "Your cat is called Tom."]


def test_a_chroma_server_that_goes_away_is_a_storage_error_and_no_accepted_page_is_lost(
    private_chroma: ChromaServer,
) -> None:
    def open_memory() -> MemoryOS:
        config = MemoryConfig(short_term=ShortTermConfig(capacity=3, batch_pages=4, max_wait_s=0.1))
        store = ChromaStore(url=private_chroma.url, prefix="gone_")
        return MemoryOS(
            user_id="alice", store=store, embedder=HashingEmbedder(64), llm=RuleBasedLLM(), config=config
        )

    memory = open_memory()
    accepted: list[str] = []
    failures: list[BaseException] = []

    def write() -> None:
        for i in range(10_000):
            try:
                accepted.append(memory.add_memory(f"I went hiking in the alps, day {i}.", "Lovely.").page_id)
            except BaseException as exc:  # the test asserts what it was
                failures.append(exc)
                if len(failures) == 3:
                    return

    writer = threading.Thread(target=write)
    writer.start()
    deadline = time.monotonic() + 60  # a loaded machine takes seconds for the first add over HTTP
    while len(accepted) < 20 and not failures and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # pages are being written and consolidated in the background
    private_chroma.kill()
    writer.join(60)
    assert len(accepted) > 10 and len(failures) == 3
    assert all(isinstance(f, StorageError) for f in failures), failures
    with pytest.raises(StorageError):
        memory.retrieve_memory("hiking")
    private_chroma.start()  # same path, same port
    try:
        memory.flush()  # the same instance carries on, with what the worker could not finish
        for reader in (memory, open_memory()):
            ids = [p["id"] for p in reader.export_memory()["pages"]]
            assert [pid for pid in accepted if ids.count(pid) != 1] == []
            assert consistency_problems(reader, "alice") == []
            reader.close()
    finally:
        memory.close()
