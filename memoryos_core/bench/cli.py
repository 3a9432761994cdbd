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


def _progress(line: str) -> None:
    console.print(f"[dim]{line}[/dim]")


def _save(out: Path | None, result: object) -> None:
    """Write ``result`` as JSON to ``out``, if given."""
    if out:
        out.write_text(json.dumps(result, indent=2) + "\n")


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
    durability: Annotated[
        str, typer.Option(help="fsync (default) or process: MemoryConfig.durability of the page journal.")
    ] = "fsync",
    text: Annotated[
        str,
        typer.Option(
            help="synthetic (sentences of 46 words: every query word in nearly half the pages, the lexical "
            "worst case) or locomo (real messages and questions of --data)."
        ),
    ] = "synthetic",
    data: Annotated[
        Path | None,
        typer.Option(help="The LoCoMo-format file --text locomo reads.", exists=True, dir_okay=False),
    ] = None,
) -> None:
    """Time add_memory and retrieve_memory as the store grows through 1k, 10k, 100k pages."""
    from memoryos_core.bench.scale import TEXTS, run_scale

    if embedder not in ("local", "hash"):
        raise typer.BadParameter("use local or hash", param_hint="--embedder")
    if text not in TEXTS:
        raise typer.BadParameter(f"use one of {', '.join(TEXTS)}", param_hint="--text")
    if (text == "locomo") != (data is not None):
        raise typer.BadParameter("--text locomo reads --data (and only it does)", param_hint="--data")
    result = run_scale(
        users=users,
        pages=pages,
        embedder=embedder,
        chroma_url=chroma_url,
        samples=samples,
        durability=durability,
        text=text,
        data=data,
        progress=_progress,
    )
    table = Table(
        title=f"bench scale: {result['backend']}, {result['embedder']}, {users} user(s), {text} text"
    )
    for column in (
        "pages",
        "add p50 ms",
        "add p95 ms",
        "recall p50 ms",
        "recall p95 ms",
        "delete page ms",
        "erase ms",
        "rss MB",
        "disk MB",
    ):
        # no header word cut (rich would shrink "retrieve" to "retri…" in 80 columns)
        table.add_column(column, justify="right", min_width=max(map(len, column.split())))
    for p in result["points"]:
        table.add_row(
            str(p["pages"]),
            *(
                _figure(p[k])
                for k in (
                    "add_ms_p50",
                    "add_ms_p95",
                    "retrieve_ms_p50",
                    "retrieve_ms_p95",
                    "delete_page_ms_p50",
                    "erase_ms",
                    "rss_mb",
                    "disk_mb",
                )
            ),
        )
    console.print(table)
    if out:
        out.write_text(json.dumps(result, indent=2))


def _figure(value: float) -> str:
    """A table cell: one decimal below 100, none above (so the table fits an 80-column terminal)."""
    return f"{value:.1f}" if abs(value) < 100 else f"{value:.0f}"


def _parse_ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError as exc:
        message = "a comma-separated list of integers, e.g. 5,10,25,50"
        raise typer.BadParameter(message, param_hint="--k") from exc
    if not ks or ks[0] < 1 or ks[-1] > 1000:
        raise typer.BadParameter("integers from 1 to 1000", param_hint="--k")
    return ks


