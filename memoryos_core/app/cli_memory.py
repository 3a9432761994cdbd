"""The memory commands of ``memoryos``: ingest, recall, profile, stats, segments, users, export, import,
delete, chat.

Each is a ``store_command``: it gets the shared store options and the resolved ``Settings``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from memoryos_core._exceptions import LLMError
from memoryos_core.app.cli_base import (
    JsonOption,
    UserFlag,
    console,
    echo_json,
    error,
    opened,
    plain,
    stderr,
    store_command,
)
from memoryos_core.app.settings import Settings


# --- the commands ----------------------------------------------------------------------------------
@store_command()
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
    with opened(settings) as memory, Progress(console=stderr, transient=True) as progress:
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
    plain(f"ingested {sum(report.stored.values())} pages from {file.name}: {counts}{already}")


@store_command()
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

    with opened(settings, existing=True) as memory:
        top_k = top_k or memory.config.retrieval.top_pages  # always a cap: pages and knowledge together
        # Looking at memory is not using it: no heat visit is counted.
        context = memory.retrieve_memory(query, top_k=top_k, update_heat=False)
    if as_json:
        echo_json(recall_json(context))
    else:
        print_recall(console, context, top_k)


@store_command()
def profile(settings: Settings, as_json: JsonOption = False) -> None:
    """Show the user's profile traits and knowledge, with the pages each came from."""
    from memoryos_core.app.cli_output import print_profile, with_iso_times

    with opened(settings, existing=True) as memory:
        found = memory.get_user_profile()
    if as_json:
        echo_json(with_iso_times(found.to_dict()))
        return
    print_profile(console, found)


@store_command()
def stats(settings: Settings, as_json: JsonOption = False) -> None:
    """Show counts per tier, pending work and the LLM cost so far."""
    from memoryos_core.app.cli_output import print_stats

    with opened(settings, existing=True) as memory:
        found = memory.get_memory_stats()
    if as_json:
        echo_json(found.to_dict())
    else:
        print_stats(console, found)


@store_command()
def segments(settings: Settings, as_json: JsonOption = False) -> None:
    """Show the user's mid-term topic segments, hottest first: heat now, hot mark, pages, keywords."""
    from memoryos_core.app.cli_output import print_segments, with_iso_times

    with opened(settings, existing=True) as memory:
        found = memory.get_segments()
        threshold = memory.config.mid_term.heat_threshold
    if as_json:
        echo_json(with_iso_times([segment.to_dict() for segment in found]))
    else:
        print_segments(console, settings.user_id, found, threshold)


@store_command(without=("user",))
def users(settings: Settings, as_json: JsonOption = False) -> None:
    """List the users of the store, with how many pages each has."""
    with opened(settings, existing=True) as memory:
        found = {user: memory.store.count("pages", where={"user_id": user}) for user in memory.list_users()}
    if as_json:
        echo_json([{"user_id": user, "pages": count} for user, count in found.items()])
        return
    if not found:
        plain("no users yet")
    for user, count in found.items():
        plain(f"{user}  {count} page{'s' if count != 1 else ''}")


def _write_private(path: Path, text: str) -> None:
    """Write an export readable by its owner only (0600, an existing file too): it is someone's memory."""
    from memoryos_core.storage._private import open_private

    with open(path, "w", encoding="utf-8", opener=open_private) as file:
        file.write(text)


@store_command("export")
def export_(
    settings: Settings,
    file: Annotated[str, typer.Argument(help="Where to write the JSON; - for stdout.")] = "-",
) -> None:
    """Write all of the user's memory as JSON: pages, segments, profile, knowledge (times also ISO 8601)."""
    from memoryos_core.app.cli_output import with_iso_times

    with opened(settings, existing=True) as memory:
        exported = memory.export_memory()
        known = settings.user_id in memory.list_users()
    if not any(
        exported.get(key) for key in ("pages", "segments", "profile", "user_knowledge", "assistant_knowledge")
    ):
        # Nothing to write: an empty file would pass for a backup.
        error(
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


@store_command("import")
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
        error(f"{file} is not a MemoryOS export (a JSON object)")
    owner = exported.get("user_id")
    if as_user is None and owner is not None and owner != settings.user_id:
        # A file must not choose whose memory it writes: the user is named on the command line.
        error(
            f"{file} holds the memory of {owner!r}, not of {settings.user_id!r}: add --user {owner} "
            f"to import it for {owner!r}, or --as-user NAME to import it as another user"
        )
    with opened(settings) as memory:
        count = memory.import_memory(exported, user_id=as_user or settings.user_id)
    plain(f"imported {count} pages for {as_user or settings.user_id}")


@store_command()
def delete(
    settings: Settings,
    page_id: Annotated[str | None, typer.Argument(help="The page to delete.")] = None,
    everything: Annotated[bool, typer.Option("--all", help="Delete all of the user's memory.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm --all.")] = False,
) -> None:
    """Delete one page (and what was derived from it), or all of the user's memory with --all --yes."""
    if (page_id is None) == (not everything):
        error("give a page id, or --all (with --yes) to delete all of the user's memory")
    if everything and not yes:
        error(f"--all deletes all memory of {settings.user_id}: add --yes to confirm")
    with opened(settings, existing=True) as memory:
        count = memory.delete_memory(page_id, everything=everything)
    plain(f"deleted {count} page(s) of {settings.user_id}")


@store_command()
def chat(settings: Settings) -> None:
    """Chat with an LLM that remembers (OPENAI_API_KEY, or openai_api_key in --config); exit or EOF ends."""
    if not settings.has_llm:
        error("chat needs an LLM: set OPENAI_API_KEY (and OPENAI_BASE_URL) or openai_api_key in --config")
    from memoryos_core.app.cli_output import prompt_safe_logging

    with opened(settings, background=True) as memory, prompt_safe_logging(stderr) as logs:
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
            plain(f"assistant> {answer}")
