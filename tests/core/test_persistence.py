"""All state persists: a new instance, or a new process after a kill, continues where the last stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence

import pytest

from memoryos_core import ChromaStore, MemoryOS, Record, StorageError
from memoryos_core.llm.rules import RuleBasedLLM
from tests.conftest import topic_pages

CHILD = textwrap.dedent("""
    import json, os, signal, sys
    from memoryos_core import ChromaStore, HashingEmbedder, MemoryOS
    spec = json.loads(sys.argv[1])
    store = ChromaStore(path=spec["path"], url=spec["url"], prefix=spec["prefix"])
    memory = MemoryOS(user_id="alice", store=store, embedder=HashingEmbedder(64), background=False,
                      short_term_capacity=3)
    ids = [memory.add_memory(f"I went hiking in the alps, day {i}", "nice",
                             meta_data={"message_id": str(i)}).page_id for i in range(spec["pages"])]
    print(json.dumps(ids), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no flush, no close: consolidation never ran
""")


def _spec(store: ChromaStore, pages: int) -> str:
    return json.dumps({"path": store._path, "url": store._url, "prefix": store.prefix, "pages": pages})


def test_a_killed_writer_loses_no_page_and_its_pending_work_resumes(
    store_factory: Callable[[], ChromaStore], make_memory: Callable[..., MemoryOS]
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, _spec(store_factory(), 20)],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"PYTHONPATH": os.getcwd()},
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    accepted = json.loads(done.stdout.splitlines()[-1])
    memory = make_memory(short_term_capacity=3)
    assert memory.get_memory_stats().pending_pages == 17  # the new instance sees the pending work
    memory.flush()
    export = memory.export_memory()
    assert sorted(p["id"] for p in export["pages"]) == sorted(accepted)
    assert [p["tier"] for p in export["pages"]].count("mid_term") == 17
    assert sum(len(s["page_ids"]) for s in export["segments"]) == 17


def test_a_new_instance_sees_everything_the_last_one_wrote(
    store_factory: Callable[[], ChromaStore], make_memory: Callable[..., MemoryOS]
) -> None:
    first = make_memory(llm=RuleBasedLLM(pages_per_topic=8), short_term_capacity=2, mid_term_heat_threshold=3)
    first.add_memories(
        [
            {
                "user_input": f"I love hiking in the alps, trip {i}.",
                "agent_response": "I am glad.",
                "meta_data": {"message_id": str(i)},
            }
            for i in range(10)
        ]
    )
    first.flush()
    before = first.export_memory()
    first.close()
    second = make_memory(short_term_capacity=2)
    after = second.export_memory()
    assert after == before
    assert after["segments"] and after["user_knowledge"] and after["profile"]
    assert second.get_memory_stats().cost.llm_calls == first.get_memory_stats().cost.llm_calls > 0


class _CrashAfterJournal(ChromaStore):
    """Fails the first write of consolidated pages: the journal and segments are written, the pages not."""

    armed = True

    def upsert(self, kind: str, records: Sequence[Record]) -> None:  # type: ignore[override]
        if self.armed and kind == "pages" and any(r.metadata.get("tier") == "mid_term" for r in records):
            self.armed = False
            raise StorageError("disk went away", backend="test")
        super().upsert(kind, records)  # type: ignore[arg-type]


def test_an_interrupted_batch_is_replayed_from_its_journal(
    store_factory: Callable[[], ChromaStore], make_memory: Callable[..., MemoryOS]
) -> None:
    template = store_factory()
    crashing = _CrashAfterJournal(path=template._path, url=template._url, prefix=template.prefix)
    memory = make_memory(store=crashing, short_term_capacity=2)
    memory.add_memories(topic_pages("hiking", 8))
    with pytest.raises(StorageError):
        memory.flush()
    assert crashing.get("state", where={"key": "journal"})  # the plan was kept
    events: list[str] = []
    reopened = make_memory(short_term_capacity=2, on_event=lambda name, details: events.append(name))
    reopened.get_memory_stats()  # opening finds and schedules the pending work
    reopened.flush()
    assert "resumed" in events
    export = reopened.export_memory()
    ids = [p["id"] for p in export["pages"]]
    assert len(ids) == len(set(ids)) == 8
    assert [p["tier"] for p in export["pages"]].count("mid_term") == 6
    assert sum(len(s["page_ids"]) for s in export["segments"]) == 6
    assert not reopened.store.get("state", where={"key": "journal"})


def test_reads_larger_than_one_chroma_page_are_complete(store_factory: Callable[[], ChromaStore]) -> None:
    from memoryos_core.storage import _calls as chroma_calls

    store = store_factory()
    store.open(dim=2, embedder_name="x")
    records = [Record(f"r{i}", "", {"user_id": "u", "n": i}, [1.0, float(i)]) for i in range(23)]
    store.upsert("pages", records)
    original = chroma_calls._PAGE
    chroma_calls._PAGE = 5  # force several pages of reads
    try:
        assert sorted(r.metadata["n"] for r in store.get("pages", where={"user_id": "u"})) == list(range(23))
        assert store.count("pages", where={"user_id": "u"}) == 23
        assert len(store.get("pages", ids=[f"r{i}" for i in range(23)])) == 23
        assert len(store.get("pages", where={"user_id": "u"}, limit=7)) == 7
    finally:
        chroma_calls._PAGE = original
