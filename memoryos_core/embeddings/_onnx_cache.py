"""The on-disk cache of built ONNX graphs: where it is, and how a graph is written to it.

A graph is stored as two files, ``NAME.onnx`` (the graph, a few KB) and ``NAME.onnx.data`` (the weights,
page-aligned), because onnxruntime maps external weights from disk instead of parsing 90 MB of protobuf:
a fresh process loads the model in about a third of the time. Both are written to temporary names and
renamed, the graph last, so a graph file present means a complete pair. The int8 graph
(``_int8_graph``) is cached beside the fp32 one under its own name.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

CACHE_ENV = "MEMORYOS_CACHE_DIR"
"""Environment variable naming the folder of built ONNX graphs (default: the user's cache dir/memoryos)."""

_ALIGN = 4096  # onnxruntime maps an external tensor only when its offset is page-aligned
_MIN_EXTERNAL_BYTES = 1024  # small constants stay in the graph


def cache_dir() -> Path:
    """The folder of built ONNX graphs: ``$MEMORYOS_CACHE_DIR``, else ``$XDG_CACHE_HOME/memoryos`` or
    ``~/.cache/memoryos``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "memoryos"


def file_sha256(path: Path) -> str:
    """The sha256 of a file's content, read in 1 MB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _split_weights(model_bytes: bytes, data_name: str) -> tuple[bytes, bytes]:
    """Return (graph, weights): the large initializers moved into one page-aligned external blob.

    Bytes that are not an ONNX model are returned whole, so onnxruntime reports them when loading.
    """
    from google.protobuf.message import DecodeError
    from onnx import ModelProto, TensorProto
    from onnx.external_data_helper import set_external_data

    model = ModelProto()
    try:
        model.ParseFromString(model_bytes)
    except DecodeError:
        return model_bytes, b""
    blob = bytearray()
    for tensor in model.graph.initializer:
        if not tensor.HasField("raw_data") or len(tensor.raw_data) < _MIN_EXTERNAL_BYTES:
            continue
        blob.extend(b"\0" * (-len(blob) % _ALIGN))
        offset = len(blob)
        blob.extend(tensor.raw_data)
        set_external_data(tensor, location=data_name, offset=offset, length=len(tensor.raw_data))
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
    return model.SerializeToString(), bytes(blob)


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a shared cache dir should stay readable
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_graph(path: Path, model_bytes: bytes) -> None:
    """Store a serialised model as ``path`` plus ``path.data``, weights first and the graph last.

    Raises:
        OSError: The cache folder cannot be created or written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    data_path = path.with_name(path.name + ".data")
    graph, weights = _split_weights(model_bytes, data_path.name)
    if weights:
        _write_atomically(data_path, weights)
    _write_atomically(path, graph)


def remove_graph(path: Path) -> None:
    """Delete a cached graph and its weights, if present."""
    for stale in (path, path.with_name(path.name + ".data")):
        stale.unlink(missing_ok=True)
