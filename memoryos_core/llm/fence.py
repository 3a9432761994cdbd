"""Stored text made safe to show inside the ``<recalled_memory>`` fence (pure, no I/O).

Recalled text is data, and whoever wrote it (a user, a web page quoted in a chat, an imported file)
may try to close the fence or forge a section of it. Tags and section headers are looked for on a
*skeleton* of the text (NFKC, invisible format characters and combining marks dropped, look-alike
brackets, slashes and letters folded to ASCII, lower case), so fullwidth, zero-width-joined, accented
or homoglyph spellings are found; what is found is replaced in the original text by a visible marker.
"""

from __future__ import annotations

import functools
import re
import unicodedata

TAG_MARK = "[recalled_memory tag removed]"
HEADER_MARK = "[section header removed]"

SECTION_HEADERS = (
    "User profile",
    "Known about the user",
    "Known about the assistant",
    "Relevant past conversation",
    "Recent conversation",
)
"""The section headers :meth:`memoryos_core.RetrievedContext.render` writes."""

# Characters NFKC leaves alone that a model reads as the ASCII one (Unicode confusables).
_LOOKALIKES = str.maketrans(
    {
        **dict.fromkeys("‹〈⟨❮˂ᐸ⧼〈≺⋖", "<"),
        **dict.fromkeys("›〉⟩❯˃ᐳ⧽〉≻⋗", ">"),
        **dict.fromkeys("∕⁄⧸╱⟋\\", "/"),
        **dict.fromkeys("аɑαᴀ", "a"),
        **dict.fromkeys("еєεᴇ", "e"),
        **dict.fromkeys("сϲᴄ", "c"),
        **dict.fromkeys("оοσᴏ", "o"),
        **dict.fromkeys("ʀг", "r"),
        **dict.fromkeys("ԁᴅ", "d"),
        **dict.fromkeys("ӏІǀʟℓ", "l"),
        **dict.fromkeys("мᴍ", "m"),
        **dict.fromkeys("уүʏ", "y"),
        **dict.fromkeys("ѕ", "s"),
        **dict.fromkeys("ԛ", "q"),
        **dict.fromkeys("һ", "h"),
        **dict.fromkeys("ս", "u"),
        **dict.fromkeys("ѡ", "w"),
        **dict.fromkeys("ν", "v"),
        **dict.fromkeys("ո", "n"),
        **dict.fromkeys("ı", "i"),
        **dict.fromkeys("т", "t"),
        **dict.fromkeys("ρр", "p"),
        **dict.fromkeys("κ", "k"),
        **dict.fromkeys("ʙ", "b"),
        **dict.fromkeys("ɡ", "g"),
    }
)
_DROPPED = frozenset({"Cf", "Mn", "Me", "Cs", "Co", "Cn"})
_GAP = r"[\W_]*"  # anything but letters and digits may sit between the letters of a forged tag
_ASCII_LOOKALIKES = {"l": "l1i|", "i": "il1|", "o": "o0", "e": "e3", "a": "a4@", "s": "s5$", "t": "t7"}


def _spaced(word: str) -> str:
    letters = (f"[{re.escape(_ASCII_LOOKALIKES.get(char, char))}]" for char in word if not char.isspace())
    return _GAP.join(letters)


_OPEN = r"(?:<|&lt;?|&#0*60;?|&#x0*3c;?)"  # a bracket, or an HTML entity a model would read as one
_TAG = re.compile(
    rf"{_OPEN}{_GAP}{_spaced('recalled')}{_GAP}{_spaced('memory')}(?:[^<>\n]{{0,200}}?(?:>|&gt;?))?"
)
_HEADER = re.compile(
    rf"^[^\w\n]*(?:{'|'.join(_spaced(header.lower()) for header in SECTION_HEADERS)}){_GAP}:",
    re.MULTILINE,
)


_RUNS = re.compile(r"[\x00-\x7f]+|[^\x00-\x7f]")


@functools.lru_cache(maxsize=4096)
def _fold(char: str) -> str:
    """One non-ASCII character as it is matched ("" for an invisible one)."""
    if unicodedata.category(char) in _DROPPED:
        return ""  # zero-width, joiners, bidi controls, combining marks: invisible to a reader
    folded = unicodedata.normalize("NFKC", char).translate(_LOOKALIKES).casefold().translate(_LOOKALIKES)
    return "".join(part for part in folded if unicodedata.category(part) not in _DROPPED)


def _skeleton(text: str) -> tuple[str, list[int] | None]:
    """The text as it is matched, and for each of its characters the index of the original one
    (None when they are the same: ASCII text, the common case, is only lower-cased)."""
    if text.isascii():
        return text.lower().translate(_LOOKALIKES), None
    chars: list[str] = []
    origin: list[int] = []
    for match in _RUNS.finditer(text):
        start, end = match.span()
        if end - start > 1 or text[start].isascii():  # a run of ASCII: lower-cased as it is
            chars.append(match.group().lower().translate(_LOOKALIKES))
            origin.extend(range(start, end))
        else:
            folded = _fold(text[start])
            chars.append(folded)
            origin.extend([start] * len(folded))
    return "".join(chars), origin


_NOT_MATCHED = re.compile(r"[^a-z0-9@$|]+")
_WORDS = re.compile("|".join(_spaced(word) for word in ("memory", "profile", "known", "relevant", "recent")))


def _may_hold_markup(text: str) -> bool:
    """A quick, over-inclusive test (C speed): could the text hold a tag or a header at all?"""
    letters = unicodedata.normalize("NFKD", text).casefold().translate(_LOOKALIKES)
    return _WORDS.search(_NOT_MATCHED.sub("", letters)) is not None


def escape_recalled(text: str) -> str:
    """``text`` with every fence tag and section header it holds replaced by a visible marker.

    Line breaks of any kind (``\\r``, U+2028, ...) become ``\\n``, so the caller can indent every line.
    """
    text = "\n".join(text.splitlines())
    if not _may_hold_markup(text):
        return text
    skeleton, mapping = _skeleton(text)
    spans = [(m.start(), m.end(), TAG_MARK) for m in _TAG.finditer(skeleton)]
    spans += [(m.start(), m.end(), HEADER_MARK) for m in _HEADER.finditer(skeleton)]
    if not spans:
        return text
    origin = mapping if mapping is not None else range(len(text))
    out: list[str] = []
    cursor = 0
    for start, end, mark in sorted(spans):
        first, last = origin[start], origin[end - 1] + 1
        if first < cursor:  # overlaps a span already replaced
            first = cursor
            if first >= last:
                continue
        out.append(text[cursor:first])
        out.append(mark)
        cursor = last
    out.append(text[cursor:])
    return "".join(out)


def indented(text: str, first: str = "- ", rest: str = "  ") -> str:
    """Escaped ``text`` as one list item: later lines indented, so none can pass for a section."""
    lines = escape_recalled(text).split("\n")
    return "\n".join([first + lines[0], *(rest + line for line in lines[1:])])
