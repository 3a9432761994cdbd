"""An unknown embedder name is a ConfigError at construction, listing the valid names; nothing is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from memoryos_core import ConfigError, MemoryOS
from memoryos_core.app.settings import load_settings
from memoryos_core.engine.registry import check_embedding_name, make_embedder


@pytest.mark.parametrize("name", ["no-such-model", "all-MiniLM-L6-v3", "hash:abc", "hash:1", "openai:"])
def test_an_unknown_embedding_name_is_refused_at_construction(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError) as raised:
        MemoryOS(data_storage_path=tmp_path / "data", embedding_model_name=name)
    assert repr(name) in str(raised.value)
    if not name.startswith(("hash", "openai")):
        assert "all-MiniLM-L6-v2" in str(raised.value) and "hash" in str(raised.value)
    assert not (tmp_path / "data").exists()  # refused before any store was opened


def test_an_unknown_embedding_name_is_refused_when_settings_are_parsed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"MEMORYOS_EMBEDDING.*unknown embedding 'nope'.*all-MiniLM-L6-v2"):
        load_settings(environ={"MEMORYOS_EMBEDDING": "nope"})
    with pytest.raises(ConfigError, match=r"option embedding_model_name.*unknown embedding"):
        load_settings({"embedding_model_name": "nope"}, environ={})


def test_the_documented_names_are_accepted(tmp_path: Path) -> None:
    accepted = ["all-MiniLM-L6-v2", "local", "hash", "hash:384", "openai:text-embedding-3-small"]
    accepted += ["text-embedding-3-small", "sentence-transformers:all-mpnet-base-v2", str(tmp_path)]
    for name in accepted:
        assert check_embedding_name(name) == name
    assert make_embedder("hash:32").dim == 32
