"""The ``memoryos bench`` commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

bench_app = typer.Typer(help="Benchmarks: print figures and write JSON.", no_args_is_help=True)
console = Console()


@bench_app.command()
def scale(
    users: Annotated[int, typer.Option(help="Users to fill.")] = 1,
    pages: Annotated[int, typer.Option(help="Pages per user at the largest size.")] = 10_000,
    embedder: Annotated[
        str, typer.Option(help="local (all-MiniLM-L6-v2) or hash (storage cost only).")
    ] = "hash",
    chroma_url: Annotated[str | None, typer.Option(help="A `chroma run` server instead of embedded.")] = None,
    samples: Annotated[int, typer.Option(help="Timed single calls at each size.")] = 200,
    out: Annotated[Path | None, typer.Option(help="Write the JSON result here.")] = None,
) -> None:
    """Time add_memory and retrieve_memory as the store grows through 1k, 10k, 100k pages."""
    from memoryos_core.bench.scale import run_scale

    if embedder not in ("local", "hash"):
        raise typer.BadParameter("use local or hash", param_hint="--embedder")
    result = run_scale(
        users=users,
        pages=pages,
        embedder=embedder,
        chroma_url=chroma_url,
        samples=samples,
        progress=lambda line: console.print(f"[dim]{line}[/dim]"),
    )
    table = Table(title=f"bench scale: {result['backend']}, {result['embedder']}, {users} user(s)")
    for column in (
        "pages",
        "add p50 ms",
        "add p95 ms",
        "retrieve p50 ms",
        "retrieve p95 ms",
        "rss MB",
        "disk MB",
    ):
        table.add_column(column, justify="right")
    for p in result["points"]:
        table.add_row(
            str(p["pages"]),
            *(
                f"{p[k]:.1f}"
                for k in (
                    "add_ms_p50",
                    "add_ms_p95",
                    "retrieve_ms_p50",
                    "retrieve_ms_p95",
                    "rss_mb",
                    "disk_mb",
                )
            ),
        )
    console.print(table)
    if out:
        out.write_text(json.dumps(result, indent=2))
