"""``memoryos bench embed``: the default embedder's speed in fp32 and int8, on real LoCoMo turns, in one run.

Each turn is embedded as a page side holds it (``speaker: text``). Both precisions run in the same
process, their rounds interleaved, so a busy machine slows both alike: read the ratio, and the CPU time
(the work done, which other processes do not stretch). FLOPs are counted from the model's dimensions and
each turn's real token count (the matrix products of the encoder and of attention; no padding, embedding
lookups or normalisation), so padding and overheads show as a lower achieved GFLOP/s. The protocol is in
``docs/benchmark.md``.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from memoryos_core.bench.locomo_data import load_locomo
from memoryos_core.embeddings.local import LocalEmbedder

BASELINE = "fp32"
ORDER = (BASELINE, "int8")


def locomo_turns(data: Path, limit: int | None = None, seed: int = 0) -> list[str]:
    """The file's turns as ``speaker: text``; ``limit`` of them drawn at random (seeded), in file order."""
    conversations = load_locomo(data)
    turns = [f"{turn.speaker}: {turn.text}" for conversation in conversations for turn in conversation.turns]
    if limit is not None and limit < len(turns):
        keep = sorted(random.Random(seed).sample(range(len(turns)), limit))
        turns = [turns[index] for index in keep]
    return turns


def forward_flops(tokens: int, *, hidden: int, layers: int, intermediate: int) -> int:
    """Multiply-adds x 2 of one BERT forward pass over ``tokens`` tokens: the Q, K, V and output
    projections, the two feed-forward products, and attention's scores and weighted sum."""
    dense = 2 * tokens * hidden * (4 * hidden + 2 * intermediate)
    attention = 2 * 2 * tokens * tokens * hidden
    return layers * (dense + attention)


def _cpu() -> float:
    """CPU seconds of this process, every thread (onnxruntime's included)."""
    times = os.times()
    return times.user + times.system


def _timed(call: Callable[[], Any]) -> tuple[float, float]:
    cpu, started = _cpu(), time.perf_counter()
    call()
    return time.perf_counter() - started, _cpu() - cpu


