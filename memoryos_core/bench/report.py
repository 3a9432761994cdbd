"""Rich tables for ``memoryos bench locomo``: recall per category and k, costs, answers, diagnostics."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from memoryos_core.bench.locomo_data import CATEGORY_NAMES

SYSTEMS = ("memoryos", "bm25", "dense")


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _legend(keys: list[str]) -> str:
    named = [
        f"{key} {CATEGORY_NAMES[int(key)]}" for key in keys if key.isdigit() and int(key) in CATEGORY_NAMES
    ]
    return "categories: " + ", ".join(named) + "; 1-4 and all pooled; recall and hit in %"


def recall_table(result: dict[str, Any]) -> Table:
    """Recall (%) per category for every k and system, with hit@k over all questions."""
    systems = result["systems"]
    first_k = str(result["k"][0])
    keys = list(systems["memoryos"]["recall"][first_k])
    table = Table(
        title=(
            f"bench locomo: {result['dataset']}, {result['conversations']} conversations, "
            f"{result['questions']} questions ({result['skipped']} skipped), "
            f"embedder {result['embedder']}, llm {result['llm']}"
        ),
        caption=_legend(keys),
    )
    table.add_column("R@k", justify="right")
    table.add_column("system", no_wrap=True, min_width=8)
    for key in keys:
        table.add_column(key, justify="right")
    table.add_column("hit", justify="right")
    for k in result["k"]:
        for position, name in enumerate(SYSTEMS):
            summary = systems[name]
            row = [str(k) if position == 0 else "", name]
            row += [_cell(summary["recall"][str(k)].get(key)) for key in keys]
            row.append(_cell(summary["hit"][str(k)]["all"]))
            table.add_row(*row, end_section=position == len(SYSTEMS) - 1)
    return table


def cost_table(result: dict[str, Any]) -> Table:
    """What the system cost to ingest and query, next to the baselines' query time."""
    system, systems = result["systems"]["memoryos"], result["systems"]
    table = Table(title="costs")
    coverage = "n/a" if system.get("promotion_coverage") is None else f"{system['promotion_coverage']:.1f}"
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = [
        ("memoryos ingest s (wall, whole file)", f"{system['ingest_s']:.1f}"),
        ("memoryos query ms p50 / p95", f"{system['query_ms_p50']:.1f} / {system['query_ms_p95']:.1f}"),
        ("memoryos LLM calls", str(system["llm_calls"])),
        (
            "memoryos LLM tokens in / out",
            f"{system['llm_prompt_tokens']} / {system['llm_completion_tokens']}",
        ),
        ("memoryos LLM calls per 100 pages", f"{system['llm_calls_per_100_pages']:.2f}"),
        ("memoryos promotion coverage % (pages analysed / consolidated)", coverage),
        ("bm25 query ms p50", f"{systems['bm25']['query_ms_p50']:.2f}"),
        ("dense query ms p50", f"{systems['dense']['query_ms_p50']:.2f}"),
    ]
    for row in rows:
        table.add_row(*row)
    return table


def answer_table(answer: dict[str, Any]) -> Table:
    """F1 and BLEU-1 (%) per category of the generated answers."""
    keys = list(answer["f1"])
    table = Table(
        title=f"answers ({answer['model']}, context {answer['answer_k']} turns, {answer['llm_calls']} calls)",
        caption=_legend(keys).replace("recall and hit", "F1 and BLEU-1"),
    )
    table.add_column("metric")
    for key in keys:
        table.add_column(key, justify="right")
    table.add_row("F1", *(_cell(answer["f1"][key]) for key in keys))
    table.add_row("BLEU-1", *(_cell(answer["bleu1"][key]) for key in keys))
    return table


def segment_table(segments: dict[str, Any]) -> Table:
    """Topic segments per conversation and pooled: count, biggest share, median size, coherence."""
    table = Table(title="topic segments (consolidated pages)")
    for name in ("conversation", "segments", "pages", "biggest %", "median size", "coherence"):
        table.add_column(name, justify="left" if name == "conversation" else "right")
    for user, f in segments["conversations"].items():
        margin = "-" if f["coherence"] is None else f"{f['coherence']:.3f}"
        table.add_row(
            user,
            str(f["segments"]),
            str(f["pages"]),
            _cell(f["biggest_share"]),
            f"{f['median_size']:g}",
            margin,
        )
    p = segments["pooled"]
    margin = "-" if p["coherence"] is None else f"{p['coherence']:.3f}"
    table.add_row(
        "pooled",
        f"{p['segments_per_conversation']:g}",
        "",
        _cell(p["biggest_share_max"]) + " max",
        f"{p['median_size']:g}",
        margin,
        end_section=True,
    )
    return table


