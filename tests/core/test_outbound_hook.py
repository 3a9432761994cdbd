"""The outbound-request hook: backends check each request through ``memoryos_core._network``, which the
test guard fills; no production module imports the test helpers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from memoryos_core import ChatMessage, _network
from memoryos_core.embeddings.openai import OpenAIEmbedder
from memoryos_core.llm.openai import OpenAILLM
from memoryos_core.testing import FakeOpenAIServer, NetworkBlockedError, check_network_allowed

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = [ChatMessage("user", "hello there")]


def test_the_session_guard_refuses_backend_requests_off_this_machine() -> None:
    # No block_network() here: tests/conftest.py's session guard installed the hook.
    assert check_network_allowed in [check.check for check in _network._checks]  # type: ignore[attr-defined]
    with pytest.raises(NetworkBlockedError, match=r"example\.com"):
        OpenAILLM(api_key="k", base_url="https://llm.example.com/v1", max_retries=0).complete(MESSAGES)
    with pytest.raises(NetworkBlockedError, match=r"api\.openai\.com"):
        OpenAILLM(api_key="k", max_retries=0).complete(MESSAGES)  # None: the vendor's default host
    with pytest.raises(NetworkBlockedError, match=r"example\.com"):
        OpenAIEmbedder(api_key="k", base_url="https://embed.example.com/v1", max_retries=0).embed(["x"])


async def test_the_async_path_checks_too() -> None:
    with pytest.raises(NetworkBlockedError):
        await OpenAILLM(api_key="k", base_url="http://192.0.2.1/v1", max_retries=0).acomplete(MESSAGES)


def test_an_installed_check_sees_each_request_and_can_be_removed() -> None:
    seen: list[str | None] = []
    with FakeOpenAIServer() as server:
        url = server.base_url
        remove = _network.add_outbound_check(seen.append)
        llm = OpenAILLM(api_key="k", base_url=url, max_retries=0)
        try:
            assert llm.complete(MESSAGES) == "echo: hello there"
        finally:
            remove()
            remove()  # twice is fine
        llm.complete(MESSAGES)
        llm.close()
    assert seen == [url]  # once, before the request; not after removal


def test_the_same_check_installed_twice_is_removed_one_install_at_a_time() -> None:
    calls: list[str | None] = []
    first = _network.add_outbound_check(calls.append)
    second = _network.add_outbound_check(calls.append)
    try:
        _network.check_outbound("http://127.0.0.1:1")
        first()
        _network.check_outbound("http://127.0.0.1:2")
    finally:
        first()
        second()
    _network.check_outbound("http://127.0.0.1:3")
    assert calls == ["http://127.0.0.1:1", "http://127.0.0.1:1", "http://127.0.0.1:2"]


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_production_module_imports_the_test_helpers() -> None:
    production = [
        path
        for package in ("memoryos_core", "memoryos_langchain", "memoryos_llamaindex")
        for path in (ROOT / package).rglob("*.py")
        if "testing" not in path.relative_to(ROOT).parts
    ]
    assert ROOT / "memoryos_core" / "llm" / "openai.py" in production
    offenders = [
        str(path.relative_to(ROOT))
        for path in production
        if any(name.startswith("memoryos_core.testing") for name in _imported_modules(path))
    ]
    assert offenders == []
