"""Checks applied at the public boundary, before anything is stored."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from typing import Any

from memoryos_core._exceptions import InvalidInputError

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$")
SOURCE_KEYS = ("source_id", "source_ids", "message_id", "message_ids", "dia_id", "dia_ids")
"""``meta_data`` keys whose values are kept as provenance on every unit derived from the page."""

_TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
    "%Y/%m/%d %H:%M:%S",
    "%I:%M %p on %d %B, %Y",
    "%I:%M %p on %d %b, %Y",  # LoCoMo: "1:56 pm on 8 May, 2023"
)


def parse_moment(text: str) -> datetime | None:
    """The time in ``text`` (ISO 8601 or one of ``_TIME_FORMATS``), naive if it names no zone; else None."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def check_id(value: Any, what: str = "id") -> str:
    """Return ``value`` if it is a safe id: 1-128 of ``A-Z a-z 0-9 _ . @ : -``, not starting with a symbol."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value) or ".." in value:
        shown = repr(value)[:80]
        raise InvalidInputError(
            f"invalid {what} {shown}: use 1-128 characters from A-Z a-z 0-9 _ . @ : - (starting with a "
            "letter or digit, no '..')"
        )
    return value


validate_id = check_id
"""Public name of :func:`check_id`, for adapters that validate ids before calling the core."""

MAX_COUNT = 1_000_000_000
"""Largest counter (visits, interactions) accepted from outside: far above real use, far below overflow."""
MAX_FUTURE_S = 366 * 86400.0
"""How far past the memory's clock an imported time may lie (clocks differ; centuries do not)."""


def check_count(value: Any, what: str, maximum: int = MAX_COUNT) -> int:
    """Return ``value`` if it is an int (not a bool) from 0 to ``maximum``."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise InvalidInputError(f"{what} must be an integer from 0 to {maximum}, not {repr(value)[:80]}")
    return value


def check_epoch_s(value: Any, what: str, now_s: float) -> float:
    """Return ``value`` as epoch seconds if it is a finite number from 0 (1970) to a year past ``now_s``."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not is_number or not math.isfinite(value) or not 0 <= value <= now_s + MAX_FUTURE_S:
        raise InvalidInputError(
            f"{what} must be seconds since 1970, at most a year after now, not {repr(value)[:80]}"
        )
    return float(value)


def check_ids(values: Any, what: str) -> tuple[str, ...]:
    """A list of ids, each checked with :func:`check_id`."""
    if not isinstance(values, list):
        raise InvalidInputError(f"{what} must be a list of ids")
    return tuple(check_id(value, what) for value in values)


def check_text(value: Any, what: str, max_chars: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a str, not {type(value).__name__}")
    if len(value) > max_chars:
        raise InvalidInputError(f"{what} is {len(value)} characters long; the limit is {max_chars}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(f"{what} is not valid Unicode (lone surrogate at {exc.start})") from exc
    if "\x00" in value:
        raise InvalidInputError(f"{what} contains a NUL character")
    return value


def check_meta(value: Any, max_bytes: int) -> tuple[str, tuple[str, ...]]:
    """``meta_data`` as compact JSON, plus the provenance ids found under SOURCE_KEYS."""
    if value is None:
        return "{}", ()
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise InvalidInputError("meta_data must be a dict with str keys")
    try:
        encoded = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        encoded.encode("utf-8")
    except (TypeError, ValueError, RecursionError, UnicodeEncodeError) as exc:
        raise InvalidInputError(f"meta_data must be JSON-serialisable: {exc}") from exc
    if json.loads(encoded) != value:
        raise InvalidInputError(
            "meta_data must survive a JSON round trip unchanged: str keys at every level, lists not tuples"
        )
    if len(encoded.encode("utf-8")) > max_bytes:
        raise InvalidInputError(f"meta_data is larger than {max_bytes} bytes once serialised")
    sources: list[str] = []
    for key in SOURCE_KEYS:
        item = value.get(key)
        for source in item if isinstance(item, list) else [item]:
            if isinstance(source, (str, int)) and str(source) and str(source) not in sources:
                sources.append(str(source))
    return encoded, tuple(sources)


def parse_timestamp(value: Any, now: datetime) -> tuple[str, float]:
    """(text as given, epoch seconds); text that cannot be parsed keeps ``now`` for recency."""
    if value is None or value == "":
        return now.strftime("%Y-%m-%d %H:%M:%S"), now.timestamp()
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return value.strftime("%Y-%m-%d %H:%M:%S"), moment.timestamp()
    if not isinstance(value, str) or len(value) > 200:
        raise InvalidInputError("timestamp must be a datetime or a str of at most 200 characters")
    text = check_text(value, "timestamp", 200).strip()
    parsed = parse_moment(text)
    if parsed is None:
        return text, now.timestamp()
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return text, parsed.timestamp()