def print_report(console: Console, result: dict[str, Any], diagnostics: dict[str, Any]) -> None:
    """Everything a run prints on stdout."""
    console.print(recall_table(result))
    console.print(cost_table(result))
    segments = result["systems"]["memoryos"].get("segments")
    if segments:
        console.print(segment_table(segments))
    answer = result["systems"]["memoryos"].get("answer")
    if answer:
        console.print(answer_table(answer))
    timings = ", ".join(f"{name} {value:.1f}s" for name, value in diagnostics["timings_s"].items())
    console.print(
        f"[dim]pages {diagnostics['pages']}, turns {diagnostics['turns']}, evidence ids dropped "
        f"{diagnostics['dropped_evidence_ids']}; per query the engine returned "
        f"{diagnostics['units_per_query']} units / {diagnostics['turns_per_query']} turns "
        f"(recall over all of them {_cell(diagnostics['recall_all_returned'])}%); "
        f"units by tier {diagnostics['units_by_tier']}; evidence in the first 10 turns by tier "
        f"{diagnostics['evidence_at_10_by_tier']}; LLM calls while querying "
        f"{diagnostics['query_phase_llm_calls']}; timings: {timings}[/dim]"
    )


def print_fusion(console: Console, result: dict[str, Any]) -> None:
    """The tables of ``memoryos bench fusion``: recall, cross-validation by conversation, ablation."""
    ks = [str(k) for k in result["k"]]
    keys = list(result["ranking"][ks[0]])
    table = Table(
        title=f"bench fusion: {result['conversations']} conversations, {result['questions']} questions",
        caption=_legend(keys),
    )
    table.add_column("R@k", justify="right")
    table.add_column("dense weight")
    for key in keys:
        table.add_column(key, justify="right")
    for k in ks:
        for position, (label, name) in enumerate(
            (("adaptive", "ranking"), ("constant", "constant_dense_weight"))
        ):
            row = [k if position == 0 else "", label, *(_cell(result[name][k].get(key)) for key in keys)]
            table.add_row(*row, end_section=position == 1)
    console.print(table)
    cv = result["cross_validation"]
    folds = Table(
        title=f"R@{cv['k']} per held-out conversation: shipped weights, and weights tuned on the other ones"
    )
    for column in ("conversation", "shipped", "tuned on the others", "tuned weights"):
        folds.add_column(column, justify="left" if column in ("conversation", "tuned weights") else "right")
    for name, shipped, held, weights in zip(
        cv["conversations"], cv["shipped"], cv["tuned_held_out"], cv["tuned_weights"]
    ):
        described = " ".join(f"{key} {value:g}" for key, value in weights.items())
        folds.add_row(name, _cell(shipped), _cell(held), described)
    for label in ("mean", "std", "min", "max"):
        folds.add_row(
            label,
            _cell(cv["shipped_spread"][label]),
            _cell(cv["tuned_held_out_spread"][label]),
            "",
            end_section=label == "mean",
        )
    console.print(folds)
    ablation = Table(
        title=f"ablation: R@{cv['k']} without each rule (cross-validated deltas over conversations)"
    )
    for column in ("rule removed", "R@k", "delta", "CV delta", "folds worse", "folds better"):
        ablation.add_column(column, justify="left" if column == "rule removed" else "right")
    for row in result["ablation"]:
        ablation.add_row(
            row["rule"],
            _cell(row["recall_without"]),
            f"{row['delta']:+.1f}",
            f"{row['cv_delta']:+.1f}",
            str(row["folds_worse"]),
            str(row["folds_better"]),
        )
    console.print(ablation)
    terms = Table(title="query-term coverage + neighbour text: held-out gain over the ranking without them")
    for column in (
        "R@k",
        "without",
        "shipped: mean",
        "sd",
        "better / worse",
        "tuned: mean",
        "sd",
        "better / worse",
    ):
        terms.add_column(column, justify="right")
    for row in result.get("term_signals", []):
        shipped, tuned = row["shipped"], row["tuned"]
        terms.add_row(
            str(row["k"]),
            _cell(row["without"]["mean"]),
            f"{shipped['mean']:+.1f}",
            _cell(shipped["std"]),
            f"{shipped['better']} / {shipped['worse']}",
            f"{tuned['mean']:+.1f}",
            _cell(tuned["std"]),
            f"{tuned['better']} / {tuned['worse']}",
        )
    console.print(terms)
