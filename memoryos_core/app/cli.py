"""The ``memoryos`` command line (typer + rich): parse input, call MemoryOS, format output."""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Annotated, Any

from memoryos_core._exceptions import LLMError, MemoryOSError, MissingDependencyError
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
        _error(str(exc))
        raise typer.Exit(code=1) from None


@app.command()
def setup() -> None:
    """Build the offline model's ONNX graph into the cache (MEMORYOS_CACHE_DIR) so no command waits for it."""
    from memoryos_core.embeddings.local import prepare

    try:
        path = prepare()
    except MemoryOSError as exc:
        _error(str(exc))
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


def _error(message: str) -> None:
    stderr.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code=1)


@contextmanager
def _errors() -> Iterator[None]:
    """Report any failure as one ``error: ...`` line and exit 1 (MEMORYOS_DEBUG=1 shows the traceback)."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except KeyboardInterrupt:
        _error("interrupted")
    except (MemoryOSError, OSError) as exc:
        _error(str(exc) or type(exc).__name__)
    except json.JSONDecodeError as exc:
        _error(f"not valid JSON: {exc}")
    except Exception as exc:
        if os.environ.get("MEMORYOS_DEBUG"):
            raise
        _error(f"unexpected {type(exc).__name__}: {exc} (set MEMORYOS_DEBUG=1 to see the traceback)")


def _settings(
    user: str | None, data: Path | None, chroma_url: str | None, config: Path | None, embedding: str | None
) -> Settings:
    flags = {"user_id": user, "data_storage_path": data, "chroma_url": chroma_url}
    return load_settings(flags | {"embedding_model_name": embedding}, config_file=config)


def _store_command(
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
            with _errors():
                function(_settings(**flags), **kwargs)

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
        _error(
            f"no memory store in {where}: nothing was stored there yet "
            "(memoryos ingest or import creates one; --data or MEMORYOS_DATA names another folder)"
        )


@contextmanager
def _opened(settings: Settings, *, background: bool = False, existing: bool = False) -> Iterator[Any]:
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


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def _plain(text: str, style: str = "") -> None:
    console.print(text, style=style or None, markup=False, highlight=False, soft_wrap=True)


# --- the commands ----------------------------------------------------------------------------------
@_store_command()
def ingest(
    settings: Settings,
    file: Annotated[Path, typer.Argument(help="JSONL of turns or {role, content} messages, or LoCoMo JSON.")],
    user: UserFlag = None,
    consolidate: Annotated[bool, typer.Option(help="Consolidate the pages once stored.")] = True,
) -> None:
    """Store the turns of a conversation file as pages (a LoCoMo sample goes to the user named by its id).

    Every turn is checked before the first is stored; turns stored by an earlier run are skipped.
    """
    from rich.progress import Progress

    from memoryos_core.app.ingest import ingest_batches, load_pages

    batches = load_pages(file)
    with _opened(settings) as memory, Progress(console=stderr, transient=True) as progress:
        task = progress.add_task(f"ingesting {file.name}", total=sum(len(b.pages) for b in batches))
        report = ingest_batches(
            memory, batches, user_id=user, on_progress=lambda n: progress.advance(task, n)
        )
        if consolidate:
            progress.update(task, description="consolidating")
            for target in report.stored:
                memory.flush(target)
    counts = ", ".join(f"{count} for {target}" for target, count in report.stored.items())
    skipped = sum(report.already_stored.values())
    already = f" ({skipped} already stored, skipped)" if skipped else ""
    _plain(f"ingested {sum(report.stored.values())} pages from {file.name}: {counts}{already}")


@_store_command()
def recall(
    settings: Settings,
    query: Annotated[str, typer.Argument(help="What to recall memory for.")],
    top_k: Annotated[
        int | None,
        typer.Option("--top-k", min=1, max=1000, help="Older pages and knowledge to rank (default 7)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Recall the memory relevant to QUERY: the recent pages, then the best older pages and knowledge."""
    from memoryos_core.app.cli_output import print_recall, recall_json

    with _opened(settings, existing=True) as memory:
        top_k = top_k or memory.config.retrieval.top_pages  # always a cap: pages and knowledge together
        # Looking at memory is not using it: no heat visit is counted.
        context = memory.retrieve_memory(query, top_k=top_k, update_heat=False)
    if as_json:
        _echo_json(recall_json(context))
    else:
        print_recall(console, context, top_k)


