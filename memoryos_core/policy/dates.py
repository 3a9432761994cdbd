"""The period a question names ("in July 2022", "on 1 May, 2022", "in 2021"), as epoch seconds."""

from __future__ import annotations

import calendar
import re
from datetime import datetime, timezone

_MONTHS = {name.lower(): number for number, name in enumerate(calendar.month_name) if name}
_MONTHS |= {name.lower(): number for number, name in enumerate(calendar.month_abbr) if name}
_MONTHS["sept"] = 9
_MONTH_WORDS = "|".join(sorted(_MONTHS, key=len, reverse=True))
_DATE = re.compile(
    rf"(?:\b(\d{{1,2}})(?:st|nd|rd|th)?\s+)?\b({_MONTH_WORDS})\b\.?(?:\s+(\d{{1,2}})(?:st|nd|rd|th)?\b)?,?\s*(\d{{4}})?",
    re.IGNORECASE,
)
_YEAR = re.compile(r"\b(19\d\d|20\d\d)\b")


def _epoch(year: int, month: int, day: int = 1) -> float:
    return datetime(year, month, day, tzinfo=timezone.utc).timestamp()


def query_window(text: str) -> tuple[float, float] | None:
    """[start, end) of the first date a question names; None when it names none.

    A month or a day needs a year in the question ("May" alone is too often a verb).
    """
    year_match = _YEAR.search(text)
    for match in _DATE.finditer(text):
        day_text, month_text, day_after, year_text = match.groups()
        year_text = year_text or (year_match.group(1) if year_match else None)
        if not year_text:
            continue
        year, month = int(year_text), _MONTHS[month_text.lower()]
        day = int(day_text or day_after or 0)
        try:
            if day:
                start = _epoch(year, month, day)
                return start, start + 86_400.0
            return _epoch(year, month), _epoch(year + (month == 12), month % 12 + 1)
        except ValueError:  # 31 February and the like
            continue
    if year_match:
        year = int(year_match.group(1))
        return _epoch(year, 1), _epoch(year + 1, 1)
    return None


_WHEN = re.compile(r"\bwhen\b|^\s*(?:what|which)\s+(?:year|month|date|day)\b|\bhow long ago\b", re.IGNORECASE)
_TIMED = re.compile(
    r"\b(?:yesterday|today|tonight|tomorrow|ago|recently|just|weekend|the other day"
    r"|(?:last|this|next)\s+(?:night|week|weekend|month|year|summer|winter|spring|fall|morning)"
    r"|(?:mon|tues|wednes|thurs|fri|satur|sun)day|january|february|march|april|june|july|august"
    r"|september|october|november|december|\d{4})\b",
    re.IGNORECASE,
)
_HEAD = re.compile(r"^\[[^\]]*\]\s*")


def asks_when(text: str) -> bool:
    """Whether a question asks when something happened ("When did...", "What year...")."""
    return _WHEN.search(text) is not None


def places_in_time(page_text: str) -> bool:
    """Whether a page's own words place something in time ("yesterday", "last week", "in July").

    The page's leading ``[timestamp]`` is left out: every page has one.
    """
    return _TIMED.search(_HEAD.sub("", page_text, count=1)) is not None
