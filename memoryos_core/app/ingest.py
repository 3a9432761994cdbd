"""Conversation files to pages: JSONL of turns or of chat messages, and LoCoMo samples.

A page is the dict :meth:`MemoryOS.add_memories` takes: ``user_input``, ``agent_response`` and optionally
``timestamp`` and ``meta_data``. The LoCoMo mapping is shared with the benchmarks, so both ingest alike.

Ingest is all or nothing, and idempotent: every page of the file is checked (as ``add_memories`` would)
before the first is stored, and a page's id is derived from its user, its content (texts, timestamp,
meta_data) and how many identical pages came before it in the file. Ingesting a file again, or a longer
version of it, stores only the pages not stored yet; an edited turn is a new page (the old one stays
until it is deleted).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memoryos_core._exceptions import InvalidInputError
from memoryos_core._validation import check_id

if TYPE_CHECKING:
    from memoryos_core.engine.memory import MemoryOS

PAGE_KEYS = frozenset({"user_input", "agent_response", "timestamp", "meta_data"})
MESSAGE_KEYS = frozenset({"role", "content", "timestamp", "message_id", "id", "name"})
USER_ROLES = frozenset({"user", "human"})
ASSISTANT_ROLES = frozenset({"assistant", "ai"})
_SESSION_KEY = re.compile(r"^session_(\d+)$")


@dataclass(frozen=True)
class PageBatch:
    """Pages read from one source, for one user.

    Attributes:
        user_id: the user the pages belong to (a LoCoMo ``sample_id``), or None for the caller's user.
        label: where the pages came from, for error messages and reports ("conv-26", "turns.jsonl").
        pages: the pages, in conversation order.
    """

    user_id: str | None
    label: str
    pages: list[dict[str, Any]]


def _turn_text(turn: Mapping[str, Any], where: str, speaker_names: bool) -> str:
    text = turn.get("text", "")
    caption = turn.get("blip_caption") or ""
    if not isinstance(text, str) or not isinstance(caption, str):
        raise InvalidInputError(f"{where}: text and blip_caption must be strings")
    text = text.strip()
    if caption.strip():
        # LoCoMo is multimodal: the caption of a shared photo is all the text we have of it.
        text = f"{text} (shares a photo: {caption.strip()})".strip()
    if not text:
        return ""
    return f"{turn.get('speaker')}: {text}" if speaker_names else text


def _sessions(conversation: Mapping[str, Any]) -> list[tuple[str, str, list[Any]]]:
    """(session key, date text, turns) in numeric session order (session_2 before session_10)."""
    numbered = sorted(
        (int(match.group(1)), key)
        for key in conversation
        if (match := _SESSION_KEY.fullmatch(key)) and isinstance(conversation[key], list)
    )
    return [(key, str(conversation.get(f"{key}_date_time") or ""), conversation[key]) for _, key in numbered]


def locomo_pages(sample: Mapping[str, Any], *, speaker_names: bool = True) -> list[dict[str, Any]]:
    """The pages of one LoCoMo sample, in conversation order.

    A speaker-A turn and the speaker-B turn right after it make one page (A is ``user_input``, B is
    ``agent_response``); a turn without such a partner makes a page with an empty side. The timestamp is
    the session's ``session_N_date_time``; ``meta_data`` is ``{"dia_ids": [...]}`` (kept as provenance).

    Args:
        sample: one item of the LoCoMo list, with ``conversation`` (``speaker_a``, ``speaker_b``,
            ``session_N`` turn lists of ``{"speaker", "dia_id", "text", "blip_caption"?}``,
            ``session_N_date_time``); ``qa`` and the rest are ignored.
        speaker_names: prefix each side with its speaker ("Caroline: ..."), as both sides are people.

    Raises:
        InvalidInputError: the sample does not have that shape.
    """
    name = str(sample.get("sample_id", "sample")) if isinstance(sample, Mapping) else "sample"
    conversation = sample.get("conversation") if isinstance(sample, Mapping) else None
    if not isinstance(conversation, Mapping):
        raise InvalidInputError(f"LoCoMo {name}: 'conversation' must be an object")
    sessions = _sessions(conversation)
    if not sessions:
        raise InvalidInputError(f"LoCoMo {name}: the conversation has no session_N turn lists")
    first = next((t for _, _, turns in sessions for t in turns if isinstance(t, Mapping)), {})
    speaker_a = conversation.get("speaker_a") or first.get("speaker")
    pages: list[dict[str, Any]] = []
    for key, date, turns in sessions:
        pending: tuple[str, str] | None = None  # the speaker-A turn waiting for its partner
        for index, turn in enumerate(turns, 1):
            where = f"LoCoMo {name} {key} turn {index}"
            if not isinstance(turn, Mapping) or not isinstance(turn.get("speaker"), str):
                raise InvalidInputError(f"{where}: a turn must be an object with a 'speaker'")
            text = _turn_text(turn, where, speaker_names)
            if not text:
                continue
            dia_id = str(turn.get("dia_id") or f"{key}:{index}")
            if turn["speaker"] == speaker_a:
                if pending is not None:
                    pages.append(_page(pending[1], "", date, [pending[0]]))
                pending = (dia_id, text)
            elif pending is not None:
                pages.append(_page(pending[1], text, date, [pending[0], dia_id]))
                pending = None
            else:
                pages.append(_page("", text, date, [dia_id]))
        if pending is not None:
            pages.append(_page(pending[1], "", date, [pending[0]]))
    return pages


def _page(user_input: str, agent_response: str, timestamp: str, dia_ids: list[str]) -> dict[str, Any]:
    page: dict[str, Any] = {"user_input": user_input, "agent_response": agent_response}
    if timestamp:
        page["timestamp"] = timestamp
    page["meta_data"] = {"dia_ids": dia_ids}
    return page


def messages_to_pages(
    messages: Iterable[Mapping[str, Any]], *, label: str = "messages"
) -> list[dict[str, Any]]:
    """Pair chat messages ``{"role", "content", "timestamp"?, "message_id"?}`` into pages.

    A user message and the assistant message right after it make one page; an unpaired message makes a
    page with an empty side; ``system`` messages are skipped. Message ids become ``meta_data["message_ids"]``.
    """
    pages: list[dict[str, Any]] = []
    pending: list[Mapping[str, Any]] = []
    for index, message in enumerate(messages, 1):
        role, content = message.get("role"), message.get("content")
        if not isinstance(content, str):
            raise InvalidInputError(f"{label} item {index}: 'content' must be a string")
        if role in USER_ROLES:
            if pending:
                pages.append(_pair(pending))
            pending = [message]
        elif role in ASSISTANT_ROLES:
            pages.append(_pair([*pending, message]))
            pending = []
        elif role != "system":
            raise InvalidInputError(f"{label} item {index}: unknown role {role!r} (use user or assistant)")
    if pending:
        pages.append(_pair(pending))
    return pages


def _pair(messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    user = next((m["content"] for m in messages if m.get("role") in USER_ROLES), "")
    assistant = next((m["content"] for m in messages if m.get("role") in ASSISTANT_ROLES), "")
    page: dict[str, Any] = {"user_input": user, "agent_response": assistant}
    stamp = next((m["timestamp"] for m in messages if m.get("timestamp")), None)
    if stamp is not None:
        page["timestamp"] = stamp
    ids = [str(m.get("message_id") or m.get("id")) for m in messages if m.get("message_id") or m.get("id")]
    if ids:
        page["meta_data"] = {"message_ids": ids}
    return page


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file, one per non-blank line.

    Raises:
        InvalidInputError: a line is not a JSON object (the message names the line).
        OSError: the file cannot be read.
    """
    records: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"{path} line {number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise InvalidInputError(f"{path} line {number}: expected a JSON object")
            records.append(record)
    return records


