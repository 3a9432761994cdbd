"""The built-in demo conversation of ``memoryos demo`` and how its results are printed."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from memoryos_core.app.cli_output import iso_time, print_stats, relevance

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


def _print_recall(console: Console, context: Any) -> None:
    table = Table(title=f"recall: {context.query}  ({context.cost.ms:.0f} ms)", show_lines=False)
    for column in ("rank", "tier", "relevance", "date", "from"):
        table.add_column(column, no_wrap=True)
    table.add_column("text", ratio=1)  # the only column that wraps, so the table fits the terminal
    for rank, unit in enumerate(context.all_units[:4], 1):
        text = unit.meta_data.get("user_input") or unit.text
        table.add_row(
            str(rank),
            unit.tier.replace("_", "-"),
            str(relevance(unit.score)),
            iso_time(unit.timestamp)[:10],
            ",".join(unit.source_ids),
            text[:80],
        )
    console.print(table)


def run_demo(console: Console, *, user: str, data: Path | None, chroma_url: str | None) -> None:
    """Ingest the conversation (once per store), consolidate, print the tiers and three recalls."""
    from memoryos_core import MemoryOS

    with tempfile.TemporaryDirectory(prefix="memoryos-demo-") as scratch:
        memory = MemoryOS(
            user_id=user,
            data_storage_path=str(data or Path(scratch)),
            chroma_url=chroma_url,
            short_term_capacity=4,
        )
        try:
            if not memory.recent_pages(1):
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
            print_stats(console, memory.get_memory_stats())
            for question in DEMO_QUESTIONS:
                _print_recall(console, memory.retrieve_memory(question, top_k=2))
        finally:
            memory.close()
