"""Parsing of model replies (pure, no I/O): reasoning blocks, JSON in prose or fences, repair of near-JSON.

``complete_json`` adds the one corrective re-ask around an LLM call.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Sequence
from typing import Any

from memoryos_core._exceptions import LLMOutputError
from memoryos_core._types import ChatMessage
from memoryos_core.llm.base import LLM

_BLOCK_RE = re.compile(r"<(think|thinking)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_LEADING_BLOCK_RE = re.compile(r"\A\s*<(think|thinking)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_OPEN_TAG_RE = re.compile(r"<(?:think|thinking)\b[^>]*>", re.IGNORECASE)
_CLOSE_TAG_RE = re.compile(r"</(?:think|thinking)\s*>", re.IGNORECASE)
_LEADING_OPEN_RE = re.compile(r"\A\s*<(?:think|thinking)\b[^>]*>", re.IGNORECASE)
_FENCE_LINE_RE = re.compile(r"^[ \t]*```[\w+-]*[ \t]*$", re.MULTILINE)
_DANGLING_KEY_RE = re.compile(r'(?<=[{,])\s*"(?:[^"\\]|\\.)*"\s*:?\s*\Z', re.DOTALL)
_PARTIAL_NUMBER_RE = re.compile(r"(?<=\d)[eE.+-]+\Z|(?<=[\s:,\[])-\Z")
_DECODER = json.JSONDecoder(strict=False)  # tolerate raw newlines inside strings
_LITERALS = {
    **{word: word for word in ("true", "false", "null", "NaN", "Infinity")},
    **{"True": "true", "False": "false", "None": "null"},
}
_CLOSERS = {"{": "}", "[": "]"}
_MAX_SCAN_ATTEMPTS = 200
_MAX_REPAIR_STARTS = 20
_MAX_REPAIR_DEPTH = 100
_MAX_ERROR_CHARS = 300

JSONValue = dict[str, Any] | list[Any]


def strip_reasoning(text: str) -> str:
    """Remove `<think>`/`<thinking>` blocks, an unclosed leading one and a leading orphan `...</think>`."""
    has_opener = _OPEN_TAG_RE.search(text) is not None
    return _strip_unpaired(_BLOCK_RE.sub("", text), has_opener).strip()


def _strip_leading_reasoning(text: str) -> str:
    # Only blocks at the start: a "<think>" inside a JSON string value must survive.
    has_opener = _OPEN_TAG_RE.search(text) is not None
    previous = None
    while previous != text:
        previous, text = text, _LEADING_BLOCK_RE.sub("", text, count=1)
    return _strip_unpaired(text, has_opener)


def _strip_unpaired(text: str, has_opener: bool) -> str:
    if not has_opener:  # "reasoning...</think>answer": the opening tag was part of the prompt template
        close = _CLOSE_TAG_RE.search(text)
        if close is not None:
            text = text[close.end() :]
    if _LEADING_OPEN_RE.match(text) and not _CLOSE_TAG_RE.search(text):
        return ""  # the model was cut off while still reasoning
    return text


def extract_json(text: str) -> JSONValue:
    """Find the JSON object or array in a model reply.

    Handles code fences, prose before and after, reasoning blocks, single quotes, trailing commas, Python
    ``True``/``False``/``None``, and a truncated reply: open brackets are closed, and the value the reply
    was cut in (an unterminated string, a number at the very end) is dropped with its key, because a
    cut-off "counselin" must never be taken for what the model meant.

    Args:
        text: The raw reply.

    Returns:
        The parsed object or array (the longest one when the reply holds several).

    Raises:
        LLMOutputError: Nothing usable was found; ``.raw`` holds ``text``.
    """
    return _extract(text)[0]


def was_truncated(text: str) -> bool:
    """Whether the JSON that :func:`extract_json` finds in ``text`` had to be closed by repair.

    True when the reply ended inside the value (cut off, e.g. by the token limit): the value returned
    then holds only its complete elements, and the cut-off one (a string, a number) is dropped.
    """
    try:
        return _extract(text)[1]
    except LLMOutputError:
        return False


def _extract(text: str) -> tuple[JSONValue, bool]:
    views = list(dict.fromkeys([_strip_leading_reasoning(text), strip_reasoning(text), text]))
    errors: list[str] = []
    for view in views:
        found = _best_in_view(view, errors)
        if found is not None:
            return found
    detail = f" (first error: {errors[0]})" if errors else ""
    raise LLMOutputError(f"no JSON object or array found in the reply{detail}", raw=text)


def parse_json_reply(text: str, *, required_keys: Sequence[str] = ()) -> dict[str, Any]:
    """Extract a JSON object from ``text`` and check that it has ``required_keys``.

    Raises:
        LLMOutputError: No JSON, a JSON array instead of an object, or missing keys.
    """
    value = extract_json(text)
    if not isinstance(value, dict):
        raise LLMOutputError("expected a JSON object, got a JSON array", raw=text)
    missing = [key for key in required_keys if key not in value]
    if missing:
        raise LLMOutputError(f"the JSON object lacks the keys: {', '.join(missing)}", raw=text)
    return value


def complete_json(
    llm: LLM, messages: Sequence[ChatMessage], *, required_keys: Sequence[str] = (), retries: int = 1
) -> tuple[dict[str, Any], list[str]]:
    """Ask ``llm`` for a JSON object; on an unusable reply re-ask quoting the error, up to ``retries`` times.

    Returns:
        The object, and the raw reply of every call made (to count their tokens).

    Raises:
        LLMOutputError: Still no usable object after the re-asks.
        LLMError: The LLM itself failed.
    """
    raws: list[str] = []
    prompt = list(messages)
    for _attempt in range(max(0, retries) + 1):
        try:
            raw = llm.complete(prompt, json_mode=True)
        except LLMOutputError as exc:  # e.g. an empty reply: worth the same re-ask
            raws.append(exc.raw)
            error = exc
        else:
            raws.append(raw)
            try:
                return parse_json_reply(raw, required_keys=required_keys), raws
            except LLMOutputError as exc:
                error = exc
        prompt = _corrective_prompt(messages, error, required_keys)
    raise _give_up(llm, raws, error)


def _corrective_prompt(
    messages: Sequence[ChatMessage], error: LLMOutputError, required_keys: Sequence[str]
) -> list[ChatMessage]:
    keys = f" with the keys {', '.join(required_keys)}" if required_keys else ""
    note = (
        f"Your previous reply could not be used: {str(error)[:_MAX_ERROR_CHARS]}. "
        f"Reply again with only one valid JSON object{keys}: no prose, no code fences."
    )
    return [*messages, ChatMessage("user", note)]


def _give_up(llm: LLM, raws: list[str], error: LLMOutputError) -> LLMOutputError:
    name = getattr(llm, "name", "")
    message = f"{name}: no usable JSON after {len(raws)} calls: {error}"
    return LLMOutputError(message, backend=name, raw=raws[-1] if raws else "")


def _best_in_view(text: str, errors: list[str]) -> tuple[JSONValue, bool] | None:
    """The value with the longest span, and whether it was truncated: strict JSON first; a repaired
    one only when it covers more."""
    try:
        value = _DECODER.decode(text.strip())
    except (ValueError, RecursionError):
        pass
    else:
        if isinstance(value, (dict, list)):
            return value, False
    starts = [match.start() for match in re.finditer(r"[{\[]", text)]
    best: JSONValue | None = None
    best_start = best_length = skip_until = 0
    for start in starts[:_MAX_SCAN_ATTEMPTS]:
        if start < skip_until:
            continue  # inside a value already parsed: any parse from here is shorter
        try:
            value, end = _DECODER.raw_decode(text, start)
        except (ValueError, RecursionError) as exc:
            errors.append(str(exc))
            continue
        if isinstance(value, (dict, list)) and end - start > best_length:
            best, best_start, best_length, skip_until = value, start, end - start, end
    if best is not None and best_start == starts[0]:
        return best, False  # a strict parse from the first bracket: a repair could not cover more
    # A truncated or sloppy outer value may enclose the strict parses: try repairing from earlier brackets.
    unfenced = _FENCE_LINE_RE.sub("", text)
    repair_starts = [match.start() for match in re.finditer(r"[{\[]", unfenced)][:_MAX_REPAIR_STARTS]
    for start in repair_starts:
        repaired = _repair(unfenced[start:])
        if repaired is not None and repaired[1] > best_length:
            return repaired[0], repaired[2]
    return None if best is None else (best, False)


def _repair(fragment: str) -> tuple[JSONValue, int, bool] | None:
    """Near-JSON from a bracket rewritten as JSON, its span, and whether the text ended inside it.

    A value the text ends inside is closed; the scalar it was cut in is dropped (see :func:`extract_json`).
    """
    out: list[str] = []
    stack: list[str] = []
    checkpoints: deque[tuple[int, tuple[str, ...]]] = deque(maxlen=3)
    quote: str | None = None
    cut_number = False  # the text ends in the middle of (or right after) a number: "12" may be "125"
    index, length = 0, len(fragment)
    while index < length:
        char = fragment[index]
        if quote is not None:
            if char == "\\":
                escaped = fragment[index + 1 : index + 2]
                if not escaped:
                    break  # truncated in the middle of an escape
                out.append("'" if escaped == "'" else char + escaped)  # JSON has no \\' escape
                index += 2
                continue
            if char == quote:
                out.append('"')
                quote = None
            else:
                out.append('\\"' if char == '"' else char)
            index += 1
            continue
        if char in "\"'":
            quote = char
            out.append('"')
        elif char in "{[":
            if len(stack) >= _MAX_REPAIR_DEPTH:
                return None  # no model reply nests this deep; copying the stack would get quadratic
            stack.append(char)
            out.append(char)
            checkpoints.append((len(out), tuple(stack)))
        elif char in "}]":
            while out and (out[-1].isspace() or out[-1] == ","):
                out.pop()  # trailing comma
            if not stack or _CLOSERS[stack.pop()] != char:
                return None
            out.append(char)
            if not stack:  # the top-level value is complete; what follows is prose
                value = _loads("".join(out))
                return None if value is None else (value, index + 1, False)
        elif char == ",":
            checkpoints.append((len(out), tuple(stack)))
            out.append(char)
        elif char.isdigit() or char == "-":
            end = index
            while end < length and (fragment[end].isdigit() or fragment[end] in "eE+-."):
                end += 1
            out.append(fragment[index:end])
            cut_number = end == length
            index = end
            continue
        elif char.isalpha() or char == "_":
            end = index
            while end < length and (fragment[end].isalnum() or fragment[end] == "_"):
                end += 1
            word = fragment[index:end]
            if end == length:  # a literal cut off by truncation: "tru" -> true
                word = next((literal for literal in _LITERALS if literal.startswith(word)), word)
            if word in _LITERALS:
                out.append(_LITERALS[word])
            elif stack[-1] == "{" and fragment[end:].lstrip().startswith(":"):
                out.append(json.dumps(word))  # an unquoted key
            else:
                return None  # prose inside the structure: not something to guess at
            index = end
            continue
        elif char == "#" or fragment.startswith("//", index):
            newline = fragment.find("\n", index)
            index = length if newline < 0 else newline
            continue
        elif char.isspace() or char == ":":
            out.append(char)
        else:
            return None  # prose or markup: not something to guess at
        index += 1
    # The text ended inside the value: the reply was truncated. A string or number it ends in is a
    # fragment: go back to the last comma or bracket, which drops it (and its key) whole.
    whole = [] if quote is not None or cut_number else [(len(out), tuple(stack))]
    for size, open_brackets in [*whole, *reversed(checkpoints)]:
        value = _loads(_close("".join(out[:size]), open_brackets))
        if value:  # an empty container rebuilt from a cut-off reply is not an answer
            return value, length, True
    return None


def _close(text: str, open_brackets: Sequence[str]) -> str:
    text = _PARTIAL_NUMBER_RE.sub("", text.rstrip())
    if open_brackets and open_brackets[-1] == "{":
        text = _DANGLING_KEY_RE.sub("", text)
    text = text.rstrip().rstrip(",").rstrip()
    if text.endswith(":"):
        text = _DANGLING_KEY_RE.sub("", text[:-1]).rstrip().rstrip(",")
    return text + "".join(_CLOSERS[bracket] for bracket in reversed(open_brackets))


def _loads(text: str) -> JSONValue | None:
    try:
        value = _DECODER.decode(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, (dict, list)) else None
