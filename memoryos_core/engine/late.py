"""The pages' wordpiece vectors for the late rerank (``policy/late.py``): taken from the pass that embeds
each page, kept in the file beside an embedded store (``late_store.py``), read by a recall for the pages it
re-ranks.

On when the embedder gives wordpiece vectors (``embed_wordpieces``: ``LocalEmbedder``), the store has a
local folder and ``retrieval.late_pages`` > 0; otherwise every method does nothing and pages are embedded
as before. The page-embedding call sites embed through :meth:`LateIndex.embed`, which keeps each text's
wordpieces for a moment; :meth:`LateIndex.add`, called once the pages are stored, writes them (a page
whose wordpieces were not kept is encoded again). Writing them never fails an add: a page without
vectors is left neutral by the rerank. Removing them does fail a delete: deleted words must leave the disk,
so :meth:`LateIndex.remove` and :meth:`LateIndex.drop` erase from a file an earlier run left even while the
rerank is off (``late_pages`` 0).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from memoryos_core._blas import one_blas_thread
from memoryos_core._config import RetrievalConfig
from memoryos_core._exceptions import EmbeddingError, InvalidInputError, StorageError
from memoryos_core.embeddings.base import Embedder, Wordpieces, embed_queries, embed_wordpieces
from memoryos_core.engine.late_store import FILE_NAME, View, WordpieceFile
from memoryos_core.policy import late
from memoryos_core.storage.base import Record

logger = logging.getLogger("memoryos")

STASH_PAGES = 2048
"""Pages whose wordpieces wait between their embedding and their write (in float16, ~20 KB a LoCoMo
page; the oldest beyond it are dropped, and encoded again when written)."""

PREFETCH_CHUNK = 25
"""Rows a recall's ``prefetch`` reads at a time (it stops between two when the search is back)."""

Rows = tuple[np.ndarray, np.ndarray]
"""A page's kept wordpieces: ids (int32) and unit vectors (float32)."""


@dataclass(frozen=True)
class Prefetched:
    """What ``LateIndex.prefetch`` read, and what it compared of it with the query."""

    view: View
    rows: Rows | None
    """The query's wordpieces it compared the pages with (None: not embedded yet when it read)."""
    maxima: dict[str, np.ndarray]
    """Per page id, its column of ``policy.late.maxima`` for ``rows`` (in ``view``'s space)."""


class Probe:
    """One recall's query: its vector for the searches and, with the late rerank on, its wordpieces
    (read from the same pass, in the recall pool's thread)."""

    def __init__(self, embedder: Embedder, query: str, *, wordpieces: bool) -> None:
        self._embedder, self.query, self._wordpieces = embedder, query, wordpieces
        self.rows: Rows | None = None

    def vector(self) -> list[float]:
        if not self._wordpieces:
            return embed_queries(self._embedder, [self.query])[0]
        found = embed_wordpieces(self._embedder, [self.query], query=True)
        if found is None:
            return embed_queries(self._embedder, [self.query])[0]
        vectors, pieces = found
        rows = _rows(pieces[0], self.query, page=False)
        self.rows = rows if len(rows[0]) else None  # only stop words: nothing to re-rank by
        return vectors[0]


