"""The ``memoryos`` command line (typer + rich): parse input, call MemoryOS, format output.

The app and its shared plumbing are in ``app/cli_base.py``, the memory commands in ``app/cli_memory.py``
(imported here, so ``app`` has every command); ``mcp`` and the entry point ``main`` are here.
"""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from memoryos_core.app import cli_memory  # noqa: F401  (registers the memory commands on app)
from memoryos_core.app.cli_base import (
    STORE_OPTIONS,
    ChromaOption,
    ConfigOption,
    DataOption,
    EmbeddingOption,
    _existing_store,
    app,
    console,
    error,
    reported_errors,
    settings_from_flags,
    stderr,
)

__all__ = ["STORE_OPTIONS", "app", "main"]


TokensOption = Annotated[
    Path | None,
    typer.Option(
        "--tokens-file",
        envvar="MEMORYOS_MCP_TOKENS_FILE",
        metavar="FILE",
        help="Bearer tokens (http): lines 'TOKEN user:ID' or 'TOKEN admin', chmod 600; "
        "or set MEMORYOS_MCP_TOKENS.",
    ),
]
AllowedHostOption = Annotated[
    list[str] | None,
    typer.Option(
        "--allowed-host", metavar="NAME", help="A host name clients use to reach the server (http; repeat)."
    ),
]


@app.command()
def mcp(
    data: DataOption = None,
    chroma_url: ChromaOption = None,
    transport: Annotated[str, typer.Option(help="stdio, or http (streamable HTTP at /mcp).")] = "stdio",
    host: Annotated[str, typer.Option(help="Address to listen on (http).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (http).")] = 8000,
    user: Annotated[
        str | None,
        typer.Option("--user", help="Serve this one user only (default: every call names its user)."),
    ] = None,
    tokens_file: TokensOption = None,
    allowed_host: AllowedHostOption = None,
    config: ConfigOption = None,
    embedding: EmbeddingOption = None,
) -> None:
    """Serve MemoryOS as MCP tools (add_memory, retrieve_memory, get_user_profile, delete_memory, ...).

    Over stdio without --user, every call names its user: run it only under a client you trust to pick
    the user. Over http, every request needs a bearer token, and a user-bound token acts for its user only.
    """
    with reported_errors():
        from memoryos_core.app.mcp import run_server
        from memoryos_core.app.mcp_access import TOKENS_ENV, load_tokens

        if transport not in ("stdio", "http"):
            error(f"--transport must be stdio or http, not {transport!r}")
        is_http = transport == "http"
        tokens = load_tokens(tokens_file, os.environ.get(TOKENS_ENV)) if is_http else None
        settings = settings_from_flags(user, data, chroma_url, config, embedding)
        where = f"http://{host}:{port}/mcp" if is_http else "stdio"
        serves = f"user {user} only" if user else ("per token" if is_http else "any user the client names")
        banner = f"memoryos MCP server on {where} ({serves}); {settings.describe()}"
        with suppress(KeyboardInterrupt):
            run_server(
                settings,
                transport="http" if is_http else "stdio",
                host=host,
                port=port,
                user=user,
                tokens=tokens,
                allowed_hosts=allowed_host or (),
                on_ready=lambda: stderr.print(escape(banner), soft_wrap=True),
            )


@app.command()
def ui(
    data: DataOption = None,
    chroma_url: ChromaOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    tokens_file: TokensOption = None,
    allowed_host: AllowedHostOption = None,
    config: ConfigOption = None,
    embedding: EmbeddingOption = None,
) -> None:
    """Serve the memory inspector: a web page showing what is stored and why it is recalled, to correct it.

    Same tokens as `memoryos mcp --transport http`. Without --tokens-file, on loopback, a token is made
    for this run and printed in the page's address (after #: the browser never sends it).
    """
    with reported_errors():
        from memoryos_core.app.mcp_access import TOKENS_ENV, load_tokens
        from memoryos_core.app.ui import run_ui

        configured = tokens_file is not None or os.environ.get(TOKENS_ENV)
        tokens = load_tokens(tokens_file, os.environ.get(TOKENS_ENV)) if configured else None
        settings = settings_from_flags(None, data, chroma_url, config, embedding)
        _existing_store(settings)  # the inspector creates no store

        def ready(address: str) -> None:
            stderr.print(escape(f"memoryos memory inspector; {settings.describe()}"), soft_wrap=True)
            console.print(f"open {escape(address)}", soft_wrap=True, highlight=False)

        with suppress(KeyboardInterrupt):
            run_ui(
                settings,
                host=host,
                port=port,
                tokens=tokens,
                allowed_hosts=allowed_host or (),
                on_ready=ready,
            )


def main() -> None:
    from memoryos_core.bench.cli import bench_app

    app.add_typer(bench_app, name="bench")
    app()


if __name__ == "__main__":
    main()
