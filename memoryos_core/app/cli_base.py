"""The ``memoryos`` typer app: its root options, the options the memory commands share, how a command
opens MemoryOS and reports a failure, and the commands that need no store (demo, setup).

The memory commands are in ``app/cli_memory.py``, ``mcp`` and the entry point in ``app/cli.py``.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

from memoryos_core._exceptions import MemoryOSError, MissingDependencyError
from memoryos_core.app.settings import Settings, load_settings

try:
    import typer
    from rich.console import Console
    from rich.markup import escape
except ImportError as exc:  # pragma: no cover - typer and rich are core dependencies
    raise MissingDependencyError("typer and rich") from exc

app = typer.Typer(
    help="MemoryOS: tiered memory for AI agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
stderr = Console(stderr=True)


def _show_version(value: bool) -> None:
    if value:
        from memoryos_core import __version__

        typer.echo(f"memoryos {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Show the version and exit."),
    ] = False,
) -> None:
    """MemoryOS: tiered memory for AI agents (run a command with --help for its options)."""


UserOption = Annotated[str, typer.Option("--user", help="User id.")]
DataOption = Annotated[Path | None, typer.Option("--data", help="Folder of the embedded store.")]
ChromaOption = Annotated[str | None, typer.Option("--chroma-url", help="A `chroma run` server instead.")]


@app.command()
def demo(user: UserOption = "demo_user", data: DataOption = None, chroma_url: ChromaOption = None) -> None:
    """Ingest a short built-in conversation offline, show the tiers, and recall with provenance."""
    from memoryos_core.app.demo import run_demo

    try:
        run_demo(console, user=user, data=data, chroma_url=chroma_url)
    except MemoryOSError as exc:
        error(str(exc))
        raise typer.Exit(code=1) from None


@app.command()
def setup() -> None:
    """Build the offline model's ONNX graph into the cache (MEMORYOS_CACHE_DIR) so no command waits for it."""
    from memoryos_core.embeddings.local import prepare

    try:
        path = prepare()
    except MemoryOSError as exc:
        error(str(exc))
    console.print(f"offline model ready: {escape(str(path))}", soft_wrap=True, highlight=False)


# --- shared options and plumbing of the memory commands -----------------------------------------
UserFlag = Annotated[
    str | None, typer.Option("--user", help="User id (default: config file, MEMORYOS_USER_ID, default_user).")
]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="JSON config file with the reference's keys (or MEMORYOS_CONFIG)."),
]
EmbeddingOption = Annotated[
    str | None,
    typer.Option("--embedding", help="Embedder: all-MiniLM-L6-v2 (default), hash, openai:MODEL, a folder."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
STORE_OPTIONS = {
    "user": UserFlag,
    "data": DataOption,
    "chroma_url": ChromaOption,
    "config": ConfigOption,
    "embedding": EmbeddingOption,
}


def error(message: str) -> None:
    stderr.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code=1)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Report any failure as one ``error: ...`` line and exit 1 (MEMORYOS_DEBUG=1 shows the traceback)."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except KeyboardInterrupt:
        error("interrupted")
    except (MemoryOSError, OSError) as exc:
        error(str(exc) or type(exc).__name__)
    except json.JSONDecodeError as exc:
        error(f"not valid JSON: {exc}")
    except Exception as exc:
        if os.environ.get("MEMORYOS_DEBUG"):
            raise
        error(f"unexpected {type(exc).__name__}: {exc} (set MEMORYOS_DEBUG=1 to see the traceback)")


def settings_from_flags(
    user: str | None, data: Path | None, chroma_url: str | None, config: Path | None, embedding: str | None
) -> Settings:
    flags = {"user_id": user, "data_storage_path": data, "chroma_url": chroma_url}
    return load_settings(flags | {"embedding_model_name": embedding}, config_file=config)


def store_command(
    name: str | None = None, *, without: tuple[str, ...] = ()
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register a command whose first parameter is the resolved ``Settings``.

    The command gets the shared --user --data --chroma-url --config --embedding options but those
    named in ``without`` (one it declares itself is passed on to it as well), and every error ends
    as one ``error:`` line.
    """

    def register(function: Callable[..., None]) -> Callable[..., None]:
        own = list(inspect.signature(function, eval_str=True).parameters.values())[1:]
        names = {parameter.name for parameter in own}
        offered = {key: value for key, value in STORE_OPTIONS.items() if key not in without}
        shared = [
            inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
            for key, annotation in offered.items()
            if key not in names
        ]

        @functools.wraps(function)
        def command(**kwargs: Any) -> None:
            flags = {key: kwargs[key] if key in names else kwargs.pop(key, None) for key in STORE_OPTIONS}
            with reported_errors():
                function(settings_from_flags(**flags), **kwargs)

        command.__signature__ = inspect.Signature(own + shared)  # type: ignore[attr-defined]
        command.__annotations__ = {parameter.name: parameter.annotation for parameter in own + shared}
        app.command(name)(command)
        return function

    return register


def _existing_store(settings: Settings) -> None:
    """Refuse to go on when the embedded store does not exist, so a reading command creates nothing."""
    from memoryos_core._validation import check_id
    from memoryos_core.engine.registry import make_store

    check_id(settings.user_id, "user_id")  # a bad id is the error to report, store or not
    check_id(settings.assistant_id, "assistant_id")
    if settings.chroma_url:
        return
    folder = make_store(settings.data_storage_path, None, "").local_path  # no I/O: the path only
    if folder and not (Path(folder) / "chroma.sqlite3").is_file():  # Chroma's own file in its folder
        where = Path(settings.data_storage_path or "./memoryos_data")
        error(
            f"no memory store in {where}: nothing was stored there yet "
            "(memoryos ingest or import creates one; --data or MEMORYOS_DATA names another folder)"
        )


@contextmanager
def opened(settings: Settings, *, background: bool = False, existing: bool = False) -> Iterator[Any]:
    """A MemoryOS that only consolidates when asked (a command does exactly what it says), then closed.

    With ``existing``, a missing embedded store is an error rather than created (reading commands).
    """
    if existing:
        _existing_store(settings)
    memory = settings.open_memory(background=background)
    try:
        yield memory
    finally:
        memory.close()


def echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def plain(text: str, style: str = "") -> None:
    console.print(text, style=style or None, markup=False, highlight=False, soft_wrap=True)
