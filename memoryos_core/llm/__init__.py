"""Chat models behind one small protocol: :class:`LLM` (``complete``), and its backends.

``OpenAILLM`` speaks to any OpenAI-compatible endpoint; ``RuleBasedLLM`` is the offline default;
``ScriptedLLM`` and ``FunctionLLM`` are fakes for tests. The names are imported when first used, so
importing a submodule (``memoryos_core.llm.tokens``) loads none of the backends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memoryos_core._lazy import lazy_exports

if TYPE_CHECKING:
    from memoryos_core.llm.base import LLM, AsyncLLM, acomplete
    from memoryos_core.llm.fake import FunctionLLM, ScriptedLLM
    from memoryos_core.llm.openai import OpenAILLM, TokenUsage
    from memoryos_core.llm.rules import RuleBasedLLM

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "AsyncLLM": "memoryos_core.llm.base",
        "FunctionLLM": "memoryos_core.llm.fake",
        "LLM": "memoryos_core.llm.base",
        "OpenAILLM": "memoryos_core.llm.openai",
        "RuleBasedLLM": "memoryos_core.llm.rules",
        "ScriptedLLM": "memoryos_core.llm.fake",
        "TokenUsage": "memoryos_core.llm.openai",
        "acomplete": "memoryos_core.llm.base",
    },
)


__all__ = [
    "AsyncLLM",
    "FunctionLLM",
    "LLM",
    "OpenAILLM",
    "RuleBasedLLM",
    "ScriptedLLM",
    "TokenUsage",
    "acomplete",
]
