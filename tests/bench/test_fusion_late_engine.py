"""``bench fusion --late``'s engine rows: the bench's late scores are the ones a real MemoryOS gives the
same pages (its basis fitted at the 100th page, 64-dimensional rows), and at weight 0 the rerank changes
nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memoryos_core import MemoryOS
from memoryos_core._config import RetrievalConfig
from memoryos_core.bench import fusion, fusion_late_engine
from memoryos_core.bench.fusion_data import ConversationFeatures, conversation_features
from memoryos_core.bench.locomo import ingest
from memoryos_core.bench.locomo_data import load_locomo
from memoryos_core.engine.late_store import DIMS, FIT_PAGES
from memoryos_core.engine.repository import Repository
from memoryos_core.policy import late, ranking
from memoryos_core.storage.chroma import ChromaStore

PREBUILT_GRAPHS = ("int8",)
SAMPLE = Path(__file__).resolve().parents[2] / "notebooks" / "data" / "locomo_sample.json"
REPEATS = 4
"""The sample's five sessions, told this many times (a year apart): past FIT_PAGES pages."""


def _long_sample(path: Path) -> Path:
    """The sample conversation with its sessions repeated (renumbered, dated a year later each time)."""
    sample = json.loads(SAMPLE.read_text())[0]
    talk = sample["conversation"]
    sessions = sorted(
        int(key.split("_")[1]) for key in talk if key.startswith("session_") and key.count("_") == 1
    )
    conversation: dict[str, Any] = {"speaker_a": talk["speaker_a"], "speaker_b": talk["speaker_b"]}
    for repeat in range(REPEATS):
        for number in sessions:
            new = repeat * len(sessions) + number
            conversation[f"session_{new}_date_time"] = talk[f"session_{number}_date_time"].replace(
                "2023", str(2023 + repeat)
            )
            conversation[f"session_{new}"] = [
                {**turn, "dia_id": f"D{new}:{turn['dia_id'].split(':')[1]}"}
                for turn in talk[f"session_{number}"]
            ]
    path.write_text(json.dumps([{**sample, "conversation": conversation}]))
    return path


@dataclass
class Ingested:
    data: Path
    memory: MemoryOS
    user: str
    page_ids: list[str]  # the memory's, in store order
    features: ConversationFeatures
    embedder: Any


@pytest.fixture(scope="module")
def ingested(private_onnx_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingested]:
    """The long sample ingested as ``bench locomo`` does, without write-behind (one write per session),
    and its features as ``bench fusion`` reads them."""
    from memoryos_core.embeddings.local import LocalEmbedder

    folder = tmp_path_factory.mktemp("late-engine")
    data = _long_sample(folder / "long.json")
    (conversation,) = load_locomo(data)
    embedder = LocalEmbedder(precision="int8")
    store = ChromaStore(path=str(folder / "chroma"))
    memory = MemoryOS(store=store, embedder=embedder, llm=None, background=False)
    try:
        ingest(memory, [conversation], show_progress=False)
        pages = memory.store.get("pages", where={"user_id": conversation.user_id}, with_embeddings=True)
        pages = sorted(pages, key=lambda r: int(r.metadata.get("created_ns", 0)))
        segments = Repository(memory.store).active_segments(conversation.user_id)
        features = conversation_features(conversation, pages, segments, embedder)
        yield Ingested(data, memory, conversation.user_id, [r.id for r in pages], features, embedder)
    finally:
        memory.close()
        store.close()


def test_the_engine_forms_late_scores_are_a_real_memoryos(ingested: Ingested, tmp_path: Path) -> None:
    (encoded,) = fusion_late_engine.encode_all(ingested.data, [ingested.features], ingested.embedder)
    assert len(encoded.pages) == len(ingested.page_ids) > FIT_PAGES
    assert len(encoded.batches) == 5 * REPEATS and sum(encoded.batches) == len(encoded.pages)
    stored = fusion_late_engine.store(encoded, tmp_path, ingested.embedder.dim)
    assert stored.view.basis is not None  # fitted when the 100th page arrived
    assert {p.vectors.shape[1] for p in stored.view.pages.values()} == {DIMS}
    assert stored.row_bytes == sum(len(p.ids) * (4 + 2 + DIMS) for p in stored.view.pages.values())
    fused = fusion.scores(ingested.features, fusion.Variant())
    index = ingested.memory._late  # the memory's own LateIndex, on the file its ingest wrote
    weight = RetrievalConfig().late_weight
    for q, question in enumerate(load_locomo(ingested.data)[0].questions):
        top = ranking.top_positions(fused[q].astype(np.float64), RetrievalConfig().late_pages)
        probe = index.probe(question.question)
        probe.vector()
        expected = index.lift(ingested.user, [ingested.page_ids[p] for p in top], probe)
        assert expected is not None
        got = late.lift(fusion_late_engine.question_scores(stored, encoded, q, top), weight)
        np.testing.assert_allclose(
            got, expected, rtol=0, atol=1e-6, err_msg=question.question
        )  # (bitwise, here)
        assert np.abs(expected).max() > 0.5  # (a rerank that moves pages)


def test_at_weight_zero_the_engine_rerank_is_the_shipped_ranking(ingested: Ingested, tmp_path: Path) -> None:
    (encoded,) = fusion_late_engine.encode_all(ingested.data, [ingested.features], ingested.embedder)
    stored = fusion_late_engine.store(encoded, tmp_path, ingested.embedder.dim)
    evaluation = fusion.Evaluation([ingested.features])
    fused = fusion.scores(ingested.features, fusion.Variant())
    zero, shipped = fusion_late_engine.reranked(stored, encoded, fused, 100, [0.0, 2.0])
    scorer = evaluation.scorers[0]
    assert np.array_equal(scorer.recall(zero), evaluation.rows(fusion.Variant()))
    order = np.argsort(-zero, axis=-1, kind="stable")
    assert np.array_equal(order, np.argsort(-fused, axis=-1, kind="stable"))
    assert not np.array_equal(np.argsort(-shipped, axis=-1, kind="stable")[:, :10], order[:, :10])