@bench_app.command()
def locomo(
    data: Annotated[
        Path, typer.Option(help="A LoCoMo-format JSON file (locomo10.json).", exists=True, dir_okay=False)
    ],
    out: Annotated[Path | None, typer.Option(help="Write the JSON result here.")] = None,
    k: Annotated[str, typer.Option("--k", help="Turn budgets, comma-separated.")] = "5,10,25,50",
    limit_conversations: Annotated[
        int | None, typer.Option(help="Only the first N conversations.", min=1)
    ] = None,
    llm: Annotated[
        str, typer.Option(help="Consolidation LLM: none (offline), fake (counting RuleBasedLLM), openai.")
    ] = "none",
    answer: Annotated[
        bool, typer.Option("--answer", help="Also generate answers, score F1 / BLEU-1 (needs an endpoint).")
    ] = False,
    embedder: Annotated[
        str,
        typer.Option(
            help="local (all-MiniLM-L6-v2, int8: each conversation is a new store), local-int8, local-fp32, "
            "or hash (fast, for smoke runs)."
        ),
    ] = "local",
    answer_k: Annotated[
        int, typer.Option(help="Turns of recalled context given to the answer LLM.", min=1)
    ] = 10,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="OPENAI_API_KEY", show_default=False, help="Key for --llm openai / --answer."),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(envvar="OPENAI_BASE_URL", help="OpenAI-compatible endpoint URL.")
    ] = None,
    model: Annotated[str, typer.Option(help="Chat model for --llm openai / --answer.")] = "gpt-4o-mini",
    details: Annotated[
        Path | None, typer.Option(help="Write one JSON line per question (retrieved turns, units, answer).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Progress bars on stderr.")] = True,
) -> None:
    """Turn-level recall of MemoryOS on LoCoMo, against BM25 and dense baselines (docs/benchmark.md)."""
    from memoryos_core._exceptions import MemoryOSError
    from memoryos_core.bench.locomo import EMBEDDER_CHOICES, LLM_CHOICES, LocomoOptions, run_locomo
    from memoryos_core.bench.report import print_report

    if llm not in LLM_CHOICES:
        raise typer.BadParameter(f"use one of {', '.join(LLM_CHOICES)}", param_hint="--llm")
    if embedder not in EMBEDDER_CHOICES:
        raise typer.BadParameter(f"use one of {', '.join(EMBEDDER_CHOICES)}", param_hint="--embedder")
    if (answer or llm == "openai") and not api_key:
        raise typer.BadParameter("needs --api-key or OPENAI_API_KEY", param_hint="--answer / --llm openai")
    options = LocomoOptions(
        data=data,
        ks=_parse_ks(k),
        limit_conversations=limit_conversations,
        llm=llm,
        embedder=embedder,
        answer=answer,
        answer_k=answer_k,
        api_key=api_key,
        base_url=base_url,
        model=model,
        details=details,
        show_progress=progress,
    )
    try:
        result, diagnostics = run_locomo(options)
    except (MemoryOSError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=1) from exc
    print_report(console, result, diagnostics.summary())
    _save(out, result)


