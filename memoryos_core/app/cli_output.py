"""What the ``memoryos`` commands print: readable relevance, ISO 8601 times, recall and stats, and log
lines that wait while the chat prompt does."""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from rich.console import Console, JustifyMethod
from rich.markup import escape
from rich.table import Table

from memoryos_core._types import ContextUnit, MemoryStats, RetrievedContext, SegmentInfo, UserProfile
from memoryos_core._validation import parse_moment

RELEVANCE_NOTE = (
    "relevance 0-100: 50 = a typical page of this user, 84 = one standard deviation better, 98 = two"
)
"""How to read the relevance the commands show (the engine's score is in z-units, so often negative)."""

_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


def relevance(score: float) -> int:
    """A z-unit score as 0-100: the share of a normal population it beats (50 at z = 0)."""
    if not math.isfinite(score):
        return 100 if score > 0 else 0
    return round(50.0 * (1.0 + math.erf(score / math.sqrt(2.0))))


def iso_time(text: str) -> str:
    """A page timestamp as ISO 8601 (UTC, as the engine reads it); text no format matches stays as given."""
    text = text.strip()
    if not text or _DATE_ONLY.fullmatch(text):
        return text  # a bare date is ISO 8601 already; a time of day would be invented
    moment = parse_moment(text)
    if moment is None:
        return text
    # A time without a zone is UTC for the engine's recency and date filters: say so.
    moment = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_from_epoch(epoch_s: float) -> str:
    """Epoch seconds as ISO 8601 UTC ("" for 0, meaning unknown)."""
    if not epoch_s:
        return ""
    return datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def with_iso_times(data: Any) -> Any:
    """A copy of JSON-ready ``data`` where every ``*_s`` epoch gains an ISO 8601 ``*_at`` twin and
    every page ``timestamp`` an ``iso_time`` twin; the original fields stay, so it still imports."""
    if isinstance(data, (list, tuple)):
        return [with_iso_times(item) for item in data]
    if not isinstance(data, dict):
        return data
    out: dict[str, Any] = {}
    for key, value in data.items():
        # The caller's own meta_data is theirs, kept byte for byte (an import must give it back).
        out[key] = value if key == "meta_data" else with_iso_times(value)
        if key.endswith("_s") and isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{key[:-2]}_at"] = iso_from_epoch(float(value))
        elif key == "timestamp" and isinstance(value, str):
            out["iso_time"] = iso_time(value)
    return out


def recall_json(context: RetrievedContext) -> dict[str, Any]:
    """The MCP shape of a recall, each entry with its ``relevance`` (0-100) and ``iso_time`` added."""
    from memoryos_core.app.mcp import retrieve_memory_dict  # pydantic models: loaded when asked for JSON

    data: dict[str, Any] = with_iso_times(retrieve_memory_dict(context))
    for key in (
        "short_term_memory",
        "retrieved_pages",
        "retrieved_user_knowledge",
        "retrieved_assistant_knowledge",
    ):
        for entry in data[key]:
            entry["relevance"] = relevance(float(entry["score"]))
    data["relevance_note"] = RELEVANCE_NOTE
    return data


def _plain(console: Console, text: str, style: str = "") -> None:
    console.print(text, style=style or None, markup=False, highlight=False, soft_wrap=True)


def _print_unit(console: Console, rank: int | None, unit: ContextUnit) -> None:
    when = iso_time(unit.timestamp)
    head = f"{rank}. " if rank is not None else "- "
    is_page = unit.tier in ("short_term", "mid_term", "archive")
    what = f"page {unit.id}" if is_page else f"{unit.tier.replace('_', ' ')} {unit.id}"
    parts = [f"{head}relevance {relevance(unit.score)}", what, when]
    if not is_page and unit.page_ids:
        parts.append(f"pages {','.join(unit.page_ids)}")
    if unit.source_ids:
        parts.append(f"from {','.join(unit.source_ids)}")
    _plain(console, "  ".join(part for part in parts if part), "bold")
    if is_page:
        lines = [f"User: {unit.meta_data['user_input']}"] if unit.meta_data.get("user_input") else []
        if unit.meta_data.get("agent_response"):
            lines.append(f"Assistant: {unit.meta_data['agent_response']}")
    else:
        lines = [unit.text]
    for line in "\n".join(lines).splitlines():
        _plain(console, f"   {line}")


def print_recall(console: Console, context: RetrievedContext, top_k: int) -> None:
    """Short-term pages (the recent conversation) first, then the ranked units, then the profile."""
    if not context.short_term and not context.units and not context.profile:
        _plain(console, f"no memory for {context.user_id} yet")
        return
    _plain(console, RELEVANCE_NOTE, "dim")
    if context.short_term:
        _plain(
            console, f"recent conversation ({len(context.short_term)} short-term pages, oldest first)", "bold"
        )
        for unit in context.short_term:
            _print_unit(console, None, unit)
    label = f"older pages and knowledge, best first ({len(context.units)} of --top-k {top_k})"
    _plain(console, label if context.units else "no older pages or knowledge match", "bold")
    for rank, unit in enumerate(context.units, 1):
        _print_unit(console, rank, unit)
    if context.profile:
        _plain(console, "profile:", "bold")
        _plain(console, context.profile)


def _provenance(page_ids: tuple[str, ...], updated_s: float) -> str:
    when = iso_from_epoch(updated_s)
    return f"(pages {', '.join(page_ids)}{f'; updated {when}' if when else ''})"