@_store_command()
def profile(settings: Settings, as_json: JsonOption = False) -> None:
    """Show the user's profile traits and knowledge, with the pages each came from."""
    from memoryos_core.app.cli_output import print_profile, with_iso_times

    with _opened(settings, existing=True) as memory:
        found = memory.get_user_profile()
    if as_json:
        _echo_json(with_iso_times(found.to_dict()))
        return
    print_profile(console, found)


@_store_command()
def stats(settings: Settings, as_json: JsonOption = False) -> None:
    """Show counts per tier, pending work and the LLM cost so far."""
    from memoryos_core.app.cli_output import print_stats

    with _opened(settings, existing=True) as memory:
        found = memory.get_memory_stats()
    if as_json:
        _echo_json(found.to_dict())
    else:
        print_stats(console, found)


@_store_command(without=("user",))
def users(settings: Settings, as_json: JsonOption = False) -> None:
    """List the users of the store, with how many pages each has."""
    with _opened(settings, existing=True) as memory:
        found = {user: memory.store.count("pages", where={"user_id": user}) for user in memory.list_users()}
    if as_json:
        _echo_json([{"user_id": user, "pages": count} for user, count in found.items()])
        return
    if not found:
        _plain("no users yet")
    for user, count in found.items():
        _plain(f"{user}  {count} page{'s' if count != 1 else ''}")


def _write_private(path: Path, text: str) -> None:
    """Write an export readable by its owner only (0600, an existing file too): it is someone's memory."""
    from memoryos_core.storage._private import open_private

    with open(path, "w", encoding="utf-8", opener=open_private) as file:
        file.write(text)


@_store_command("export")
def export_(
    settings: Settings,
    file: Annotated[str, typer.Argument(help="Where to write the JSON; - for stdout.")] = "-",
) -> None:
    """Write all of the user's memory as JSON: pages, segments, profile, knowledge (times also ISO 8601)."""
    from memoryos_core.app.cli_output import with_iso_times

    with _opened(settings, existing=True) as memory:
        exported = memory.export_memory()
        known = settings.user_id in memory.list_users()
    if not any(
        exported.get(key) for key in ("pages", "segments", "profile", "user_knowledge", "assistant_knowledge")
    ):
        # Nothing to write: an empty file would pass for a backup.
        _error(
            f"user {settings.user_id} has no memory to export"
            if known
            else f"no user {settings.user_id} in this store (memoryos users lists them)"
        )
    text = json.dumps(with_iso_times(exported), ensure_ascii=False, indent=2)
    if file == "-":
        typer.echo(text)
    else:
        _write_private(Path(file), text + "\n")
        stderr.print(
            f"exported {len(exported['pages'])} pages of {escape(settings.user_id)} to {escape(file)}"
        )


