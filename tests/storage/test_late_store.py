"""The wordpiece vectors file (engine/late_store.py): int8 rows read back within their rounding, df
kept with every add, replace and remove, a PCA basis fitted at the 100th page with every row then
in its space, users kept apart, removed vectors gone from the file and its log, shared by processes,
a damaged file replaced, bad input refused whole."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from memoryos_core._exceptions import InvalidInputError
from memoryos_core.engine import late_store
from memoryos_core.engine.late_store import DIMS, FILE_NAME, FIT_PAGES, View, WordpieceFile

ROOT = Path(__file__).resolve().parents[2]
DIM = 384


def unit(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)).astype(np.float32)


def page(page_id: str, ids: list[int], seed: int) -> tuple[str, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return page_id, np.array(ids, dtype=np.int32), unit(rng.normal(size=(len(ids), DIM)))


def pages(count: int, start: int = 0, size: int = 6) -> list[tuple[str, np.ndarray, np.ndarray]]:
    return [
        page(f"p{i:03d}", [(i * 7 + k) % 50 for k in range(size)], seed=i)
        for i in range(start, start + count)
    ]


@pytest.fixture
def file(tmp_path: Path) -> Iterator[WordpieceFile]:
    opened = WordpieceFile(tmp_path / FILE_NAME)
    try:
        yield opened
    finally:
        opened.close()


def read(file: WordpieceFile, user: str, page_ids: list[str], query: list[int] | None = None) -> View:
    return file.read(user, page_ids, np.array(query or [], dtype=np.int32))


def rows_of(path: Path, table: str, user: str) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute(f"SELECT count(*) FROM {table} WHERE user = ?", (user,)).fetchone()[0])
    finally:
        db.close()


def stored_codes(path: Path, user: str, page_id: str) -> bytes:
    db = sqlite3.connect(path)
    try:
        row = db.execute("SELECT codes FROM page WHERE user = ? AND page_id = ?", (user, page_id)).fetchone()
    finally:
        db.close()
    return bytes(row[0])


def file_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.iterdir() if p.name.startswith(FILE_NAME))


def gone(blob: bytes, files: bytes) -> bool:
    """No 48-byte stretch of ``blob`` (stored codes) is left in ``files``."""
    return not any(blob[k : k + 48] in files for k in range(0, len(blob) - 48, 16))


def test_vectors_come_back_within_int8_rounding_and_ids_exactly(file: WordpieceFile) -> None:
    written = [
        page("a", [5, 9, 9, 1000], seed=1),
        page("b", [7], seed=2),
        ("empty", np.zeros(0, np.int32), np.zeros((0, DIM))),
    ]
    file.add("u", written)
    view = read(file, "u", ["a", "b", "empty", "missing"], [9, 5, 7, 1000, 123])
    assert set(view.pages) == {"a", "b", "empty"} and view.basis is None and view.page_count == 3
    for page_id, ids, vectors in written:
        got = view.pages[page_id]
        assert got.ids.dtype == np.int32 and got.ids.tolist() == ids.tolist()
        assert got.vectors.dtype == np.float32 and got.vectors.shape == (len(ids), DIM)
        step = np.abs(vectors).max(axis=1, keepdims=True) / 127  # one int8 step of each vector
        assert np.all(np.abs(got.vectors - vectors) <= step * 0.501 + 1e-7)
    assert view.df.dtype == np.float64 and view.df.tolist() == [1, 1, 1, 1, 0]
    assert np.array_equal(view.project(written[0][2]), written[0][2])  # no basis: already unit


def test_a_replaced_page_moves_df_and_its_old_vectors_go(file: WordpieceFile, tmp_path: Path) -> None:
    file.add("u", [page("a", [1, 2, 2, 3], seed=1), page("b", [3, 4], seed=2)])
    assert read(file, "u", [], [1, 2, 3, 4, 5]).df.tolist() == [1, 1, 2, 1, 0]
    old = stored_codes(tmp_path / FILE_NAME, "u", "a")
    edited = page("a", [4, 5, 5], seed=3)
    file.add("u", [edited])
    view = read(file, "u", ["a"], [1, 2, 3, 4, 5])
    assert view.df.tolist() == [0, 0, 1, 2, 1] and view.page_count == 2
    assert view.pages["a"].ids.tolist() == [4, 5, 5]
    assert np.allclose(view.pages["a"].vectors, edited[2], atol=0.01)
    assert rows_of(tmp_path / FILE_NAME, "df", "u") == 3  # wordpieces 1 and 2: their rows at 0 went
    assert old not in file_bytes(tmp_path)  # the edited page's old vectors left the file and its log


def test_remove_and_drop_take_rows_df_and_basis(file: WordpieceFile, tmp_path: Path) -> None:
    file.add("u", pages(FIT_PAGES))
    file.add("u", [page("x", [900, 901], seed=9)])
    assert read(file, "u", [], [900]).df.tolist() == [1]
    file.remove("u", ["x", "p000", "never-stored"])
    view = read(file, "u", ["x", "p000", "p001"], [900, 901])
    assert set(view.pages) == {"p001"} and view.df.tolist() == [0, 0] and view.page_count == FIT_PAGES - 1
    assert view.basis is not None
    file.drop("u")
    view = read(file, "u", ["p001"], [1, 900])
    assert view.pages == {} and view.df.tolist() == [0, 0] and view.page_count == 0 and view.basis is None
    for table in ("page", "df", "tally", "basis"):
        assert rows_of(tmp_path / FILE_NAME, table, "u") == 0, table


def test_removing_a_users_last_page_takes_the_basis_fitted_on_their_pages(
    file: WordpieceFile, tmp_path: Path
) -> None:
    stored = pages(FIT_PAGES)
    file.add("u", stored)
    file.remove("u", [page_id for page_id, _, _ in stored[1:]])
    assert read(file, "u", [], []).basis is not None  # one page left: it is in the basis's space
    file.remove("u", [stored[0][0]])
    assert rows_of(tmp_path / FILE_NAME, "basis", "u") == 0 and read(file, "u", [], []).basis is None
    file.add("u", [page("new", [1, 2], seed=5)])  # in the embedder's space again
    assert read(file, "u", ["new"], []).pages["new"].vectors.shape == (2, file.dim)


def test_the_basis_is_fitted_at_the_hundredth_page_and_every_row_moves_into_it(file: WordpieceFile) -> None:
    early = pages(FIT_PAGES - 1)
    file.add("u", early)
    before = read(file, "u", [p[0] for p in early])
    assert before.basis is None and before.pages["p000"].vectors.shape[1] == DIM
    last = page("p999", [1, 2, 3], seed=99)
    file.add("u", [last])
    view = read(file, "u", [p[0] for p in [*early, last]])
    assert view.basis is not None and view.page_count == FIT_PAGES
    mean, axes = view.basis
    assert mean.shape == (DIM,) and axes.shape == (DIM, DIMS) and axes.dtype == np.float32
    assert np.allclose(axes.T @ axes, np.eye(DIMS), atol=1e-4)
    for page_id, _, vectors in [*early, last]:
        stored = view.pages[page_id].vectors
        assert stored.shape == (len(vectors), DIMS)
        assert np.allclose(np.linalg.norm(stored, axis=1), 1.0, atol=0.02)
        cosines = np.sum(stored * view.project(vectors), axis=1) / np.linalg.norm(stored, axis=1)
        assert cosines.min() > 0.99, page_id  # a row written before the fit was re-projected the same way
    after = page("p998", [4, 5], seed=98)  # written straight into the basis's space
    file.add("u", [after])
    stored = read(file, "u", ["p998"]).pages["p998"].vectors
    assert np.sum(stored * view.project(after[2]), axis=1).min() > 0.99


def test_the_fit_waits_for_more_vectors_than_dimensions(file: WordpieceFile) -> None:
    file.add(
        "u", [(f"e{i}", np.zeros(0, np.int32), np.zeros((0, DIM), np.float32)) for i in range(FIT_PAGES)]
    )
    file.add("u", [page("few", list(range(DIMS)), seed=1)])
    assert read(file, "u", []).basis is None  # 64 vectors: too few for 64 axes
    file.add("u", [page("more", [1], seed=2)])
    view = read(file, "u", ["few", "more", "e0"])
    assert view.basis is not None and view.pages["few"].vectors.shape == (DIMS, DIMS)
    assert view.pages["e0"].vectors.shape == (0, DIMS)


def test_the_basis_holds_the_axes_of_largest_variance_and_a_sample_gives_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    data = np.zeros((3_000, DIM), np.float32)
    data[:, DIMS : 2 * DIMS] = rng.normal(scale=3.0, size=(3_000, DIMS))  # the spread lies in these
    data[:, :DIMS] = rng.normal(scale=0.1, size=(3_000, DIMS))
    mean, axes = late_store._pca(data + 1.0)
    assert np.allclose(mean, 1.0, atol=0.2)
    assert np.sum(axes[DIMS : 2 * DIMS] ** 2) > DIMS * 0.99
    monkeypatch.setattr(late_store, "FIT_SAMPLE", 300)  # of 600 vectors: a fixed-seed sample
    bases = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        file = WordpieceFile(tmp_path / name / FILE_NAME)
        file.add("u", pages(FIT_PAGES))
        bases.append(read(file, "u", []).basis)
        file.close()
    assert bases[0] is not None and bases[1] is not None and np.array_equal(bases[0][1], bases[1][1])


def test_users_never_see_each_others_rows(file: WordpieceFile) -> None:
    file.add("u", [page("same", [1, 2], seed=1), page("only-u", [3], seed=2)])
    file.add("v", [page("same", [2, 7], seed=3)])
    u, v = (
        read(file, "u", ["same", "only-u"], [1, 2, 7]),
        read(file, "v", ["same", "only-u"], [1, 2, 7]),
    )
    assert set(u.pages) == {"same", "only-u"} and set(v.pages) == {"same"}
    assert u.pages["same"].ids.tolist() == [1, 2] and v.pages["same"].ids.tolist() == [2, 7]
    assert (
        u.df.tolist() == [1, 1, 0] and v.df.tolist() == [0, 1, 1] and (u.page_count, v.page_count) == (2, 1)
    )
    file.add("u", pages(FIT_PAGES))
    assert read(file, "u", []).basis is not None and read(file, "v", ["same"]).basis is None
    assert read(file, "v", ["same"]).pages["same"].vectors.shape == (2, DIM)
    file.drop("v")
    assert set(read(file, "u", ["same", "only-u"]).pages) == {"same", "only-u"}


def test_removed_vectors_leave_the_file_and_its_log_which_are_private(
    file: WordpieceFile, tmp_path: Path
) -> None:
    file.add("u", pages(FIT_PAGES))
    file.add("u", [page("p050secret", list(range(30)), seed=5077)])
    around = [page(f"p050s{i:03d}", list(range(30)), seed=1000 + i) for i in range(200)]
    file.add("u", around)  # rows on both sides of it: its page splits, rows move
    file.add("v", [page("v-secret", [1, 2, 3, 4], seed=5078)])  # 384-d rows (v has no basis)
    secret, other = (
        stored_codes(tmp_path / FILE_NAME, "u", "p050secret"),
        stored_codes(tmp_path / FILE_NAME, "v", "v-secret"),
    )
    assert len(secret) == 30 * DIMS and secret in file_bytes(tmp_path) and other in file_bytes(tmp_path)
    file.remove("u", ["p050secret"])
    assert gone(secret, file_bytes(tmp_path)) and (tmp_path / (FILE_NAME + "-wal")).stat().st_size == 0
    file.drop("v")
    assert gone(other, file_bytes(tmp_path)) and (tmp_path / (FILE_NAME + "-wal")).stat().st_size == 0
    for path in tmp_path.iterdir():
        assert not stat.S_IMODE(path.stat().st_mode) & 0o077, path
    assert stat.S_IMODE((tmp_path / FILE_NAME).stat().st_mode) == 0o600


def test_two_files_on_one_path_see_each_others_writes(tmp_path: Path) -> None:
    a, b = WordpieceFile(tmp_path / FILE_NAME), WordpieceFile(tmp_path / FILE_NAME)
    try:
        a.add("u", pages(10))
        assert read(b, "u", ["p003"]).page_count == 10
        b.remove("u", ["p003"])
        assert "p003" not in read(a, "u", ["p003"]).pages
        a.add("u", pages(FIT_PAGES, start=10))
        first = read(b, "u", ["p004"])
        assert first.basis is not None and first.pages["p004"].vectors.shape[1] == DIMS
        a.drop("u")
        assert read(a, "u", ["p004"]).pages == {}
        a.add("u", pages(FIT_PAGES, start=500, size=3))  # a new basis (b still holds the old one)
        seen_by_b, seen_by_a = read(b, "u", []).basis, read(a, "u", []).basis
        assert seen_by_a is not None and seen_by_b is not None
        assert not np.allclose(seen_by_b[1], first.basis[1]) and np.array_equal(seen_by_b[1], seen_by_a[1])
    finally:
        a.close()
        b.close()


def test_threads_and_processes_writing_at_once_lose_no_page(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        from memoryos_core.engine.late_store import WordpieceFile
        file = WordpieceFile(sys.argv[1])
        rng = np.random.default_rng(int(sys.argv[3]))
        for i in range(60):
            vectors = rng.normal(size=(4, 384))
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            ids = np.arange(4, dtype=np.int32) + i
            file.add("u", [(f"{sys.argv[2]}{i}", ids, vectors.astype(np.float32))])
        file.close()
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    path = tmp_path / FILE_NAME
    writers = [
        subprocess.Popen([sys.executable, "-c", script, str(path), n, str(s)], env=env)
        for s, n in enumerate("ab")
    ]
    here = WordpieceFile(path)
    try:
        threads = [
            threading.Thread(target=lambda k=k: here.add("u", pages(30, start=k * 30))) for k in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [w.wait(timeout=120) for w in writers] == [0, 0]
        names = [f"{n}{i}" for n in "ab" for i in range(60)] + [f"p{i:03d}" for i in range(60)]
        view = read(here, "u", names, [62])
        assert view.page_count == 180 and set(view.pages) == set(names) and view.basis is not None
        assert {p.vectors.shape[1] for p in view.pages.values()} == {DIMS}
        assert view.df.tolist() == [2]  # a59 and b59 alone hold wordpiece 62
    finally:
        here.close()


def test_a_damaged_file_is_removed_and_the_file_works_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / FILE_NAME
    path.write_bytes(b"not a database at all " * 400)
    with caplog.at_level(logging.WARNING, logger="memoryos"):
        garbage = WordpieceFile(path)
        assert read(garbage, "u", ["a"]).pages == {}
    assert any("unreadable" in r.getMessage() for r in caplog.records)
    garbage.add("u", [page("a", [1], seed=1)])
    fresh = WordpieceFile(path)
    assert set(read(fresh, "u", ["a"]).pages) == {"a"}
    db = sqlite3.connect(path)  # a row whose sizes disagree: the file is damaged, removed
    db.execute("UPDATE page SET codes = x'00'")
    db.commit()
    db.close()
    assert read(fresh, "u", ["a"], [1]).pages == {}
    assert read(garbage, "u", ["a"]).pages == {}  # the other holder sees the new file, not the old
    garbage.add("u", [page("b", [2], seed=2)])
    assert set(read(fresh, "u", ["a", "b"]).pages) == {"b"}
    garbage.close()
    fresh.close()


@pytest.mark.parametrize(
    "bad",
    [
        ("bad", np.array([1, 2], np.int32), unit(np.ones((3, DIM)))),  # 2 ids, 3 vectors
        ("bad", np.array([1], np.int32), unit(np.ones((1, 128)))),  # another dimension
        ("bad", np.array([1], np.int32), np.full((1, DIM), np.nan, np.float32)),
        ("bad", np.array([1], np.int32), np.full((1, DIM), np.inf, np.float32)),
        ("bad", np.array([1.5]), unit(np.ones((1, DIM)))),  # ids that are not integers
        ("bad", np.array([-1], np.int32), unit(np.ones((1, DIM)))),
        ("", np.array([1], np.int32), unit(np.ones((1, DIM)))),
    ],
)
def test_bad_input_raises_and_writes_nothing(
    file: WordpieceFile, tmp_path: Path, bad: tuple[str, np.ndarray, np.ndarray]
) -> None:
    with pytest.raises(InvalidInputError):
        file.add("u", [page("good", [1], seed=1), bad])
    view = read(file, "u", ["good", "bad", ""], [1])
    assert view.pages == {} and view.page_count == 0 and view.df.tolist() == [0]
    assert rows_of(tmp_path / FILE_NAME, "page", "u") == 0


def test_an_unusable_folder_raises_os_or_operational_errors(tmp_path: Path) -> None:
    missing = WordpieceFile(tmp_path / "gone" / FILE_NAME)
    with pytest.raises(OSError):
        missing.add("u", [page("a", [1], seed=1)])
    with pytest.raises(OSError):
        missing.read("u", ["a"], np.zeros(0, np.int32))