@bench_app.command()
def fusion(
    data: Annotated[
        Path, typer.Option(help="A LoCoMo-format JSON file (locomo10.json).", exists=True, dir_okay=False)
    ],
    cache: Annotated[
        Path | None,
        typer.Option(
            help="Keep the per-question features here and reuse them (rebuilt if the inputs differ)."
        ),
    ] = None,
    embedder: Annotated[str, typer.Option(help="local (all-MiniLM-L6-v2) or hash.")] = "local",
    limit_conversations: Annotated[
        int | None, typer.Option(help="Only the first N conversations.", min=2)
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the JSON result here.")] = None,
    expansion: Annotated[
        bool,
        typer.Option(help="Also cross-validate query expansion by word vectors (not in the engine; slow)."),
    ] = False,
    learn: Annotated[
        bool,
        typer.Option(help="Also cross-validate learned fusion weights (not in the engine; slow)."),
    ] = False,
    late: Annotated[
        bool,
        typer.Option(
            help="Also cross-validate a late-interaction rerank of the top pages by MiniLM's wordpiece "
            "vectors: two research forms (their vectors kept beside --cache as NAME.tokens.npz) and the "
            "engine's own (encoded again each run)."
        ),
    ] = False,
) -> None:
    """Cross-validate the ranking by conversation on LoCoMo and ablate each of its rules."""
    from memoryos_core.bench.fusion import run_fusion
    from memoryos_core.bench.fusion_data import cache_key, features_for
    from memoryos_core.bench.locomo import EMBEDDER_CHOICES, _embedder
    from memoryos_core.bench.report import print_fusion

    if embedder not in EMBEDDER_CHOICES:
        raise typer.BadParameter(f"use one of {', '.join(EMBEDDER_CHOICES)}", param_hint="--embedder")
    model = _embedder(embedder)
    features = features_for(data, model, limit_conversations, cache, progress=_progress)
    if len(features) < 2:  # (its tables would be empty, --learn would fail on them)
        console.print(
            f"[red]error:[/red] bench fusion leaves one conversation out: the file needs two or more, "
            f"it has {len(features)}"
        )
        raise typer.Exit(code=1)
    result = run_fusion(features)
    print_fusion(console, result)
    if expansion:
        from memoryos_core.bench.fusion_expand import expansion_table, print_expansion

        result["expansion"] = expansion_table(features)
        print_expansion(console, result["expansion"])
    if learn:
        from memoryos_core.bench.fusion import Evaluation
        from memoryos_core.bench.fusion_learn import learn_table, print_learn

        result["learned"] = learn_table(Evaluation(features))
        print_learn(console, result["learned"], result["k"])
    if late:
        from memoryos_core.bench.fusion import Evaluation
        from memoryos_core.bench.fusion_late import late_table, print_late, tokens_for
        from memoryos_core.bench.fusion_late_engine import engine_table

        tokens_cache = cache.with_name(f"{cache.stem}.tokens.npz") if cache else None
        key = cache_key(data, model, limit_conversations)
        tokens = tokens_for(data, features, key, tokens_cache, progress=_progress)
        evaluation = Evaluation(features)
        result["late"] = late_table(evaluation, tokens, progress=_progress)
        engine = engine_table(data, features, evaluation, progress=_progress)
        result["late"]["rows"] += engine.pop("rows")
        result["late"]["engine"] = engine
        print_late(console, result["late"], result["k"])
    _save(out, result)


@bench_app.command()
def reliability(
    kills: Annotated[int, typer.Option(help="Writer processes to SIGKILL at random moments.", min=0)] = 100,
    users: Annotated[int, typer.Option(help="Users for the isolation and deletion checks.", min=2)] = 50,
    queries: Annotated[int, typer.Option(help="Random cross-user queries.", min=0)] = 10_000,
    chroma_url: Annotated[str | None, typer.Option(help="A `chroma run` server instead of embedded.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the JSON result here.")] = None,
    reopen_runs: Annotated[
        int, typer.Option(help="Processes that write, close, reopen and exit (each must exit 0).", min=0)
    ] = 200,
) -> None:
    """Kill writers mid-ingestion and mid-consolidation, then count lost and duplicated pages and
    cross-user leaks; exits 1 if any figure is not zero."""
    from memoryos_core.bench.reliability import failed_figures, print_report, run_reliability

    result = run_reliability(
        kills=kills,
        users=users,
        queries=queries,
        chroma_url=chroma_url,
        reopen_runs=reopen_runs,
        progress=_progress,
    )
    print_report(console, result)
    _save(out, result)
    if failed_figures(result):
        console.print(f"[red]failed:[/red] {', '.join(failed_figures(result))}")
        raise typer.Exit(code=1)


@bench_app.command()
def startup(
    runs: Annotated[int, typer.Option(help="Timed fresh processes of each kind (median).", min=1)] = 7,
    out: Annotated[Path | None, typer.Option(help="Write the JSON result here.")] = None,
) -> None:
    """Time a fresh first add_memory and `memoryos stats` against `import chromadb, onnxruntime`."""
    from memoryos_core.bench.startup import run_startup

    result = run_startup(runs=runs, progress=_progress)
    table = Table(title=f"bench startup: median of {runs} fresh processes, Python {result['python']}")
    for column in ("process", "wall s", "x baseline", "cpu s", "cpu x baseline"):
        table.add_column(column, justify="left" if column == "process" else "right")
    rows = (
        ('python -c "import chromadb, onnxruntime"', "baseline_s", None),
        ("first add_memory (import, open, embed, store)", "add_memory_s", "add_memory_ratio"),
        ("memoryos stats", "stats_s", "stats_ratio"),
    )
    cpu = result["cpu"]
    for label, key, ratio in rows:
        wall_ratio, cpu_ratio = (result[ratio], cpu[ratio]) if ratio else (1.0, 1.0)
        table.add_row(label, f"{result[key]:.2f}", f"{wall_ratio:.2f}", f"{cpu[key]:.2f}", f"{cpu_ratio:.2f}")
    console.print(table)
    _save(out, result)


@bench_app.command()
def embed(
    data: Annotated[
        Path, typer.Option(help="A LoCoMo-format JSON file (locomo10.json).", exists=True, dir_okay=False)
    ],
    turns: Annotated[int, typer.Option(help="Turns drawn from the file (seeded); 0 for all.", min=0)] = 1000,
    rounds: Annotated[int, typer.Option(help="Timed passes over the turns per precision.", min=1)] = 3,
    singles: Annotated[int, typer.Option(help="Timed one-turn calls per precision (median).", min=1)] = 100,
    batch_size: Annotated[int, typer.Option(help="LocalEmbedder's batch_size.", min=1)] = 32,
    threads: Annotated[int | None, typer.Option(help="LocalEmbedder's threads (default: the CPUs).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the JSON result here.")] = None,
) -> None:
    """The default embedder in fp32 and int8 on LoCoMo turns: turns/s, one turn's ms, GFLOP/s, agreement."""
    from memoryos_core.bench.embed import print_report, run_embed

    result = run_embed(
        data=data,
        limit=turns or None,
        rounds=rounds,
        singles=singles,
        batch_size=batch_size,
        threads=threads,
        progress=_progress,
    )
    print_report(console, result)
    _save(out, result)
