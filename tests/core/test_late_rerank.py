"""The late rerank in the engine, on the real local embedder and an embedded store: wordpieces written
on every write path, read by a recall, erased with the pages and the user."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memoryos_core import MemoryConfig, MemoryOS, StorageError
from memoryos_core._config import RetrievalConfig
from memoryos_core.engine import late_store
from memoryos_core.engine.late_store import FILE_NAME, WordpieceFile

PAGES = [
    ("I went to the farmers market and bought apples.", "Fresh apples are the best."),
    ("My brother called me about his new job in Berlin.", "Berlin is a great city."),
    ("We adopted a puppy from the animal shelter on Sunday.", "A puppy! What breed is it?"),
    ("The printer at work jammed again this morning.", "Printers always break at the worst time."),
    ("I am reading a novel about sailors in the Arctic.", "Sounds like a cold adventure."),
    ("My knee hurts after the football match.", "Rest it and put some ice on it."),
]


def _pages(count: int = len(PAGES)) -> list[dict[str, Any]]:
    return [
        {"user_input": u, "agent_response": a, "meta_data": {"message_id": f"m{i}"}}
        for i, (u, a) in enumerate(PAGES[:count])
    ]


def _file(memory: MemoryOS) -> Path:
    folder = memory.store.local_path
    assert folder is not None
    return Path(folder) / FILE_NAME


def _rows(memory: MemoryOS, user: str = "alice") -> dict[str, np.ndarray]:
    """The page ids and wordpiece ids stored for ``user``, read with a file of its own."""
    file = WordpieceFile(_file(memory))
    try:
        with sqlite3.connect(_file(memory)) as db:
            ids = [row[0] for row in db.execute("SELECT page_id FROM page WHERE user = ?", (user,))]
        view = file.read(user, ids, np.zeros(0, dtype=np.int32))
        return {page_id: page.ids for page_id, page in view.pages.items()}
    finally:
        file.close()


@pytest.fixture
def memory(make_memory: Callable[..., MemoryOS], local_embedder: Any) -> MemoryOS:
    memory = make_memory(embedder=local_embedder)
    memory.add_memories(_pages())
    memory.flush()
    return memory


@pytest.mark.parametrize("store_factory", ["embedded"], indirect=True)
def test_every_page_keeps_its_content_wordpieces_and_a_recall_uses_them(memory: MemoryOS) -> None:
    rows = _rows(memory)
    assert len(rows) == len(PAGES)
    tokenizer = memory.embedder.embed_wordpieces  # (the same tokenizer the rows were made with)
    _, pieces = tokenizer(["We adopted a puppy"])
    adopted = int(pieces[0].ids[list(pieces[0].tokens).index("adopted")])
    the = int(pieces[0].ids[0])  # "we": a stop word, never kept
    assert sum(adopted in ids for ids in rows.values()) == 1
    assert not any(the in ids for ids in rows.values())
    context = memory.retrieve_memory("Which pet did they adopt?", update_heat=False)
    pages = [u for u in context.all_units if u.tier in ("short_term", "mid_term")]
    late = {u.text.split("User: ")[1][:12]: u.score_parts["late"] for u in pages}
    assert late["We adopted a"] == max(late.values()) > 0
    for unit in pages:
        assert sum(unit.score_parts.values()) == pytest.approx(unit.score, abs=1e-4)


@pytest.mark.parametrize("store_factory", ["embedded"], indirect=True)
def test_a_query_of_stop_words_only_is_not_re_ranked(memory: MemoryOS) -> None:
    context = memory.retrieve_memory("What was it that they did?", update_heat=False)
    assert context.all_units and all(u.score_parts.get("late", 0.0) == 0.0 for u in context.all_units)


@pytest.mark.parametrize("store_factory", ["embedded"], indirect=True)
def test_late_pages_0_turns_it_off(make_memory: Callable[..., MemoryOS], local_embedder: Any) -> None:
    config = MemoryConfig(retrieval=RetrievalConfig(late_pages=0))
    memory = make_memory(embedder=local_embedder, config=config)
    memory.add_memories(_pages())
    memory.flush()
    context = memory.retrieve_memory("Which pet did they adopt?", update_heat=False)
    assert all(u.score_parts.get("late", 0.0) == 0.0 for u in context.all_units)
    assert not _file(memory).exists()


@pytest.mark.parametrize("store_factory", ["embedded"], indirect=True)
def test_an_embedder_without_wordpieces_makes_no_file(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory()  # HashingEmbedder
    memory.add_memories(_pages())
    memory.retrieve_memory("puppy", update_heat=False)
    assert not _file(memory).exists()


@pytest.mark.parametrize("store_factory", ["embedded"], indirect=True)
def test_write_behind_pages_get_their_wordpieces_once_stored(
    make_memory: Callable[..., MemoryOS], local_embedder: Any
) -> None:
    memory = make_memory(embedder=local_embedder, background=True)
    added = [memory.add_memory(u, a) for u, a in PAGES[:3]]
    memory.retrieve_memory("puppy", update_heat=False)  # embeds the pending pages on demand
    memory.flush()
    assert set(_rows(memory)) == {r.page_id for r in added}


@pytest.mark.parametrize("store_factory", ["embedded"], indirect=True)
def test_an_edit_replaces_the_pages_wordpieces(memory: MemoryOS, local_embedder: Any) -> None:
    page = next(p for p in memory.recent_pages() if "printer" in p.user_input)
    memory.update_memory(page.id, user_input="The espresso machine leaked water.")
    _, pieces = local_embedder.embed_wordpieces(["printer espresso"])
    printer, espresso = (int(i) for i in pieces[0].ids[:2])
    ids = _rows(memory)[page.id]
    assert espresso in ids and printer not in ids


@pytest.mark.parametrize("store_factory", ["embedded"], indirect=True)
def test_a_deleted_page_and_a_deleted_user_leave_no_vectors_on_disk(memory: MemoryOS) -> None:
    page = next(p for p in memory.recent_pages() if "puppy" in p.user_input)
    with sqlite3.connect(_file(memory)) as db:
        (blob,) = db.execute("SELECT codes FROM page WHERE page_id = ?", (page.id,)).fetchone()
    memory.delete_memory(page.id)
    assert page.id not in _rows(memory)
    files = [_file(memory), Path(f"{_file(memory)}-wal")]
    assert not any(blob[:64] in f.read_bytes() for f in files if f.exists())
    memory.delete_memory(everything=True)
    assert _rows(memory) == {}
    with sqlite3.connect(_file(memory)) as db:
        assert not db.execute("SELECT count(*) FROM df WHERE user = 'alice'").fetchone()[0]


@pytest.mark.parametrize("store_factory", ["embedded"], indirect=True)
def test_a_delete_that_cannot_erase_the_vectors_raises_and_keeps_the_page(
    memory: MemoryOS, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = memory.recent_pages()[0]

    def locked(*args: Any) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(late_store.WordpieceFile, "remove", locked)
    with pytest.raises(StorageError, match="wordpiece"):
        memory.delete_memory(page.id)
    assert page.id in {p.id for p in memory.recent_pages()}


@pytest.mark.parametrize("store_factory", ["embedded"], indirect=True)
def test_an_unusable_file_costs_the_rerank_only(
    make_memory: Callable[..., MemoryOS], local_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(late_store.WordpieceFile, "add", full)
    memory = make_memory(embedder=local_embedder)
    memory.add_memories(_pages())
    context = memory.retrieve_memory("Which pet did they adopt?", update_heat=False)
    assert len(memory.recent_pages()) == len(PAGES)
    assert any("puppy" in u.text for u in context.all_units)
    assert all(u.score_parts.get("late", 0.0) == 0.0 for u in context.all_units)


@pytest.mark.parametrize("store_factory", ["embedded"], indirect=True)
def test_imported_pages_get_their_wordpieces(memory: MemoryOS) -> None:
    before = _rows(memory)
    memory.import_memory(memory.export_memory(), user_id="bob")
    bob = _rows(memory, "bob")
    assert len(bob) == len(PAGES) and all(len(ids) for ids in bob.values())
    assert _rows(memory).keys() == before.keys()


@pytest.mark.parametrize("store_factory", ["embedded"], indirect=True)
def test_with_the_rerank_off_deletes_and_edits_still_erase_the_vectors(
    memory: MemoryOS, make_memory: Callable[..., MemoryOS], local_embedder: Any
) -> None:
    pages = {p.user_input[:6]: p.id for p in memory.recent_pages()}
    memory.close()
    off = make_memory(
        embedder=local_embedder,
        store=memory.store,
        config=MemoryConfig(retrieval=RetrievalConfig(late_pages=0)),
    )
    off.update_memory(pages["The pr"], user_input="The espresso machine leaked water.")
    off.delete_memory(pages["We ado"])
    assert set(_rows(off)) == set(pages.values()) - {pages["The pr"], pages["We ado"]}
    off.delete_memory(everything=True)
    assert _rows(off) == {}


@pytest.mark.parametrize("store_factory", ["embedded"], indirect=True)
def test_an_edit_that_cannot_erase_the_old_vectors_raises_and_changes_nothing(
    memory: MemoryOS, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = next(p for p in memory.recent_pages() if "printer" in p.user_input)

    def locked(*args: Any) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(late_store.WordpieceFile, "remove", locked)
    with pytest.raises(StorageError, match="wordpiece"):
        memory.update_memory(page.id, user_input="The espresso machine leaked water.")
    assert next(p for p in memory.recent_pages() if p.id == page.id).user_input == page.user_input


@pytest.mark.parametrize("store_factory", ["embedded"], indirect=True)
def test_an_unusable_file_fails_no_add_nor_recall_and_a_delete_keeps_the_page(memory: MemoryOS) -> None:
    path = _file(memory)
    memory.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.mkdir()  # opening it fails with an OSError, not a SQLite error
    memory.add_memory("We adopted a kitten too.", "Two pets!")
    context = memory.retrieve_memory("Which pet did they adopt?", update_heat=False)
    assert any("puppy" in u.text for u in context.all_units)
    assert all(u.score_parts.get("late", 0.0) == 0.0 for u in context.all_units)
    page = memory.recent_pages()[0]
    with pytest.raises(StorageError, match="wordpiece"):
        memory.delete_memory(page.id)
    assert page.id in {p.id for p in memory.recent_pages()}


@pytest.mark.parametrize("store_factory", ["embedded"], indirect=True)
def test_an_import_encodes_each_imported_page_once(
    memory: MemoryOS, local_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory.add_memories(_pages(2), user_id="bob")  # bob's own pages are not encoded again
    encoded: list[str] = []

    def counted(method: Callable[..., Any]) -> Callable[..., Any]:
        def call(texts: list[str], *args: Any, **kwargs: Any) -> Any:
            encoded.extend(texts)
            return method(texts, *args, **kwargs)

        return call

    for name in ("embed", "embed_wordpieces"):
        monkeypatch.setattr(local_embedder, name, counted(getattr(local_embedder, name)))
    memory.import_memory(memory.export_memory(), user_id="bob")
    assert sum("User: " in text for text in encoded) == len(PAGES)
    assert len(_rows(memory, "bob")) == len(PAGES) + 2


@pytest.mark.parametrize("store_factory", ["embedded"], indirect=True)
def test_stored_pages_of_a_dead_writers_journal_get_their_vectors(
    memory: MemoryOS, make_memory: Callable[..., MemoryOS], local_embedder: Any
) -> None:
    from memoryos_core.engine.pending import _line, journal_folder

    stored = memory.store.get("pages", where={"user_id": "alice"})
    unwritten = [r.id for r in stored[:2]]  # its writer died before writing these to the store,
    memory.store.delete("pages", ids=unwritten, where={"user_id": "alice"})
    memory.close()
    file = WordpieceFile(_file(memory))
    file.drop("alice")  # and between the store's write and the wordpieces' for the others
    file.close()
    folder = journal_folder(memory.store)
    assert folder is not None
    folder.mkdir(exist_ok=True)
    (folder / "1-dead.jsonl").write_bytes(b"".join(_line(r) for r in stored))
    reopened = make_memory(embedder=local_embedder, store=memory.store)
    reopened.retrieve_memory("puppy", update_heat=False)  # opens the store: the journal is replayed
    assert set(_rows(reopened)) == {r.id for r in stored}


@pytest.mark.parametrize("store_factory", ["embedded"], indirect=True)
def test_bulk_loaded_pages_get_their_wordpieces(
    make_memory: Callable[..., MemoryOS], local_embedder: Any
) -> None:
    memory = make_memory(embedder=local_embedder)
    prepared = memory._prepare_pages(_pages(), [f"pg_{i}" for i in range(len(PAGES))], "alice", "test")
    memory._store_pages_once("alice", prepared)
    assert set(_rows(memory)) == {f"pg_{i}" for i in range(len(PAGES))}


@pytest.mark.parametrize("store_factory", ["embedded"], indirect=True)
def test_the_re_ranked_pages_stay_above_the_rest_and_every_score_still_adds_up(
    make_memory: Callable[..., MemoryOS], local_embedder: Any
) -> None:
    writer = make_memory(embedder=local_embedder)
    writer.add_memories(_pages())
    writer.close()

    def ranked(late_pages: int) -> list[Any]:
        config = MemoryConfig(retrieval=RetrievalConfig(late_pages=late_pages))
        memory = make_memory(embedder=local_embedder, config=config)
        context = memory.retrieve_memory("Which pet did they adopt?", top_k=len(PAGES), update_heat=False)
        units = [u for u in context.all_units if u.tier in ("short_term", "mid_term")]
        memory.close()
        return sorted(units, key=lambda u: -u.score)

    fused = ranked(0)
    reranked = ranked(2)
    assert {u.page_ids for u in reranked[:2]} == {u.page_ids for u in fused[:2]}
    shifted = [u.score_parts["late"] for u in reranked[2:]]
    assert len(set(shifted)) == 1 and shifted[0] < 0  # the rest moved down together
    for unit in reranked:
        assert sum(unit.score_parts.values()) == pytest.approx(unit.score, abs=1e-4)


@pytest.mark.parametrize("store_factory", ["embedded"], indirect=True)
def test_a_page_added_while_the_user_is_deleted_leaves_no_vectors_behind(
    memory: MemoryOS, monkeypatch: pytest.MonkeyPatch
) -> None:
    delete = memory.store.delete

    def added_meanwhile(kind: str, *args: Any, **kwargs: Any) -> None:
        if kind == "pages":  # another thread's add, between the first erase and the store's delete
            memory.add_memory("We adopted a kitten too.", "Two pets!")
        delete(kind, *args, **kwargs)

    monkeypatch.setattr(memory.store, "delete", added_meanwhile)
    memory.delete_memory(everything=True)
    assert memory.store.get("pages", where={"user_id": "alice"}) == []
    assert _rows(memory) == {}


@pytest.mark.parametrize("store_factory", ["embedded"], indirect=True)
def test_the_best_pages_come_from_the_re_ranked_ones_in_the_order_of_their_final_scores(
    make_memory: Callable[..., MemoryOS], local_embedder: Any
) -> None:
    """With ``top_k`` + the short-term capacity within ``late_pages``, a recall takes its best pages from the
    re-ranked ones (above all others) instead of sorting every page again: the same pages, in the same
    order, as the first of the whole ranked list."""
    subjects = ["puppy", "printer", "apples", "Berlin", "sailors", "knee", "violin", "garden"]
    pages = [
        {
            "user_input": f"Day {i}: we talked about the {s} and the {subjects[(i * 3) % 8]}.",
            "agent_response": "I see.",
        }
        for i, s in enumerate(subjects * 4)
    ]
    config = MemoryConfig(retrieval=RetrievalConfig(late_pages=12))
    memory = make_memory(embedder=local_embedder, config=config, short_term_capacity=3)
    memory.add_memories(pages)
    memory.flush()
    moved = 0
    for query in (
        "Which puppy did they adopt?",
        "What about the violin and the garden?",
        "Who went to Berlin?",
    ):
        whole = memory.retrieve_memory(query, top_k=len(pages), update_heat=False).units
        first = memory.retrieve_memory(query, top_k=5, update_heat=False).units
        ranked = [u for u in whole if u.tier not in ("user_knowledge", "assistant_knowledge")]
        assert [(u.id, u.score) for u in first] == [(u.id, u.score) for u in ranked[:5]]
        fused = sorted(ranked, key=lambda u: u.score - u.score_parts["late"], reverse=True)
        moved += {u.id for u in fused[:5]} != {u.id for u in first}
    assert moved  # (the rerank changed which pages are first: the order they are taken in matters)
