"""The contracts: every shipped store, embedder and LLM satisfies its runtime-checkable protocol, and the
store's lifecycle and capabilities (open/close, exclusive access, local path) behave as declared."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from memoryos_core import (
    LLM,
    ChatMessage,
    ChromaStore,
    Embedder,
    FunctionLLM,
    HashingEmbedder,
    MemoryStore,
    Record,
    RuleBasedLLM,
    ScriptedLLM,
)
from memoryos_core._exceptions import StorageError
from memoryos_core.embeddings.openai import OpenAIEmbedder
from memoryos_core.llm.base import AsyncLLM, acomplete
from memoryos_core.llm.openai import OpenAILLM
from memoryos_core.storage import _folder
from memoryos_core.storage.base import ErasableStore


def _page(user: str, text: str) -> Record:
    return Record(f"{user}-{text}", text, {"user_id": user}, [1.0, 0.0, 0.0, 0.0])


def test_chroma_store_is_a_memory_store(tmp_path: Path) -> None:
    assert isinstance(ChromaStore(path=str(tmp_path / "db")), MemoryStore)
    assert isinstance(ChromaStore(), MemoryStore)


def test_a_store_missing_the_lifecycle_is_not_a_memory_store() -> None:
    class Partial:  # the record calls only: no open/close, exclusive or local_path
        def upsert(self, kind: str, records: Sequence[Record]) -> None: ...
        def get(self, kind: str) -> list[Record]: ...
        def delete(self, kind: str) -> None: ...
        def query(self, kind: str, embedding: Sequence[float]) -> list[tuple[Record, float]]: ...
        def count(self, kind: str) -> int: ...

    assert not isinstance(Partial(), MemoryStore)


def test_chroma_store_is_erasable_and_a_plain_store_is_not(tmp_path: Path) -> None:
    assert isinstance(ChromaStore(path=str(tmp_path / "db")), ErasableStore)
    assert isinstance(ChromaStore(), ErasableStore)

    class Plain:  # a whole MemoryStore, without the optional erasure
        local_path = None

        def open(self, *, dim: int, embedder_name: str) -> None: ...
        def close(self) -> None: ...
        def exclusive(self) -> contextlib.AbstractContextManager[bool]:
            return contextlib.nullcontext(False)

        def upsert(self, kind: str, records: Sequence[Record]) -> None: ...
        def get(self, kind: str) -> list[Record]: ...
        def delete(self, kind: str) -> None: ...
        def query(self, kind: str, embedding: Sequence[float]) -> list[tuple[Record, float]]: ...
        def count(self, kind: str) -> int: ...

    assert isinstance(Plain(), MemoryStore)
    assert not isinstance(Plain(), ErasableStore)


def test_the_embedders_are_embedders() -> None:
    hashing = HashingEmbedder(16)
    openai = OpenAIEmbedder(api_key="k", base_url="http://127.0.0.1:9/v1", dim=8)  # dim given: no request
    assert isinstance(hashing, Embedder) and isinstance(openai, Embedder)
    assert (hashing.dim, openai.dim) == (16, 8)
    with pytest.raises(AttributeError):
        hashing.dim = 32  # type: ignore[misc]  # read-only, as the contract says


def test_the_local_embedder_is_an_embedder(local_embedder: Embedder) -> None:
    assert isinstance(local_embedder, Embedder)
    with pytest.raises(AttributeError):
        local_embedder.dim = 3  # type: ignore[misc]


def test_the_llms_are_llms_and_only_native_ones_async() -> None:
    llms: list[object] = [
        RuleBasedLLM(),
        ScriptedLLM(["x"]),
        FunctionLLM(lambda messages, json_mode: "y"),
        OpenAILLM(api_key="k", base_url="http://127.0.0.1:9/v1"),
    ]
    assert all(isinstance(llm, LLM) for llm in llms)
    assert [isinstance(llm, AsyncLLM) for llm in llms] == [False, False, False, True]
    assert not isinstance(object(), LLM)


async def test_acomplete_runs_complete_in_a_thread_without_a_native_twin() -> None:
    seen: list[bool] = []

    def reply(messages: Sequence[ChatMessage], json_mode: bool) -> str:
        seen.append(json_mode)
        return "threaded"

    assert await acomplete(FunctionLLM(reply), [ChatMessage("user", "hi")], json_mode=True) == "threaded"
    assert seen == [True]


def test_close_keeps_the_records_and_open_connects_again(store_factory: Callable[[], ChromaStore]) -> None:
    store = store_factory()
    store.open(dim=4, embedder_name="test")
    store.upsert("pages", [_page("alice", "kept")])
    store.close()
    store.close()  # twice is fine
    with pytest.raises(StorageError, match="not open"):
        store.count("pages", where={"user_id": "alice"})
    store.open(dim=4, embedder_name="test")
    assert [record.document for record in store.get("pages", where={"user_id": "alice"})] == ["kept"]
    store.close()


def test_a_closed_embedded_store_lets_its_folder_go(tmp_path: Path) -> None:
    store = ChromaStore(path=str(tmp_path / "db"))
    store.open(dim=4, embedder_name="test")
    folder = _folder._FOLDERS[str((tmp_path / "db").resolve())]
    assert store in set(folder._listeners)
    store.close()
    assert store not in set(folder._listeners)  # the folder may now be closed when no one else uses it


def test_exclusive_access_and_local_path_per_kind_of_store(tmp_path: Path, chroma_server_url: str) -> None:
    embedded = ChromaStore(path=str(tmp_path / "db"))
    server = ChromaStore(url=chroma_server_url, prefix="contracts_")
    memory_only = ChromaStore()
    for store in (embedded, server, memory_only):
        store.open(dim=4, embedder_name="test")
    try:
        assert embedded.local_path == str(tmp_path / "db")
        assert server.local_path is None and memory_only.local_path is None
        with embedded.exclusive() as atomic:  # the folder's lock: a read then a write are atomic
            assert atomic is True
        for store in (server, memory_only):
            with store.exclusive() as atomic:
                assert atomic is False  # nothing to hold: the caller confirms its write
    finally:
        for store in (embedded, server, memory_only):
            store.close()


def test_a_closed_server_store_leaves_nothing_of_its_client_in_memory(chroma_server_url: str) -> None:
    from chromadb.api.shared_system_client import SharedSystemClient

    engines = []
    for _ in range(3):  # an app that reconnects: each client made and closed
        store = ChromaStore(url=chroma_server_url, prefix="contracts_")
        store.open(dim=4, embedder_name="test")
        engines.append(store._client._system)
        store.close()
    held = list(SharedSystemClient._identifier_to_system.values())
    assert not [engine for engine in engines if any(engine is other for other in held)]


def test_the_backends_are_public_and_loaded_only_when_used() -> None:
    code = (
        "import sys, memoryos_core\n"
        "heavy = ('memoryos_core.llm.openai', 'memoryos_core.embeddings.local', 'memoryos_core._network')\n"
        "assert not [name for name in heavy if name in sys.modules], sorted(sys.modules)\n"
        "from memoryos_core import LocalEmbedder, OpenAILLM\n"
        "from memoryos_core import embeddings, llm\n"
        "assert OpenAILLM is llm.OpenAILLM is sys.modules['memoryos_core.llm.openai'].OpenAILLM\n"
        "assert LocalEmbedder is embeddings.LocalEmbedder\n"
        "assert {'LLM', 'OpenAILLM', 'ScriptedLLM', 'FunctionLLM', 'RuleBasedLLM'} <= set(llm.__all__)\n"
        "assert set(embeddings.__all__) == {'Embedder', 'HashingEmbedder', 'LocalEmbedder', 'OpenAIEmbedder',"
        " 'OnnxFolderEmbedder', 'QueryEmbedder', 'Wordpieces'}\n"
        "assert all(getattr(llm, name) for name in llm.__all__)\n"
        "assert all(getattr(embeddings, name) for name in embeddings.__all__)\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=_env()
    )
    assert done.stdout.strip() == "ok", done.stderr


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
