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

from memoryos_core._demo import print_stats
from memoryos_core._exceptions import LLMError, MemoryOSError, MissingDependencyError
from memoryos_core._settings import Settings, load_settings

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


@app.callback()
def _root() -> None:
    """MemoryOS: tiered memory for AI agents (run a command with --help for its options)."""


UserOption = Annotated[str, typer.Option("--user", help="User id.")]
DataOption = Annotated[Path | None, typer.Option("--data", help="Folder of the embedded store.")]
ChromaOption = Annotated[str | None, typer.Option("--chroma-url", help="A `chroma run` server instead.")]


@app.command()
def demo(user: UserOption = "demo_user", data: DataOption = None, chroma_url: ChromaOption = None) -> None:
    """Ingest a short built-in conversation offline, show the tiers, and recall with provenance."""
    from memoryos_core._demo import run_demo

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


def _store_command(name: str | None = None) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register a command whose first parameter is the resolved ``Settings``.

    The command gets the shared --user --data --chroma-url --config --embedding options (one it declares
    itself is passed on to it as well), and every error ends as one ``error:`` line.
    """

    def register(function: Callable[..., None]) -> Callable[..., None]:
        own = list(inspect.signature(function, eval_str=True).parameters.values())[1:]
        names = {parameter.name for parameter in own}
        shared = [
            inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
            for key, annotation in STORE_OPTIONS.items()
            if key not in names
        ]

        @functools.wraps(function)
        def command(**kwargs: Any) -> None:
            flags = {key: kwargs[key] if key in names else kwargs.pop(key) for key in STORE_OPTIONS}
            with _errors():
                function(_settings(**flags), **kwargs)

        command.__signature__ = inspect.Signature(own + shared)  # type: ignore[attr-defined]
        command.__annotations__ = {parameter.name: parameter.annotation for parameter in own + shared}
        app.command(name)(command)
        return function

    return register


@contextmanager
def _opened(settings: Settings, *, background: bool = False) -> Iterator[Any]:
    """A MemoryOS that only consolidates when asked (a command does exactly what it says), then closed."""
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
    """Store the turns of a conversation file as pages (a LoCoMo sample goes to the user named by its id)."""
    from rich.progress import Progress

    from memoryos_core.ingest import load_pages, store_batches

    batches = load_pages(file)
    with _opened(settings) as memory, Progress(console=stderr, transient=True) as progress:
        task = progress.add_task(f"ingesting {file.name}", total=sum(len(b.pages) for b in batches))
        stored = store_batches(memory, batches, user_id=user, on_progress=lambda n: progress.advance(task, n))
        if consolidate:
            progress.update(task, description="consolidating")
            for target in stored:
                memory.flush(target)
    counts = ", ".join(f"{count} for {target}" for target, count in stored.items())
    _plain(f"ingested {sum(stored.values())} pages from {file.name}: {counts}")


@_store_command()
def recall(
    settings: Settings,
    query: Annotated[str, typer.Argument(help="What to recall memory for.")],
    top_k: Annotated[
        int | None, typer.Option("--top-k", min=1, max=1000, help="Older pages to show.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Recall the memory relevant to QUERY: ranked pages, knowledge and the profile, with provenance."""
    with _opened(settings) as memory:
        context = memory.retrieve_memory(query, top_k=top_k)
    if as_json:
        _echo_json(context.to_mcp_dict())
        return
    if not context.units:
        _plain(f"no memory for {context.user_id} yet")
    for rank, unit in enumerate(context.units, 1):
        sources = f" from {','.join(unit.source_ids)}" if unit.source_ids else ""
        _plain(f"{rank}. {unit.tier} {unit.score:.2f} {unit.timestamp}{sources}", "bold")
        _plain("   " + unit.text.replace("\n", "\n   "))
    if context.profile:
        _plain("profile:", "bold")
        _plain(context.profile)