def run_embed(
    *,
    data: Path,
    limit: int | None = 1000,
    rounds: int = 3,
    singles: int = 100,
    batch_size: int = 32,
    threads: int | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Embed ``limit`` LoCoMo turns ``rounds`` times per precision (batches of ``batch_size``), time
    ``singles`` one-turn calls each, and compare the int8 vectors with the fp32 ones.

    Raises:
        ValueError: the file holds no turns.
    """
    turns = locomo_turns(data, limit)
    if not turns:
        raise ValueError(f"{data} holds no turns")
    embedders = {p: LocalEmbedder(batch_size=batch_size, threads=threads, precision=p) for p in ORDER}
    base = embedders[BASELINE]
    spec = base._model_spec()
    tokenizer = _tokenizer(base)
    lengths = [len(encoding.ids) for encoding in tokenizer.encode_batch(turns)]
    dims = _dims(spec.folder, spec.hidden_size, spec.num_layers)
    flops = sum(forward_flops(n, **dims) for n in lengths)
    sample = random.Random(1).choices(turns, k=singles)
    one_flops = sum(forward_flops(len(e.ids), **dims) for e in tokenizer.encode_batch(sample))
    load_start = os.getloadavg()
    vectors = {p: np.asarray(e.embed(turns), dtype=np.float32) for p, e in embedders.items()}  # warm-up
    walls: dict[str, list[float]] = {p: [] for p in ORDER}
    cpus: dict[str, list[float]] = {p: [] for p in ORDER}
    for round_ in range(rounds):
        for precision, embedder in embedders.items():
            wall, cpu = _timed(lambda: embedder.embed(turns))  # noqa: B023 (called at once)
            walls[precision].append(wall)
            cpus[precision].append(cpu)
        progress(f"round {round_ + 1}/{rounds}: " + ", ".join(f"{p} {w[-1]:.2f} s" for p, w in walls.items()))
    one: dict[str, list[float]] = {p: [] for p in ORDER}
    one_cpu: dict[str, float] = dict.fromkeys(ORDER, 0.0)
    for text in sample:
        for precision, embedder in embedders.items():
            wall, cpu = _timed(lambda: embedder.embed([text]))  # noqa: B023
            one[precision].append(wall)
            one_cpu[precision] += cpu
    results: dict[str, dict[str, float]] = {}
    for precision in ORDER:
        wall, cpu = statistics.median(walls[precision]), statistics.median(cpus[precision])
        results[precision] = {
            "turns_per_s": round(len(turns) / wall, 1),
            "turns_per_cpu_s": round(len(turns) / cpu, 1),
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "gflops": round(flops / wall / 1e9, 1),
            "gflops_per_cpu_s": round(flops / cpu / 1e9, 1),
            "one_ms_p50": round(statistics.median(one[precision]) * 1000, 2),
            "one_cpu_ms_mean": round(one_cpu[precision] / len(sample) * 1000, 2),
            "one_gflops": round(one_flops / sum(one[precision]) / 1e9, 1),
        }
    cosine = np.sum(vectors["int8"] * vectors[BASELINE], axis=1)
    fp32, int8 = results[BASELINE], results["int8"]
    return {
        "dataset": data.name,
        "turns": len(turns),
        "tokens_mean": round(float(np.mean(lengths)), 1),
        "gflop_per_turn": round(flops / len(turns) / 1e9, 3),
        "batch_size": batch_size,
        "threads": base.threads,
        "cpus": os.cpu_count(),
        "rounds": rounds,
        "singles": singles,
        "load_avg_start": [round(value, 2) for value in load_start],
        "load_avg_end": [round(value, 2) for value in os.getloadavg()],
        "precisions": results,
        "int8_speedup": round(int8["turns_per_s"] / fp32["turns_per_s"], 2),
        "int8_cpu_speedup": round(int8["turns_per_cpu_s"] / fp32["turns_per_cpu_s"], 2),
        "cosine_int8_fp32": {
            "mean": round(float(cosine.mean()), 4),
            "p1": round(float(np.percentile(cosine, 1)), 4),
            "min": round(float(cosine.min()), 4),
        },
    }


def _tokenizer(embedder: LocalEmbedder) -> Any:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(embedder._model_spec().folder / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=embedder._model_spec().max_seq_length)
    tokenizer.no_padding()
    return tokenizer


def _dims(folder: Path, hidden: int, layers: int) -> dict[str, int]:
    from memoryos_core.embeddings._bert_graph import read_json

    intermediate = int(read_json(folder / "config.json").get("intermediate_size", 4 * hidden))
    return {"hidden": hidden, "layers": layers, "intermediate": intermediate}


def print_report(console: Console, result: dict[str, Any]) -> None:
    """The table of ``memoryos bench embed`` and a line on the load and the vectors' agreement."""
    table = Table(
        title=(
            f"bench embed: {result['turns']} LoCoMo turns ({result['dataset']}, "
            f"{result['tokens_mean']} tokens on average), batches of {result['batch_size']}, "
            f"{result['threads']} threads, median of {result['rounds']} rounds"
        )
    )
    # headers with spaces, so rich wraps them in an 80-column terminal instead of cutting them
    columns = (
        "precision",
        "turns/s",
        "turns per cpu-s",
        "GFLOP/s",
        "GFLOP per cpu-s",
        "one ms p50",
        "one GFLOP/s",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "precision" else "right")
    keys: Sequence[str] = ("turns_per_s", "turns_per_cpu_s", "gflops", "gflops_per_cpu_s", "one_ms_p50")
    for precision, row in result["precisions"].items():
        table.add_row(precision, *(f"{row[key]:g}" for key in keys), f"{row['one_gflops']:g}")
    console.print(table)
    cosine = result["cosine_int8_fp32"]
    console.print(
        f"int8 / fp32: {result['int8_speedup']}x turns/s, {result['int8_cpu_speedup']}x per CPU second; "
        f"cosine int8 to fp32 mean {cosine['mean']}, 1st percentile {cosine['p1']}, min {cosine['min']}; "
        f"load average {result['load_avg_start'][0]} at the start, {result['load_avg_end'][0]} at the end "
        f"on {result['cpus']} CPUs"
    )