def records_to_pages(records: Sequence[Mapping[str, Any]], *, label: str) -> list[dict[str, Any]]:
    """Turn records (``user_input``/``agent_response``) or message records (``role``/``content``) into pages.

    Raises:
        InvalidInputError: the records mix the two shapes, or one has a key of neither (say a typo).
    """
    is_messages = bool(records) and "role" in records[0]
    known, shape = (MESSAGE_KEYS, "message") if is_messages else (PAGE_KEYS, "turn")
    for index, record in enumerate(records, 1):
        unknown = sorted(set(record) - known)
        if unknown:
            raise InvalidInputError(
                f"{label} item {index}: unknown key(s) {', '.join(unknown)} for a {shape} "
                f"(expected {', '.join(sorted(known))})"
            )
    pages = messages_to_pages(records, label=label) if is_messages else [dict(r) for r in records]
    for index, page in enumerate(pages, 1):
        _check_page(page, f"{label} {'page' if is_messages else 'item'} {index}")
    return pages


def _check_page(page: Mapping[str, Any], where: str) -> None:
    """The core's checks of a page's shape, made before storing so a bad line stores nothing."""
    texts = [page.get("user_input"), page.get("agent_response")]
    if not all(text is None or isinstance(text, str) for text in texts):
        raise InvalidInputError(f"{where}: user_input and agent_response must be strings")
    if not any(text and text.strip() for text in texts):
        raise InvalidInputError(f"{where}: needs a non-empty user_input or agent_response")
    if not isinstance(page.get("meta_data") or {}, dict):
        raise InvalidInputError(f"{where}: meta_data must be an object")
    if not isinstance(page.get("timestamp") or "", str):
        raise InvalidInputError(f"{where}: timestamp must be a string such as 2025-03-01 19:00:00")