@_store_command()
def profile(settings: Settings, as_json: JsonOption = False) -> None:
    """Show the user's profile traits and knowledge, with the pages each came from."""
    with _opened(settings) as memory:
        found = memory.get_user_profile()
    if as_json:
        _echo_json(found.to_dict())
        return
    _plain(f"profile of {found.user_id}", "bold")
    for trait in found.traits:
        _plain(f"- {trait.name}: {trait.value}  (pages {', '.join(trait.page_ids)})")
    for title, items in (
        ("user knowledge", found.user_knowledge),
        ("assistant knowledge", found.assistant_knowledge),
    ):
        if items:
            _plain(title, "bold")
        for item in items:
            _plain(f"- {item.text}  (pages {', '.join(item.page_ids)})")
    if not (found.traits or found.user_knowledge or found.assistant_knowledge):
        _plain("nothing yet: an LLM builds the profile from segments that become hot")


@_store_command()
def stats(settings: Settings, as_json: JsonOption = False) -> None:
    """Show counts per tier, pending work and the LLM cost so far."""
    with _opened(settings) as memory:
        found = memory.get_memory_stats()
    if as_json:
        _echo_json(found.to_dict())
    else:
        print_stats(console, found)


@_store_command("export")
def export_(
    settings: Settings,
    file: Annotated[str, typer.Argument(help="Where to write the JSON; - for stdout.")] = "-",
) -> None:
    """Write all of the user's memory as JSON (pages, segments, profile, knowledge)."""
    with _opened(settings) as memory:
        exported = memory.export_memory()
    text = json.dumps(exported, ensure_ascii=False, indent=2)
    if file == "-":
        typer.echo(text)
    else:
        Path(file).write_text(text + "\n", encoding="utf-8")
        stderr.print(
            f"exported {len(exported['pages'])} pages of {escape(settings.user_id)} to {escape(file)}"
        )


@_store_command("import")
def import_(
    settings: Settings,
    file: Annotated[str, typer.Argument(help="A JSON export; - for stdin.")],
    user: UserFlag = None,
) -> None:
    """Load a JSON export, into --user or else the exported user (pages keep their ids there)."""
    exported = json.loads(sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8"))
    with _opened(settings) as memory:
        count = memory.import_memory(exported, user_id=user)
    _plain(f"imported {count} pages for {user or exported.get('user_id')}")


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
    with _opened(settings) as memory:
        count = memory.delete_memory(page_id, everything=everything)
    _plain(f"deleted {count} page(s) of {settings.user_id}")


@_store_command()
def chat(settings: Settings) -> None:
    """Chat with an LLM that remembers (OPENAI_API_KEY, or openai_api_key in --config); exit or EOF ends."""
    if not settings.has_llm:
        _error("chat needs an LLM: set OPENAI_API_KEY (and OPENAI_BASE_URL) or openai_api_key in --config")
    with _opened(settings, background=True) as memory:
        stderr.print(f"chatting as {escape(settings.user_id)} ({escape(settings.describe())}); exit to stop")
        while True:
            try:
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
    config: ConfigOption = None,
    embedding: EmbeddingOption = None,
) -> None:
    """Serve MemoryOS as MCP tools (add_memory, retrieve_memory, get_user_profile, delete_memory, ...)."""
    with _errors():
        from memoryos_core.mcp import run_server

        if transport not in ("stdio", "http"):
            _error(f"--transport must be stdio or http, not {transport!r}")
        settings = _settings(None, data, chroma_url, config, embedding)
        where = "stdio" if transport == "stdio" else f"http://{host}:{port}/mcp"
        banner = f"memoryos MCP server on {where}; {settings.describe()}"
        with suppress(KeyboardInterrupt):
            run_server(
                settings,
                transport="stdio" if transport == "stdio" else "http",
                host=host,
                port=port,
                on_ready=lambda: stderr.print(escape(banner), soft_wrap=True),
            )


def main() -> None:
    from memoryos_core.bench.cli import bench_app

    app.add_typer(bench_app, name="bench")
    app()


if __name__ == "__main__":
    main()
