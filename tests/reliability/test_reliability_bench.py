"""``memoryos bench reliability`` end to end at a tiny size: the table, the JSON, the cleanup."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import chromadb
import pytest
from chromadb.config import Settings
from typer.testing import CliRunner

from memoryos_core.bench.cli import bench_app
from memoryos_core.bench.reliability import failed_figures


def _collections(url: str) -> set[str]:
    """The soak's collections on the server (its prefixes start with ``rel``): other tests, running at the
    same time in another pytest-xdist worker, create and drop their own."""
    parsed = urlparse(url)
    settings = Settings(anonymized_telemetry=False)
    client = chromadb.HttpClient(host=str(parsed.hostname), port=int(parsed.port or 8000), settings=settings)
    names = {str(getattr(c, "name", c)) for c in client.list_collections()}
    return {name for name in names if name.startswith("rel")}


@pytest.mark.slow  # runs the kill/isolation/deletion soak of `memoryos bench reliability`; 15-30 s each
@pytest.mark.parametrize("backend", ["embedded", "server"])
def test_the_command_prints_the_figures_and_writes_them_as_json(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    out = tmp_path / "reliability.json"
    args = ["reliability", "--kills", "1", "--users", "3", "--queries", "40", "--reopen-runs", "2"]
    args += ["--out", str(out)]
    url = request.getfixturevalue("chroma_server_url") if backend == "server" else None
    before = _collections(url) if url else set()
    result = CliRunner().invoke(bench_app, [*args, *(["--chroma-url", url] if url else [])])
    assert result.exit_code == 0, result.output + repr(result.exception)
    data = json.loads(out.read_text())
    assert data["backend"] == ("chroma-http" if url else "chroma-embedded")
    assert (data["kills"], data["users"], data["cross_user_queries"]) == (1, 3, 40)
    assert (data["reopen_runs"], data["reopen_bad_exits"]) == (2, 0)
    assert data["pages_accepted"] > 0 and data["pages_stored"] >= data["pages_accepted"]
    assert failed_figures(data) == [] and data["wall_s"] > 0
    assert (data["mcp_unauthenticated_calls"], data["mcp_unauthenticated_answered"]) == (200, 0)
    labels = ("pages accepted", "pages lost", "pages duplicated", "cross-user queries", "leaks", "wall time")
    labels += ("unauthenticated MCP calls answered",)
    assert [label for label in labels if label not in result.output] == []
    if url:
        assert _collections(url) == before  # the soak's collections are dropped from a shared server


def test_a_bad_figure_fails_the_command() -> None:
    figures = {
        "lost": 1,
        "duplicated": 0,
        "problems": [],
        "leaks": 2,
        "duplicate_units": 0,
        "deleted_user_records_left": 0,
        "other_users_changed": 0,
        "mcp_unauthenticated_answered": 3,
    }
    assert failed_figures(figures) == ["lost", "leaks", "mcp_unauthenticated_answered"]
    assert failed_figures(figures | {"reopen_bad_exits": 1}) == [
        "lost",
        "leaks",
        "mcp_unauthenticated_answered",
        "reopen_bad_exits",
    ]
