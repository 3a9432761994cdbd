"""Reading LoCoMo-format files: turns, per-session pages and normalised evidence.

The format and its quirks are described in ``docs/benchmark.md``; this module accepts any file in
that format. Pages come from :mod:`memoryos_core.app.ingest`, so the benchmark ingests as the CLI does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_SESSION_KEY = re.compile(r"^session_(\d+)$")
_EVIDENCE_SPLIT = re.compile(r"[;,\s]+")
# "D30:05" means D30:5 and "D:11:26" means D11:26: an optional colon after the D, leading zeros.
_DIA_ID = re.compile(r"^D:?0*(\d+):0*(\d+)$", re.IGNORECASE)
_USER_ID_BAD = re.compile(r"[^A-Za-z0-9_.@:-]")

CATEGORY_NAMES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
"""LoCoMo category ids, named by the paper's counts and code."""


@dataclass(frozen=True)
class Turn:
    """One utterance of a conversation, with the date of its session."""

    dia_id: str
    speaker: str
    text: str
    session: int
    date: str

    @property
    def document(self) -> str:
        """The turn as the baselines index it: session date prefixed, then speaker and text."""
        return f"[{self.date}] {self.speaker}: {self.text}" if self.date else f"{self.speaker}: {self.text}"


@dataclass(frozen=True)
class Question:
    """One scored question: evidence normalised to the conversation's turn ids."""

    sample_id: str
    index: int
    question: str
    answer: str
    category: int
    evidence: tuple[str, ...]


@dataclass(frozen=True)
class Conversation:
    """One LoCoMo sample, ready for ingestion and scoring.

    ``sessions`` holds ``(date, turns)`` per session in session order; ``skipped`` counts the
    questions without usable evidence; ``dropped_ids`` are evidence ids that name no turn.
    """

    sample_id: str
    user_id: str
    speaker_a: str
    speaker_b: str
    sessions: tuple[tuple[str, tuple[Turn, ...]], ...]
    questions: tuple[Question, ...]
    skipped: int
    dropped_ids: tuple[str, ...]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def turns(self) -> list[Turn]:
        return [turn for _, turns in self.sessions for turn in turns]


def canonical_dia_id(raw: str) -> str | None:
    """``"D30:05"`` -> ``"D30:5"``, ``"D:11:26"`` -> ``"D11:26"``; None when it is not a turn id."""
    match = _DIA_ID.match(raw.strip())
    return f"D{int(match.group(1))}:{int(match.group(2))}" if match else None