def load_pages(path: str | os.PathLike[str]) -> list[PageBatch]:
    """Read a conversation file, whatever its format, as batches of pages.

    Formats: JSONL of turns ``{"user_input", "agent_response", "timestamp"?, "meta_data"?}``; JSONL of
    messages ``{"role", "content"}``; a JSON list of either; LoCoMo JSON (a list of samples, or one
    sample), one batch per sample with ``user_id`` = its ``sample_id``.

    Raises:
        InvalidInputError: the content has none of these shapes (the message says where).
        OSError: the file cannot be read.
    """
    file = Path(path)
    try:
        data: Any = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        data = None  # not one JSON document: read it line by line
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{file} is not UTF-8 text") from exc
    if isinstance(data, dict) and "conversation" in data:
        data = [data]
    if isinstance(data, list) and data and all(isinstance(d, dict) and "conversation" in d for d in data):
        batches = []
        for index, sample in enumerate(data, 1):
            sample_id = sample.get("sample_id")
            label = str(sample_id) if sample_id else f"{file.name} sample {index}"
            batches.append(PageBatch(str(sample_id) if sample_id else None, label, locomo_pages(sample)))
        return batches
    if isinstance(data, list):
        if not all(isinstance(d, dict) for d in data):
            raise InvalidInputError(f"{file}: expected a list of JSON objects")
        records = data
    elif isinstance(data, dict):
        records = [data]
    else:
        records = read_jsonl(file)
    if not records:
        raise InvalidInputError(f"{file} holds no turns")
    return [PageBatch(None, file.name, records_to_pages(records, label=file.name))]


@dataclass(frozen=True)
class IngestReport:
    """What an ingest stored, per user.

    Attributes:
        stored: pages stored now.
        already_stored: pages found stored already (an earlier ingest of the same turns), left as they are.
    """

    stored: dict[str, int] = field(default_factory=dict)
    already_stored: dict[str, int] = field(default_factory=dict)


def page_ids(user_id: str, pages: Sequence[Mapping[str, Any]], seen: Counter[str] | None = None) -> list[str]:
    """Stable ids for ``pages`` of ``user_id``: a hash of the user, the page's content and its occurrence.

    The same turns give the same ids whatever the file is called or where they sit in it; two identical
    turns of one conversation (a second "ok" / "thanks") stay two pages. ``seen`` carries the occurrence
    counts across several batches of one user.
    """
    seen = Counter() if seen is None else seen
    ids = []
    for page in pages:
        stamp = page.get("timestamp")
        stamp = stamp.isoformat() if isinstance(stamp, datetime) else str(stamp or "").strip()
        content = json.dumps(
            [
                page.get("user_input") or "",
                page.get("agent_response") or "",
                stamp,
                page.get("meta_data") or {},
            ],
            sort_keys=True,
            ensure_ascii=False,
            default=repr,  # a value add_memories will refuse anyway: the id need only be computable
        )
        seen[content] += 1
        key = f"memoryos-ingest\0{user_id}\0{content}\0{seen[content]}"
        ids.append("pg_" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32])
    return ids


def ingest_batches(
    memory: MemoryOS,
    batches: Sequence[PageBatch],
    *,
    user_id: str | None = None,
    chunk_pages: int = 64,
    on_progress: Callable[[int], None] | None = None,
) -> IngestReport:
    """Store batches all or nothing, and idempotently (see the module docstring).

    Args:
        memory: where to store.
        batches: from :func:`load_pages` (or built by hand).
        user_id: store everything for this user; by default a batch's own ``user_id``, else the
            memory's default user.
        chunk_pages: pages written per store call (each chunk is one embedding batch).
        on_progress: called with the number of pages handled after each chunk.

    Raises:
        InvalidInputError: a user id or a page is invalid; checked for every page of every batch before
            anything is stored, so nothing is.
    """
    targets = [check_id(user_id or batch.user_id or memory.user_id, "user_id") for batch in batches]
    seen: dict[str, Counter[str]] = {}
    plan = []
    for batch, target in zip(batches, targets):
        ids = page_ids(target, batch.pages, seen.setdefault(target, Counter()))
        plan.append((target, memory._prepare_pages(batch.pages, ids, target, batch.label)))
    report = IngestReport()
    for target, prepared in plan:

        def count(handled: int, new: int, target: str = target) -> None:
            report.stored[target] = report.stored.get(target, 0) + new
            report.already_stored[target] = report.already_stored.get(target, 0) + handled - new
            if on_progress is not None:
                on_progress(handled)

        report.stored.setdefault(target, 0)
        report.already_stored.setdefault(target, 0)
        memory._store_pages_once(target, prepared, chunk_pages, count)
    return report


def store_batches(
    memory: MemoryOS,
    batches: Sequence[PageBatch],
    *,
    user_id: str | None = None,
    chunk_pages: int = 64,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """:func:`ingest_batches`, returning only the pages stored now, per user."""
    report = ingest_batches(
        memory, batches, user_id=user_id, chunk_pages=chunk_pages, on_progress=on_progress
    )
    return report.stored
