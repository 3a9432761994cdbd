"""Token counting with tiktoken that works offline and never silently counts 0."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import tempfile
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from memoryos_core._types import ChatMessage

logger = logging.getLogger("memoryos")

_BLOB_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
_ENV_LOCK = threading.Lock()
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def _cache_dirs() -> list[Path]:
    """Folders that may hold tiktoken's BPE files, named by the sha1 of their URL."""
    dirs = [os.environ.get("TIKTOKEN_CACHE_DIR"), os.environ.get("DATA_GYM_CACHE_DIR")]
    dirs.append(os.path.join(tempfile.gettempdir(), "data-gym-cache"))
    # llama-index-core ships cl100k_base and o200k_base for offline use; find it without importing it.
    spec = importlib.util.find_spec("llama_index")
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            dirs.append(os.path.join(root, "core", "_static", "tiktoken_cache"))
    return [Path(d) for d in dirs if d]


class TokenCounter:
    """Counts tokens with a tiktoken encoding found on disk.

    When no BPE file can be found or fetched, it falls back to an approximate count
    (words and punctuation), logs a WARNING once and sets ``exact`` to False.
    """

    def __init__(self, encoding: str = "o200k_base") -> None:
        self.encoding_name = encoding
        self._encoding = _load_encoding(encoding)
        self.exact = self._encoding is not None

    def count(self, text: str) -> int:
        if not text:
            return 0
        if self._encoding is not None:
            return len(self._encoding.encode(text, disallowed_special=()))
        return max(1, round(len(_WORD.findall(text)) * 1.3))

    def count_messages(self, messages: Sequence[ChatMessage]) -> int:
        """Tokens of a chat request, with OpenAI's per-message overhead (3 + 3 for the reply)."""
        return sum(self.count(m.content) + 4 for m in messages) + 3


@lru_cache(maxsize=4)
def _load_encoding(name: str):  # type: ignore[no-untyped-def]
    import tiktoken

    file_name = hashlib.sha1(_BLOB_URL.format(name=name).encode()).hexdigest()
    for directory in _cache_dirs():
        if (directory / file_name).is_file():
            # tiktoken reads its cache folder from the environment at call time only.
            with _ENV_LOCK:
                previous = os.environ.get("TIKTOKEN_CACHE_DIR")
                os.environ["TIKTOKEN_CACHE_DIR"] = str(directory)
                try:
                    return tiktoken.get_encoding(name)
                except Exception as exc:  # a corrupt file: try the next folder
                    logger.debug("tiktoken file in %s unusable: %s", directory, exc)
                finally:
                    if previous is None:
                        os.environ.pop("TIKTOKEN_CACHE_DIR", None)
                    else:
                        os.environ["TIKTOKEN_CACHE_DIR"] = previous
    if os.environ.get("MEMORYOS_OFFLINE", "1") != "0":
        logger.warning(
            "tiktoken encoding %s not found on disk; counting tokens approximately "
            "(install llama-index-core, or set TIKTOKEN_CACHE_DIR, or MEMORYOS_OFFLINE=0 to download)",
            name,
        )
        return None
    try:
        return tiktoken.get_encoding(name)
    except Exception as exc:
        logger.warning("tiktoken encoding %s unavailable (%s); counting tokens approximately", name, exc)
        return None


@lru_cache(maxsize=1)
def default_counter() -> TokenCounter:
    return TokenCounter()