def normalize_evidence(
    evidence: Iterable[Any] | str | None, known: set[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split, canonicalise and check evidence ids against the turns that exist.

    Args:
        evidence: the question's ``evidence`` (a list of strings, some holding several ids
            separated by ``;``, ``,`` or spaces).
        known: canonical ids of the conversation's turns.

    Returns:
        The kept ids (in order, without repeats) and the tokens that resolve to no turn.
    """
    items = [evidence] if isinstance(evidence, str) else list(evidence or [])
    kept: list[str] = []
    dropped: list[str] = []
    for item in items:
        for token in _EVIDENCE_SPLIT.split(str(item)):
            if not token:
                continue
            dia_id = canonical_dia_id(token)
            if dia_id is None or dia_id not in known:
                dropped.append(token)
            elif dia_id not in kept:
                kept.append(dia_id)
    return tuple(kept), tuple(dropped)


def _turn_text(turn: Mapping[str, Any]) -> str:
    # The same text as memoryos_core.app.ingest gives the pages, so baselines index the same turns.
    text = str(turn.get("text") or "").strip()
    caption = str(turn.get("blip_caption") or "").strip()
    return f"{text} (shares a photo: {caption})".strip() if caption else text


def session_turns(conversation: Mapping[str, Any]) -> list[tuple[str, tuple[Turn, ...]]]:
    """``(date, turns)`` of every session in numeric order; dates without a session are ignored.

    Turns without any text are left out, as :func:`memoryos_core.app.ingest.locomo_pages` stores none.
    """
    numbers = sorted(
        int(m.group(1))
        for key in conversation
        if (m := _SESSION_KEY.match(key)) and isinstance(conversation[key], list)
    )
    sessions = []
    for number in numbers:
        date = str(conversation.get(f"session_{number}_date_time") or "")
        turns = tuple(
            Turn(
                dia_id=canonical_dia_id(str(raw.get("dia_id", ""))) or str(raw.get("dia_id", "")),
                speaker=str(raw.get("speaker") or ""),
                text=_turn_text(raw),
                session=number,
                date=date,
            )
            for raw in conversation[f"session_{number}"]
            if isinstance(raw, Mapping) and _turn_text(raw)
        )
        sessions.append((date, turns))
    return sessions


def speaker_a_of(conversation: Mapping[str, Any], sessions: Sequence[tuple[str, Sequence[Turn]]]) -> str:
    """``speaker_a`` of the conversation, or the first speaker when the file does not name one."""
    named = str(conversation.get("speaker_a") or "")
    return named or next((turns[0].speaker for _, turns in sessions if turns), "")


def session_pages(conversation: Conversation) -> list[list[dict[str, Any]]]:
    """The pages of each session (empty sessions left out), ready for one ``add_memories`` each.

    The mapping is :func:`memoryos_core.app.ingest.locomo_pages` (shared with ``memoryos ingest``),
    applied one session at a time with the conversation's own speaker A.
    """
    from memoryos_core.app.ingest import locomo_pages

    raw = conversation.raw
    numbers = sorted(
        int(m.group(1)) for key in raw if (m := _SESSION_KEY.match(key)) and isinstance(raw[key], list)
    )
    batches = []
    for number in numbers:
        key = f"session_{number}"
        one_session = {
            "speaker_a": conversation.speaker_a,
            "speaker_b": conversation.speaker_b,
            key: raw[key],
            f"{key}_date_time": raw.get(f"{key}_date_time") or "",
        }
        pages = locomo_pages({"sample_id": conversation.sample_id, "conversation": one_session})
        if pages:
            batches.append(pages)
    return batches


def safe_user_id(sample_id: str) -> str:
    """``sample_id`` made acceptable as a MemoryOS user id (LoCoMo's ``conv-26`` already is)."""
    cleaned = _USER_ID_BAD.sub("_", sample_id).strip("_.@:-") or "conversation"
    return cleaned[:128].replace("..", "_")


def _answer(item: Mapping[str, Any]) -> str:
    # Category 5 (adversarial) items carry ``adversarial_answer`` instead of ``answer``.
    value = item.get("answer")
    if value is None:
        value = item.get("adversarial_answer", "")
    return str(value)


def parse_sample(sample: Mapping[str, Any], position: int) -> Conversation:
    """One sample of the file as a :class:`Conversation` (questions with no evidence are skipped)."""
    conversation = sample.get("conversation") or {}
    sample_id = str(sample.get("sample_id") or f"sample-{position}")
    sessions = session_turns(conversation)
    known = {turn.dia_id for _, turns in sessions for turn in turns}
    questions: list[Question] = []
    dropped: list[str] = []
    skipped = 0
    for index, item in enumerate(sample.get("qa") or []):
        evidence, bad = normalize_evidence(item.get("evidence"), known)
        dropped.extend(bad)
        if not evidence:
            skipped += 1
            continue
        questions.append(
            Question(
                sample_id=sample_id,
                index=index,
                question=str(item.get("question") or ""),
                answer=_answer(item),
                category=int(item.get("category") or 0),
                evidence=evidence,
            )
        )
    return Conversation(
        sample_id=sample_id,
        user_id=safe_user_id(sample_id),
        speaker_a=speaker_a_of(conversation, sessions),
        speaker_b=str(conversation.get("speaker_b") or "").strip(),
        sessions=tuple(sessions),
        questions=tuple(questions),
        skipped=skipped,
        dropped_ids=tuple(dropped),
        raw=conversation,
    )


def load_locomo(path: str | Path, limit: int | None = None) -> list[Conversation]:
    """Read a LoCoMo-format JSON file (a list of samples); ``limit`` keeps the first N samples.

    Raises:
        ValueError: the file is not a list of samples.
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, list) or not all(isinstance(s, Mapping) for s in data):
        raise ValueError(f"{path}: expected a JSON list of LoCoMo samples")
    samples = data[:limit] if limit is not None else data
    return [parse_sample(sample, i) for i, sample in enumerate(samples)]
