"""``memoryos mcp ARGS`` that must refuse to start, run in this process (typer's CliRunner).

The refusals happen before the store opens: the command's own checks of its arguments, tokens and tokens
file. Running them in the test process instead of a fresh interpreter each saves ~1 s of imports per run;
if a check stopped refusing, the command would open the store and serve: here it fails the test instead
(``WouldServe``, which no error handler of the command catches).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from typer.testing import CliRunner

from memoryos_core.app.cli import app
from memoryos_core.app.mcp_access import TOKENS_ENV
from memoryos_core.app.settings import Settings
from memoryos_core.bench.mcp_auth import free_port


class WouldServe(BaseException):
    """The command went past its checks to open the store: it would have served."""


@dataclass(frozen=True)
class Refusal:
    returncode: int
    stdout: str
    stderr: str


def http_args(folder: Path) -> list[str]:
    """``--transport http`` on a free port, the data in ``folder / "d"`` (which a refusal never makes)."""
    return ["--transport", "http", "--port", str(free_port()), "--data", str(folder / "d")]


def refuse(*args: str, env: dict[str, str] | None = None) -> Refusal:
    """Run ``memoryos mcp ARGS`` with ``env`` over an environment without tokens; raises ``WouldServe`` if
    it gets as far as opening the store."""

    def opened(*_: object, **__: object) -> None:
        raise WouldServe(f"memoryos mcp {' '.join(args)} opened the store instead of refusing to start")

    environment: dict[str, str | None] = {TOKENS_ENV: None, **(env or {})}
    with mock.patch.object(Settings, "open_memory", opened):
        result = CliRunner().invoke(app, ["mcp", *args], env=environment)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Refusal(result.exit_code, result.stdout, result.stderr)
