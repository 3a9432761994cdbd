"""A store records its embedder's vector space (model name, plus ``@int8`` for LocalEmbedder's int8) and
never takes vectors of another: a new store gets int8 by default, a store made before int8 became the
default (the bare name: fp32) keeps fp32 with the default embedder, and a precision or model that
contradicts the store is a DimensionMismatchError that writes nothing. Embedded and `chroma run` stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from memoryos_core import DimensionMismatchError, MemoryOS
from memoryos_core.bench.reliability_child import StoreSpec
from memoryos_core.embeddings.fake import HashingEmbedder
from memoryos_core.embeddings.local import LocalEmbedder
from tests.conftest import child_store_spec

pytestmark = pytest.mark.usefixtures("private_onnx_cache")  # built graphs stay out of the home folder
PREBUILT_GRAPHS = ("fp32", "int8")  # both precisions' graphs, built once per run (tests/conftest.py)

OLD = "I keep a tortoise called Humphrey"
NEW = "Humphrey the tortoise likes strawberries"


@pytest.fixture(params=["embedded", pytest.param("server", marks=pytest.mark.slow)])  # server: 3-18 s each
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreSpec]:
    yield from child_store_spec(request, tmp_path, "v")


def _add(spec: StoreSpec, embedder: LocalEmbedder | HashingEmbedder, text: str) -> None:
    memory = MemoryOS(user_id="alice", store=spec.make(), embedder=embedder, background=False)
    try:
        memory.add_memory(text, "Noted.")
    finally:
        memory.close()


def _vectors(spec: StoreSpec) -> dict[str, tuple[str, np.ndarray]]:
    """Each stored page's text (what was embedded) and vector, by its user input."""
    store = spec.make()
    store.open(dim=384, embedder_name=_recorded(spec))
    try:
        pages = store.get("pages", where={"user_id": "alice"}, with_embeddings=True)
    finally:
        store.close()
    return {str(p.metadata["user_input"]): (p.document, np.asarray(p.embedding)) for p in pages}


def _recorded(spec: StoreSpec) -> str:
    """The vector space the store recorded (what it names when opened for another one)."""
    store = spec.make()
    with pytest.raises(DimensionMismatchError) as raised:
        store.open(dim=384, embedder_name="another-model")
    assert raised.value.recorded is not None
    return raised.value.recorded


def test_a_new_store_gets_int8_by_default_and_records_it(spec: StoreSpec) -> None:
    embedder = LocalEmbedder()
    _add(spec, embedder, NEW)

    assert _recorded(spec) == "all-MiniLM-L6-v2@int8" == embedder.vector_space
    assert embedder.precision == "int8" and embedder.is_precision_fixed
    text, stored = _vectors(spec)[NEW]
    fp32, int8 = (LocalEmbedder(precision=p).embed([text])[0] for p in ("fp32", "int8"))
    assert np.allclose(stored, int8, atol=1e-6) and not np.allclose(stored, fp32, atol=1e-4)


def test_a_store_made_before_int8_was_the_default_keeps_fp32(spec: StoreSpec) -> None:
    _add(spec, LocalEmbedder(precision="fp32"), OLD)  # what every store recorded before: the bare name
    assert _recorded(spec) == "all-MiniLM-L6-v2"

    embedder = LocalEmbedder()  # no precision: the store's
    _add(spec, embedder, NEW)

    assert embedder.precision == "fp32" and embedder.vector_space == "all-MiniLM-L6-v2"
    assert _recorded(spec) == "all-MiniLM-L6-v2"  # nothing rewritten
    text, stored = _vectors(spec)[NEW]
    fp32, int8 = (LocalEmbedder(precision=p).embed([text])[0] for p in ("fp32", "int8"))
    assert np.allclose(stored, fp32, atol=1e-6) and not np.allclose(stored, int8, atol=1e-4)


def test_an_explicit_precision_the_store_contradicts_is_refused_and_writes_nothing(spec: StoreSpec) -> None:
    _add(spec, LocalEmbedder(), OLD)  # int8

    with pytest.raises(DimensionMismatchError, match=r"precision='int8'.*Nothing was written") as raised:
        _add(spec, LocalEmbedder(precision="fp32"), NEW)

    assert "all-MiniLM-L6-v2@int8" in str(raised.value)
    assert list(_vectors(spec)) == [OLD] and _recorded(spec) == "all-MiniLM-L6-v2@int8"


def test_an_old_store_still_takes_the_int8_it_may_have_been_made_with(spec: StoreSpec) -> None:
    """Before int8 became the default, ``precision="int8"`` was opt-in and recorded the bare name too."""
    _add(spec, LocalEmbedder(precision="fp32"), OLD)  # a store with the bare name, as such a store has
    assert _recorded(spec) == "all-MiniLM-L6-v2"

    _add(spec, LocalEmbedder(precision="int8"), NEW)

    assert sorted(_vectors(spec)) == sorted([OLD, NEW])
    assert _recorded(spec) == "all-MiniLM-L6-v2"  # nothing rewritten


def test_an_embedder_that_took_one_stores_precision_refuses_a_store_of_the_other(
    spec: StoreSpec, tmp_path: Path
) -> None:
    shared = LocalEmbedder()
    _add(StoreSpec(path=str(tmp_path / "old")), LocalEmbedder(precision="fp32"), OLD)
    _add(StoreSpec(path=str(tmp_path / "old")), shared, NEW)  # adopts fp32
    _add(spec, LocalEmbedder(precision="int8"), OLD)  # a new store: int8
    with pytest.raises(DimensionMismatchError, match="a LocalEmbedder of its own"):
        _add(spec, shared, NEW)
    assert list(_vectors(spec)) == [OLD]


def test_another_model_of_the_same_dimension_is_refused(spec: StoreSpec) -> None:
    _add(spec, HashingEmbedder(384), OLD)

    with pytest.raises(DimensionMismatchError, match=r"'hashing-384'.*'all-MiniLM-L6-v2@int8'.*Nothing"):
        _add(spec, LocalEmbedder(), NEW)
    with pytest.raises(DimensionMismatchError, match=r"hashing-384"):
        _add(spec, LocalEmbedder(precision="fp32"), NEW)
    assert list(_vectors(spec)) == [OLD]


def test_a_store_refused_for_another_embedder_opens_for_its_own(spec: StoreSpec) -> None:
    store = spec.make()
    store.open(dim=4, embedder_name="a")
    store.close()

    again = spec.make()
    with pytest.raises(DimensionMismatchError) as raised:
        again.open(dim=4, embedder_name="b")
    assert raised.value.recorded == "a"
    with pytest.raises(DimensionMismatchError) as other_dim:
        again.open(dim=8, embedder_name="a")
    assert other_dim.value.recorded is None  # the length differs: no embedder can adopt it
    again.open(dim=4, embedder_name="a")  # the failed opens left it closed, not half open
    assert again.count("pages", where={"user_id": "alice"}) == 0
    again.close()