class LateIndex:
    """See the module docstring. ``folder``: the embedded store's folder, or None (a Chroma server)."""

    def __init__(self, embedder: Embedder, config: RetrievalConfig, folder: Callable[[], str | None]) -> None:
        self.embedder, self.config = embedder, config
        self._folder = folder
        self._file: WordpieceFile | None = None
        self._resolved = False
        self._leftover: WordpieceFile | None = None  # with the rerank off: a file an earlier run left
        self._lock = threading.Lock()
        self._stash: OrderedDict[str, Rows] = OrderedDict()

    @property
    def file(self) -> WordpieceFile | None:
        """The file (opened on first use, once the store's folder exists), or None when off."""
        if not self._resolved:
            with self._lock:
                if not self._resolved:
                    method = getattr(self.embedder, "embed_wordpieces", None)  # not isinstance: no dim read
                    folder = self._folder() if self.config.late_pages > 0 and callable(method) else None
                    path = Path(folder) / FILE_NAME if folder else None
                    self._file = WordpieceFile(path, dim=self.embedder.dim) if path else None
                    self._resolved = True
        return self._file

    def probe(self, query: str) -> Probe:
        return Probe(self.embedder, query, wordpieces=self.file is not None)

    # --- write side -------------------------------------------------------------------------
    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Page vectors, as ``embedder.embed`` returns them; each text's wordpieces are kept for ``add``."""
        if self.file is None:
            return self.embedder.embed(texts)
        found = embed_wordpieces(self.embedder, texts)
        if found is None:
            return self.embedder.embed(texts)
        vectors, pieces = found
        with self._lock:
            for text, piece in zip(texts, pieces):
                ids, unit_vectors = _rows(piece, text, page=True)
                self._stash[text] = ids, unit_vectors.astype(np.float16)
                self._stash.move_to_end(text)
            while len(self._stash) > STASH_PAGES:
                self._stash.popitem(last=False)
        return vectors

    def add(self, user_id: str, records: Sequence[Record]) -> None:
        """Write the wordpieces of pages just stored (encoded now if they were not kept). A failure is
        logged, not raised: the pages are stored, and rank without a late score."""
        file = self.file
        if file is None or not records:
            return
        try:
            with self._lock:
                kept = {r.document: self._stash.pop(r.document) for r in records if r.document in self._stash}
            missing = list(dict.fromkeys(r.document for r in records if r.document not in kept))
            if missing:
                found = embed_wordpieces(self.embedder, missing)
                if found is not None:
                    kept.update((t, _rows(p, t, page=True)) for t, p in zip(missing, found[1]))
            pages = [
                (r.id, kept[r.document][0], kept[r.document][1].astype(np.float32))
                for r in records
                if r.document in kept
            ]
            file.add(user_id, pages)
        except (EmbeddingError, InvalidInputError, sqlite3.Error, OSError) as exc:
            logger.warning(
                "wordpiece vectors of %d pages not kept (%s): they rank without them", len(records), exc
            )

    def remove(self, user_id: str, page_ids: Sequence[str]) -> None:
        """Erase the pages' wordpieces (before the store deletes the pages, or replaces their text).

        Raises:
            StorageError: the file could not be written: the delete must not go on.
        """
        file = self._erasable()
        if file is not None and page_ids:
            _erasing(lambda: file.remove(user_id, page_ids))

    def drop(self, user_id: str) -> None:
        """Erase every wordpiece vector of the user. Raises StorageError as ``remove``."""
        file = self._erasable()
        if file is not None:
            _erasing(lambda: file.drop(user_id))

    def _erasable(self) -> WordpieceFile | None:
        """The file to erase from: the one in use, or with the rerank off (``late_pages`` 0, an embedder
        without wordpieces) the one an earlier run left beside the store, if there is one."""
        file = self.file
        if file is not None:
            return file
        with self._lock:
            if self._leftover is None:
                folder = self._folder()
                path = Path(folder) / FILE_NAME if folder else None
                if path is None or not path.exists():
                    return None
                self._leftover = WordpieceFile(path)  # (its dim is read by add and read only)
            return self._leftover

    # --- read side --------------------------------------------------------------------------
    def prefetch(
        self,
        user_id: str,
        page_ids: Sequence[str],
        until: Callable[[], bool] = lambda: False,
        probe: Probe | None = None,
    ) -> Prefetched | None:
        """The rows of pages likely to be among the fused ranking's first, for ``lift``: a recall reads
        them while its query is embedded and searched, ``PREFETCH_CHUNK`` at a time until ``until()``
        (the search is back: what is left is read by ``lift`` if it is needed). Once ``probe`` holds the
        query's wordpieces (its embedding is done), the pages read are compared with them as well (their
        ``policy.late.maxima``: what does not depend on the pages ``lift`` re-ranks). None with the
        rerank off, the file unreadable or nothing read."""
        file = self.file
        if file is None:
            return None
        read: View | None = None
        rows: Rows | None = None
        query: np.ndarray | None = None  # the query's wordpieces in the space of the rows read
        maxima: dict[str, np.ndarray] = {}
        for start in range(0, len(page_ids), PREFETCH_CHUNK):
            if until():
                break
            try:
                view = file.read(user_id, page_ids[start : start + PREFETCH_CHUNK], np.zeros(0, np.int32))
            except (sqlite3.Error, OSError):
                break  # (``lift`` reads them, and says so if it cannot)
            joined = view if read is None else _joined(read, view)
            if joined is None:
                break  # (re-projected meanwhile: ``lift`` compares what it reads with what was read)
            read = joined
            rows = rows or (probe.rows if probe is not None else None)  # (set by the recall pool's thread)
            if rows is not None and not until():
                query = read.project(rows[1]) if query is None else query
                todo = [p for p, page in read.pages.items() if p not in maxima and len(page.ids)]
                with one_blas_thread():
                    found = late.maxima(query, [read.pages[p].vectors for p in todo])
                maxima.update(zip(todo, found.T))
        return None if read is None else Prefetched(read, rows, maxima)

    def lift(
        self, user_id: str, page_ids: Sequence[str], probe: Probe | None, read: Prefetched | None = None
    ) -> np.ndarray | None:
        """What each of ``page_ids`` (the fused ranking's first) gains from its late score; None when
        there is nothing to re-rank with (no query wordpieces, no file, or it cannot be read).
        ``read``: what ``prefetch`` read and compared (only the pages it lacks are read and compared
        here, unless the user's basis changed in between: then all are)."""
        file = self.file
        if file is None or probe is None or probe.rows is None or len(page_ids) < 2:
            return None
        ids, vectors = probe.rows
        missing = [p for p in page_ids if read is None or p not in read.view.pages]
        known: dict[str, np.ndarray] = {}
        try:
            view = file.read(user_id, missing, ids)
            if read is not None and len(missing) < len(page_ids):
                joined = _joined(read.view, view)  # (None: re-projected meanwhile, so all are read again)
                view = joined if joined is not None else file.read(user_id, page_ids, ids)
                known = read.maxima if joined is not None and read.rows is probe.rows else {}
        except (sqlite3.Error, OSError) as exc:
            logger.warning("wordpiece vectors unreadable (%s): recall without the late rerank", exc)
            return None
        if not view.pages:
            return None
        # A long page's product with the query, and the projection, can be the size OpenBLAS spreads over
        # every core.
        with one_blas_thread():
            scores = page_scores(view, page_ids, vectors, known)
        return late.lift(scores, self.config.late_weight)

    def close(self) -> None:
        with self._lock:
            self._stash.clear()
            for file in (self._file, self._leftover):
                if file is not None:
                    file.close()


