"""``memoryos bench scale`` fills a store in bulk and times single calls at each size."""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import chromadb
import pytest
from typer.testing import CliRunner

from memoryos_core.bench.cli import bench_app
from memoryos_core.bench.locomo_data import load_locomo
from memoryos_core.bench.scale import Texts, _sentence, run_scale
from memoryos_core.storage.base import Record
from memoryos_core.storage.chroma import ChromaStore


def test_run_scale_reports_each_size_and_the_pages_really_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where its scratch store goes
    lines: list[str] = []
    result = run_scale(
        users=2,
        pages=150,  # small: the report's shape and the stored pages are tested here, not the speed
        embedder="hash",
        chroma_url=None,
        samples=6,
        sizes=[50, 150],
        progress=lines.append,
    )
    assert result["backend"] == "chroma-embedded" and result["users"] == 2
    assert [p["pages"] for p in result["points"]] == [50, 150]
    for point in result["points"]:
        for key in ("add_ms_p50", "add_ms_p95", "retrieve_ms_p50", "retrieve_ms_p95", "first_retrieve_ms"):
            assert point[key] > 0, key
        for key in ("new_process_first_retrieve_ms", "new_process_second_retrieve_ms"):
            assert point[key] > 0, key  # timed in a new process over the same store
        assert (
            point["add_ms_p95"] >= point["add_ms_p50"]
            and point["retrieve_ms_p95"] >= point["retrieve_ms_p50"]
        )
        assert point["disk_mb"] > 0 and point["rss_mb"] > 0
        assert point["add_backlog_ms"] >= 0  # what the journal's thread had left when the last add returned
    assert any("filling to 150" in line for line in lines)
    assert list(tmp_path.iterdir()) == []  # the scratch store is deleted


def test_bench_scale_command_writes_json(tmp_path: Path, chroma_server_url: str) -> None:
    out = tmp_path / "scale.json"
    args = [
        "scale",
        "--pages",
        "200",
        "--samples",
        "4",
        "--chroma-url",
        chroma_server_url,
        "--out",
        str(out),
    ]
    done = CliRunner().invoke(bench_app, args)
    assert done.exit_code == 0, done.output
    data = json.loads(out.read_text())
    assert data["backend"] == "chroma-http" and [p["pages"] for p in data["points"]] == [200]
    assert "recall" in done.output and "│   200 │" in done.output  # the table
    server = urlparse(chroma_server_url)
    client = chromadb.HttpClient(host=server.hostname, port=server.port)
    left = [c.name for c in client.list_collections() if c.name.startswith("scale")]
    assert left == []  # its collections are dropped from the server


def test_the_scale_table_fits_an_80_column_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    point = {"add_ms_p50": 0.48, "add_ms_p95": 1.12, "retrieve_ms_p50": 8.36, "retrieve_ms_p95": 10.68}
    point |= {"delete_page_ms_p50": 5215.7, "erase_ms": 3584.05, "rss_mb": 986.55, "disk_mb": 506.71}
    points = [{"pages": pages, **point} for pages in (1000, 10000, 100000)]
    figures = {"backend": "chroma-embedded", "embedder": "hashing-384", "points": points}
    monkeypatch.setattr("memoryos_core.bench.scale.run_scale", lambda **_: figures)

    done = CliRunner().invoke(bench_app, ["scale", "--pages", "100000"], env={"COLUMNS": "80"})

    assert done.exit_code == 0, done.output
    assert "…" not in done.output and max(map(len, done.output.splitlines())) <= 80
    assert "│ 100000 │" in done.output and "5216" in done.output and "8.4" in done.output
    assert all(word in done.output for word in ("recall", "delete", "erase", "rss", "disk", "507"))


def test_locomo_text_draws_the_files_messages_and_questions(locomo_file: Callable[..., Path]) -> None:
    path = locomo_file()
    conversations = load_locomo(path)
    messages = {f"{t.speaker}: {t.text}" for c in conversations for _, turns in c.sessions for t in turns}
    questions = {q.question for c in conversations for q in c.questions}
    texts = Texts("locomo", random.Random(1), path)

    drawn = [texts.message() for _ in range(200)]
    asked = [texts.query() for _ in range(50)]

    assert set(drawn) <= messages and len(set(drawn)) > len(messages) // 2  # drawn from all of them
    assert "Ann: I adopted a golden retriever puppy called Biscuit." in messages
    assert set(asked) <= questions and len(set(asked)) > 1


def test_synthetic_text_is_the_sentences_the_benchmark_always_drew() -> None:
    texts, rng = Texts("synthetic", random.Random(5)), random.Random(5)
    assert [texts.message(), texts.query()] == [_sentence(rng), _sentence(rng, 8)]  # figures stay comparable


def test_a_text_needs_its_file_and_only_it(locomo_file: Callable[..., Path]) -> None:
    with pytest.raises(ValueError, match="LoCoMo file"):
        Texts("locomo", random.Random(1))
    with pytest.raises(ValueError, match="LoCoMo file"):
        Texts("synthetic", random.Random(1), locomo_file())
    with pytest.raises(ValueError, match="one of"):
        Texts("shakespeare", random.Random(1))
    done = CliRunner().invoke(bench_app, ["scale", "--pages", "10", "--text", "locomo"])
    assert done.exit_code != 0 and "--data" in done.output


def test_run_scale_on_locomo_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, locomo_file: Callable[..., Path]
) -> None:
    data = locomo_file()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    stored: list[str] = []
    real_upsert = ChromaStore.upsert

    def upsert(self: ChromaStore, kind: str, records: list[Record]) -> None:
        stored.extend(r.document for r in records if kind == "pages")
        real_upsert(self, kind, records)  # type: ignore[arg-type]

    monkeypatch.setattr(ChromaStore, "upsert", upsert)
    result = run_scale(
        users=1, pages=40, embedder="hash", chroma_url=None, samples=3, sizes=[40], text="locomo", data=data
    )

    assert result["text"] == "locomo" and [p["pages"] for p in result["points"]] == [40]
    assert result["points"][0]["retrieve_ms_p50"] > 0
    speakers = ("Ann: ", "Bob: ", "Cid: ", "Dee: ")
    assert len(stored) >= 40 and all(any(s in page for s in speakers) for page in stored[:40])