def print_profile(console: Console, found: UserProfile) -> None:
    """Profile traits and knowledge, each with the pages it came from and when it was updated."""
    _plain(console, f"profile of {found.user_id}", "bold")
    for trait in found.traits:
        _plain(console, f"- {trait.name}: {trait.value}  {_provenance(trait.page_ids, trait.updated_s)}")
    for title, items in (
        ("user knowledge", found.user_knowledge),
        ("assistant knowledge", found.assistant_knowledge),
    ):
        if items:
            _plain(console, title, "bold")
        for item in items:
            _plain(console, f"- {item.text}  {_provenance(item.page_ids, item.updated_s)}")
    if not (found.traits or found.user_knowledge or found.assistant_knowledge):
        _plain(console, "nothing yet: an LLM builds the profile from segments that become hot")


def print_stats(console: Console, stats: MemoryStats) -> None:
    """Counts per tier and cost as a two-column table (fits any terminal width)."""
    table = Table(title=f"Memory of {stats.user_id}", show_header=False)
    table.add_column("what", no_wrap=True)
    table.add_column("count", justify="right", no_wrap=True)
    for label, value in (
        ("short-term pages", stats.short_term_pages),
        ("pending pages", stats.pending_pages),
        ("mid-term pages", stats.mid_term_pages),
        ("archived pages", stats.archived_pages),
        ("segments", stats.segments),  # the hot ones are told below
        ("user knowledge", stats.user_knowledge),
        ("assistant knowledge", stats.assistant_knowledge),
        ("profile traits", stats.profile_traits),
        ("LLM calls", stats.cost.llm_calls),
        ("LLM tokens in / out", f"{stats.cost.prompt_tokens} / {stats.cost.completion_tokens}"),
    ):
        table.add_row(label, str(value))
    console.print(table)
    if stats.hot_segments:
        console.print(
            f"[yellow]{stats.hot_segments} hot segment(s) wait for an LLM to be analysed into the "
            "profile (no API key configured).[/yellow]"
        )


def print_segments(console: Console, user_id: str, found: list[SegmentInfo], threshold: float) -> None:
    """One row per segment, hottest first; keywords and summary are clipped to the terminal's width."""
    if not found:
        _plain(console, f"no segments for {user_id} yet: pages join segments once consolidated")
        return
    rows: list[tuple[str, ...]] = [
        (
            segment.id,
            f"{segment.heat:.2f}",
            "*" if segment.is_hot else "",
            f"{len(segment.page_ids)} ({segment.pending_pages} new)"
            if segment.pending_pages
            else str(len(segment.page_ids)),
            ", ".join(segment.keywords),
            " ".join(segment.summary.split()),
        )
        for segment in found
    ]
    names: tuple[str, ...] = ("id", "heat", "hot", "pages", "keywords", "summary")
    fixed = [max(len(names[i]), *(len(row[i]) for row in rows)) for i in range(4)]
    # A column takes its width plus two of padding and one of border; the table one border more.
    left = console.width - sum(width + 3 for width in fixed) - 1 - 2 * 3
    if left >= 28:  # keywords take up to a third of what is left, the summary the rest
        longest = max(len(names[4]), *(len(row[4]) for row in rows))
        keywords = min(longest, max(8, left // 3))
        widths, shown = [*fixed, keywords, left - keywords], names
    else:  # a narrow terminal: the summary alone (the ids are never cut)
        widths, shown = [*fixed, max(10, left + 3)], names[:4] + names[5:]
        rows = [row[:4] + row[5:] for row in rows]
    table = Table(title=f"Segments of {user_id} (hot *: heat >= {threshold:g} and new pages to analyse)")
    justify: dict[str, JustifyMethod] = {"heat": "right", "hot": "center", "pages": "right"}
    for name, width in zip(shown, widths):
        table.add_column(
            name, justify=justify.get(name, "left"), width=width, no_wrap=True, overflow="ellipsis"
        )
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    console.print(table)


class PromptSafeLogs(logging.Handler):
    """Prints log records on a console, holding those that arrive while a prompt waits for input.

    Background consolidation logs from another thread; written at once, a warning would land in the
    middle of the line the person is typing.
    """

    def __init__(self, console: Console, level: int = logging.WARNING) -> None:
        super().__init__(level)
        self.console = console
        self._guard = threading.Lock()  # held while printing, so a prompt never starts mid-line
        self._prompting = False
        self._held: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = f"{record.levelname.lower()}: {record.getMessage()}"
            if record.exc_info and record.exc_info[1] is not None:  # no traceback over a chat
                line += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        except Exception:  # a bad format string must not kill the worker thread
            self.handleError(record)
            return
        with self._guard:
            if self._prompting:
                self._held.append(line)
            else:
                self.console.print(f"[yellow]{escape(line)}[/yellow]", soft_wrap=True)

    @contextmanager
    def prompting(self) -> Iterator[None]:
        """While inside, records wait; on leaving (the person pressed Enter) they are printed."""
        with self._guard:
            self._prompting = True
        try:
            yield
        finally:
            with self._guard:
                self._prompting = False
                held, self._held = self._held, []
                for line in held:
                    self.console.print(f"[yellow]{escape(line)}[/yellow]", soft_wrap=True)


@contextmanager
def prompt_safe_logging(console: Console, logger_name: str = "memoryos") -> Iterator[PromptSafeLogs]:
    """Route ``logger_name``'s records through a :class:`PromptSafeLogs` (only) while inside."""
    logger = logging.getLogger(logger_name)
    handler = PromptSafeLogs(console)
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False  # the root or last-resort handler would print them at once
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
