"""The ``memoryos`` command line (typer + rich): parse input, call MemoryOS, format output."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

from memoryos_core._exceptions import MemoryOSError, MissingDependencyError

try:
    import typer
    from rich.console import Console
    from rich.table import Table
except ImportError as exc:  # pragma: no cover - typer and rich are core dependencies
    raise MissingDependencyError("typer and rich") from exc

app = typer.Typer(help="MemoryOS: tiered memory for AI agents.", no_args_is_help=True, add_completion=False)
console = Console()


@app.callback()
def _root() -> None:
    """MemoryOS: tiered memory for AI agents (run a command with --help for its options)."""


DEMO_CONVERSATION = [
    ("Hi! I'm Maya. I just moved to Lisbon for a job as a data scientist.", "Welcome to Lisbon, Maya!"),
    ("I have a golden retriever called Biscuit who loves the beach.", "Biscuit sounds like a happy dog."),
    ("My team uses Python and we're migrating our pipelines to Spark.", "Spark migrations take patience."),
    ("On weekends I surf at Costa da Caparica.", "Great spot for beginners and pros."),
    ("I'm vegetarian, so finding good food here has been fun.", "Lisbon has more veggie places each year."),
    ("My sister is visiting in May; we want to see Sintra.", "Pena Palace is worth the early start."),
    ("Work is stressful: the Spark job keeps running out of memory.", "Try tuning executor memory first."),
    ("Biscuit chewed my surfboard leash yesterday, haha.", "Time for a sturdier leash!"),
    ("I'm learning Portuguese on Duolingo every morning.", "Muito bem! Consistency pays off."),
    ("The Spark fix worked: we raised spark.executor.memory to 8g.", "Nice debugging!"),
    ("Any ideas for vegetarian dishes to cook for my sister?", "Try a chickpea and spinach stew."),
]
DEMO_QUESTIONS = ["What is my dog's name?", "How did I fix the Spark problem?", "What do I do on weekends?"]

UserOption = Annotated[str, typer.Option("--user", help="User id.")]
DataOption = Annotated[Path | None, typer.Option("--data", help="Folder of the embedded store.")]
ChromaOption = Annotated[str | None, typer.Option("--chroma-url", help="A `chroma run` server instead.")]


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(code=1)


def _memory(user: str, data: Path | None, chroma_url: str | None, **kwargs: Any) -> Any:
    from memoryos_core import MemoryOS

    return MemoryOS(
        user_id=user, data_storage_path=str(data) if data else None, chroma_url=chroma_url, **kwargs
    )


@app.command()
def demo(user: UserOption = "demo_user", data: DataOption = None, chroma_url: ChromaOption = None) -> None:
    """Ingest a short built-in conversation offline, show the tiers, and recall with provenance."""
    try:
        with tempfile.TemporaryDirectory(prefix="memoryos-demo-") as scratch:
            memory = _memory(user, data or Path(scratch), chroma_url, short_term_capacity=4)
            if memory.get_memory_stats().short_term_pages == 0:
                memory.add_memories(
                    [
                        {
                            "user_input": u,
                            "agent_response": a,
                            "timestamp": f"2025-03-{i + 1:02d} 19:00:00",
                            "meta_data": {"message_id": f"demo-{i + 1}"},
                        }
                        for i, (u, a) in enumerate(DEMO_CONVERSATION)
                    ]
                )
            memory.flush()
            _print_stats(memory.get_memory_stats())
            for question in DEMO_QUESTIONS:
                _print_recall(memory.retrieve_memory(question, top_k=2))
            memory.close()
    except MemoryOSError as exc:
        _fail(exc)


def _print_stats(stats: Any) -> None:
    table = Table(title=f"Memory of {stats.user_id}")
    for column in (
        "short-term",
        "pending",
        "mid-term pages",
        "segments",
        "user knowledge",
        "profile traits",
        "LLM calls",
    ):
        table.add_column(column, justify="right")
    table.add_row(
        *map(
            str,
            (
                stats.short_term_pages,
                stats.pending_pages,
                stats.mid_term_pages,
                stats.segments,
                stats.user_knowledge,
                stats.profile_traits,
                stats.cost.llm_calls,
            ),
        )
    )
    console.print(table)
    if stats.hot_segments:
        console.print(
            f"[yellow]{stats.hot_segments} hot segment(s) wait for an LLM to be analysed into the "
            "profile (no API key configured).[/yellow]"
        )


def _print_recall(context: Any) -> None:
    table = Table(title=f"recall: {context.query}  ({context.cost.ms:.0f} ms)", show_lines=False)
    for column in ("rank", "tier", "score", "when", "from", "text"):
        table.add_column(column)
    for rank, unit in enumerate(context.units[:4], 1):
        text = unit.meta_data.get("user_input") or unit.text
        table.add_row(
            str(rank),
            unit.tier,
            f"{unit.score:.2f}",
            unit.timestamp[:10],
            ",".join(unit.source_ids),
            text[:80],
        )
    console.print(table)


def main() -> None:
    from memoryos_core.bench.cli import bench_app

    app.add_typer(bench_app, name="bench")
    app()
