"""`memoryos ui` refuses what it cannot serve safely, before it opens or creates anything."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memoryos_core import MemoryOS
from memoryos_core.app.cli import app
from memoryos_core.app.settings import Settings
from memoryos_core.app.ui import run_ui

NO_TOKENS = {"MEMORYOS_MCP_TOKENS": None, "MEMORYOS_MCP_TOKENS_FILE": None}


def stored(folder: Path) -> Path:
    with MemoryOS(data_storage_path=folder, embedding_model_name="hash", background=False) as memory:
        memory.add_memory("I like tea.", "Noted.")
    return folder


def invoke(*args: str, env: dict[str, str | None] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["ui", *args], env=NO_TOKENS | (env or {}))
    return result.exit_code, " ".join(result.output.split())


def test_a_folder_without_a_store_is_an_error_and_stays_empty(tmp_path: Path) -> None:
    code, output = invoke("--data", str(tmp_path / "none"), "--embedding", "hash")
    assert code == 1 and "no memory store in" in output
    assert not (tmp_path / "none").exists()


def test_off_loopback_it_needs_tokens(tmp_path: Path) -> None:
    code, output = invoke(
        "--data", str(stored(tmp_path / "data")), "--embedding", "hash", "--host", "10.0.0.5"
    )
    assert code == 1 and "needs tokens" in output and "--tokens-file" in output


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_a_wildcard_bind_needs_the_host_names_clients_use(tmp_path: Path, host: str) -> None:
    tokens = f"{'t' * 40} admin"
    code, output = invoke(
        "--data", str(stored(tmp_path / "data")), "--embedding", "hash", "--host", host,
        env={"MEMORYOS_MCP_TOKENS": tokens},
    )  # fmt: skip
    assert code == 1 and "--allowed-host" in output


def test_a_malformed_tokens_entry_is_reported_without_the_token(tmp_path: Path) -> None:
    secret = "s" * 40
    code, output = invoke(
        "--data", str(stored(tmp_path / "data")), "--embedding", "hash",
        env={"MEMORYOS_MCP_TOKENS": f"{secret} owner"},
    )  # fmt: skip
    assert code == 1 and "user:ID" in output and secret not in output


class _Stop(Exception):
    """Raised from ``on_ready`` to end ``run_ui`` before it serves."""


def test_the_port_accepts_connections_when_the_address_is_given_out(tmp_path: Path) -> None:
    # A browser opened at once on the printed address was refused (net::ERR_CONNECTION_REFUSED): the port
    # was bound but listened only once uvicorn had started. A connection made inside ``on_ready``, before
    # uvicorn runs, is queued by the listening port.
    settings = Settings(data_storage_path=str(stored(tmp_path / "data")), embedding_model_name="hash")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    connected: list[str] = []

    def on_ready(address: str) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            connected.append(address)
        raise _Stop

    with pytest.raises(_Stop):
        run_ui(settings, port=port, on_ready=on_ready)
    assert connected and connected[0].startswith(f"http://127.0.0.1:{port}/#token=")
