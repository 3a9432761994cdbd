"""RuleBasedLLM: answers MemoryOS's own prompts with fixed rules; for tests and cost measurement."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from memoryos_core._types import ChatMessage
from memoryos_core.policy.text import content_words, jaccard, keywords

_PAGE = re.compile(r"^\[(\d+)\] (.*)$", re.MULTILINE)  # pages are numbered, one line each
_USER_FACT = re.compile(r"\bI (?:am|'m|love|like|enjoy|work|live|have|prefer|hate)\b[^.!?\n]*", re.IGNORECASE)
_ASSISTANT_FACT = re.compile(r"\bI (?:am|'m|will|can)\b[^.!?\n]*", re.IGNORECASE)


class RuleBasedLLM:
    """A deterministic stand-in for a chat model that knows MemoryOS's prompt formats.

    Consolidation: runs of consecutive pages that share content words (at most
    ``pages_per_topic`` each), the first sentence of each run as summary. Promotion:
    "I love/like/am ..." sentences of the user become traits and user knowledge, and
    "I am/will/can ..." sentences of the assistant become assistant knowledge. Anything
    else gets a short fixed answer. It is counted like a real LLM.
    """

    def __init__(self, pages_per_topic: int = 4, name: str = "rules") -> None:
        self.pages_per_topic = pages_per_topic
        self.name = name
        self.calls = 0

    def complete(self, messages: Sequence[ChatMessage], *, json_mode: bool = False) -> str:
        self.calls += 1
        prompt = messages[-1].content
        pages = {int(n): text.strip() for n, text in _PAGE.findall(prompt.split("ages:\n", 1)[-1])}
        if '"topics"' in prompt:
            return json.dumps(self._topics(pages))
        if '"user_knowledge"' in prompt:
            return json.dumps(self._promotion(pages))
        return "I remember: " + (messages[-1].content[:80] if messages else "")

    def _topics(self, pages: dict[int, str]) -> dict[str, object]:
        groups: list[list[int]] = []
        for number in sorted(pages):
            words = set(content_words(pages[number]))
            current = set(content_words(" ".join(pages[n] for n in groups[-1]))) if groups else set()
            if groups and len(groups[-1]) < self.pages_per_topic and jaccard(words, current) >= 0.2:
                groups[-1].append(number)
            else:
                groups.append([number])
        topics = []
        for group in groups:
            text = pages[group[0]].removeprefix("User: ")
            first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
            topics.append(
                {
                    "pages": group,
                    "summary": first[:200],
                    "keywords": keywords([pages[n] for n in group], 6),
                    "overview": first[:120],
                }
            )
        return {"continues_previous": False, "topics": topics}

    def _promotion(self, pages: dict[int, str]) -> dict[str, object]:
        traits, user, assistant = [], [], []
        for number, text in sorted(pages.items()):
            user_part, _, assistant_part = text.partition("Assistant:")
            for match in _USER_FACT.findall(user_part):
                fact = match.strip()
                user.append({"text": f"User said: {fact}", "pages": [number]})
                verb = fact.split()[1].lower().strip("'") if len(fact.split()) > 1 else "says"
                traits.append({"trait": f"{verb}", "value": fact, "pages": [number]})
            for match in _ASSISTANT_FACT.findall(assistant_part):
                assistant.append({"text": f"Assistant said: {match.strip()}", "pages": [number]})
        return {"profile": traits, "user_knowledge": user, "assistant_knowledge": assistant}