def page_scores(
    view: View, page_ids: Sequence[str], query: np.ndarray, known: Mapping[str, np.ndarray] | None = None
) -> np.ndarray:
    """The late score of each of ``page_ids`` for a query's kept wordpieces' unit vectors (``query``, in
    the embedder's space), from what ``view`` read for them (its ``df``: of the query's wordpieces, in
    order); NaN for a page without a row."""
    pages = [view.pages.get(page_id) for page_id in page_ids]
    weights = late.idf(view.df, view.page_count)
    columns = [known.get(page_id) for page_id in page_ids] if known else None
    return late.recall(view.project(query), weights, [p.vectors if p else None for p in pages], columns)


def _joined(first: View, then: View) -> View | None:
    """``then`` with ``first``'s rows as well, when the two reads' rows are in one space (no basis for
    both, or the same one); None when the user's basis changed between them."""
    a, b = first.basis, then.basis
    same = a is b or (a is not None and b is not None and all(np.array_equal(x, y) for x, y in zip(a, b)))
    return replace(then, pages={**first.pages, **then.pages}) if same else None


def _rows(pieces: Wordpieces, text: str, *, page: bool) -> Rows:
    mask = late.kept(pieces.tokens, pieces.offsets, text, page=page)
    return pieces.ids[mask].astype(np.int32), late.unit(pieces.vectors[mask].astype(np.float32))


def _erasing(call: Callable[[], None]) -> None:
    try:
        call()
    except (sqlite3.Error, OSError) as exc:
        raise StorageError(f"cannot erase wordpiece vectors: {exc}") from exc