@_store_command("import")
def import_(
    settings: Settings,
    file: Annotated[str, typer.Argument(help="A JSON export; - for stdin.")],
    as_user: Annotated[
        str | None, typer.Option("--as-user", help="Import another user's export as this user.")
    ] = None,
) -> None:
    """Load a JSON export into --user (pages keep their ids); another user's export needs --as-user."""
    exported = json.loads(sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8"))
    if not isinstance(exported, dict):
        _error(f"{file} is not a MemoryOS export (a JSON object)")
    owner = exported.get("user_id")
    if as_user is None and owner is not None and owner != settings.user_id:
        # A file must not choose whose memory it writes: the user is named on the command line.
        _error(
            f"{file} holds the memory of {owner!r}, not of {settings.user_id!r}: add --user {owner} "
            f"to import it for {owner!r}, or --as-user NAME to import it as another user"
        )
    with _opened(settings) as memory:
        count = memory.import_memory(exported, user_id=as_user or settings.user_id)
    _plain(f"imported {count} pages for {as_user or settings.user_id}")


@_store_command()
def delete(
    settings: Settings,
    page_id: Annotated[str | None, typer.Argument(help="The page to delete.")] = None,
    everything: Annotated[bool, typer.Option("--all", help="Delete all of the user's memory.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm --all.")] = False,
) -> None:
    """Delete one page (and what was derived from it), or all of the user's memory with --all --yes."""
    if (page_id is None) == (not everything):
        _error("give a page id, or --all (with --yes) to delete all of the user's memory")
    if everything and not yes:
        _error(f"--all deletes all memory of {settings.user_id}: add --yes to confirm")
    with _opened(settings, existing=True) as memory:
        count = memory.delete_memory(page_id, everything=everything)
    _plain(f"deleted {count} page(s) of {settings.user_id}")


@_store_command()
def chat(settings: Settings) -> None:
    """Chat with an LLM that remembers (OPENAI_API_KEY, or openai_api_key in --config); exit or EOF ends."""
    if not settings.has_llm:
        _error("chat needs an LLM: set OPENAI_API_KEY (and OPENAI_BASE_URL) or openai_api_key in --config")
    from memoryos_core.app.cli_output import prompt_safe_logging

    with _opened(settings, background=True) as memory, prompt_safe_logging(stderr) as logs:
        banner = f"chatting as {escape(settings.user_id)} ({escape(settings.describe())}); exit to stop"
        stderr.print(banner, soft_wrap=True)
        while True:
            try:
                with logs.prompting():  # background log lines wait until Enter, not mid-line
                    line = console.input("[bold]you>[/bold] ").strip()
            except (EOFError, KeyboardInterrupt):
                break
            if line.lower() in ("exit", "quit", "/exit", "/quit"):
                break
            if not line:
                continue
            try:
                answer = memory.get_response(line)
            except LLMError as exc:  # one failed answer does not end the conversation
                stderr.print(f"[red]error:[/red] {escape(str(exc))}")
                continue
            _plain(f"assistant> {answer}")


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
    tokens_file: Annotated[
        Path | None,
        typer.Option(
            "--tokens-file",
            envvar="MEMORYOS_MCP_TOKENS_FILE",
            metavar="FILE",
            help="Bearer tokens (http): lines 'TOKEN user:ID' or 'TOKEN admin', chmod 600; "
            "or set MEMORYOS_MCP_TOKENS.",
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            metavar="NAME",
            help="A host name clients use to reach the server (http; repeat).",
        ),
    ] = None,
    config: ConfigOption = None,
    embedding: EmbeddingOption = None,
) -> None:
    """Serve MemoryOS as MCP tools (add_memory, retrieve_memory, get_user_profile, delete_memory, ...).

    Over stdio without --user, every call names its user: run it only under a client you trust to pick
    the user. Over http, every request needs a bearer token, and a user-bound token acts for its user only.
    """
    with _errors():
        from memoryos_core.app.mcp import run_server
        from memoryos_core.app.mcp_access import TOKENS_ENV, load_tokens

        if transport not in ("stdio", "http"):
            _error(f"--transport must be stdio or http, not {transport!r}")
        is_http = transport == "http"
        tokens = load_tokens(tokens_file, os.environ.get(TOKENS_ENV)) if is_http else None
        settings = _settings(user, data, chroma_url, config, embedding)
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


def main() -> None:
    from memoryos_core.bench.cli import bench_app

    app.add_typer(bench_app, name="bench")
    app()


if __name__ == "__main__":
    main()
