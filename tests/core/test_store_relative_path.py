"""A relative data path names a folder of the working directory at the time the store was built."""

from __future__ import annotations

from pathlib import Path

import pytest

from memoryos_core import HashingEmbedder, MemoryOS


def test_default_path_after_chdir_is_a_new_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chroma caches embedded clients by the path string: "./memoryos_data" opened again from another
    folder must not reach the first folder's pages."""
    monkeypatch.delenv("MEMORYOS_DATA", raising=False)
    monkeypatch.delenv("MEMORYOS_CHROMA_URL", raising=False)
    for name in ("first", "second"):
        folder = tmp_path / name
        folder.mkdir()
        monkeypatch.chdir(folder)
        memory = MemoryOS(embedder=HashingEmbedder())
        try:
            memory.add_memory(f"I live in the {name} folder.", "Noted.", user_id="alice")
            pages = memory.export_memory(user_id="alice")["pages"]
            assert [page["user_input"] for page in pages] == [f"I live in the {name} folder."]
        finally:
            memory.close()
        assert (folder / "memoryos_data").is_dir()
