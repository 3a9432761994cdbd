"""``--answer``: answers generated from the recalled context, scored with token F1 and BLEU-1.

The answer is asked of the LLM directly rather than through ``generate_response``, which
would store each question as a new page and change what later questions recall.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memoryos_core._types import ChatMessage, Cost, RetrievedContext
from memoryos_core.bench.metrics import AnswerTable, units_within
from memoryos_core.llm.tokens import default_counter
from memoryos_core.llm.usage import CountingLLM, measure

if TYPE_CHECKING:
    from memoryos_core.bench.locomo_data import Conversation, Question
    from memoryos_core.llm.base import LLM

NOT_MENTIONED = "Not mentioned in the conversation"


def answer_messages(question: str, context: RetrievedContext, speakers: tuple[str, str]) -> list[ChatMessage]:
    """The LoCoMo-style short-answer prompt on the recalled context."""
    who = " and ".join(s for s in speakers if s) or "two people"
    system = (
        f"You answer questions about a long conversation between {who}, using only the recalled "
        "memory below. Answer with a short phrase, using exact words from the memory whenever "
        "possible. For questions about when something happened, answer with a date computed from "
        "the dates of the conversation. If the memory does not contain the answer, reply exactly: "
        f"{NOT_MENTIONED}.\n\n{context.render()}"
    )
    return [ChatMessage("system", system), ChatMessage("user", question)]


class Answerer:
    """Asks the LLM one question at a time on the units within ``answer_k`` turns, and scores it."""

    def __init__(self, llm: LLM, answer_k: int) -> None:
        if answer_k < 1:
            raise ValueError("answer_k must be at least 1")
        self.llm = CountingLLM(llm, default_counter())
        self.answer_k = answer_k
        self.table = AnswerTable()
        self.cost = Cost()

    def answer(
        self, context: RetrievedContext, question: Question, conversation: Conversation
    ) -> dict[str, Any]:
        """Generate and score one answer; returns the fields added to the question's details."""
        units = context.all_units  # the short-term pages compete for the turn budget like the others
        kept = units_within([unit.source_ids for unit in units], self.answer_k)
        cut = RetrievedContext(context.query, context.user_id, units[:kept], context.profile, Cost())
        messages = answer_messages(question.question, cut, (conversation.speaker_a, conversation.speaker_b))
        with measure() as tally:
            prediction = self.llm.complete(messages).strip()
        self.cost = self.cost + tally.cost
        f1_value, bleu_value = self.table.add(question.category, prediction, question.answer)
        return {
            "answer": question.answer,
            "prediction": prediction,
            "f1": round(f1_value, 4),
            "bleu1": round(bleu_value, 4),
        }

    def summary(self) -> dict[str, Any]:
        """F1 and BLEU-1 per category (percent), the context budget and what answering cost."""
        return {
            **self.table.summary(),
            "answer_k": self.answer_k,
            "model": getattr(self.llm, "name", ""),
            "llm_calls": self.cost.llm_calls,
            "llm_prompt_tokens": self.cost.prompt_tokens,
            "llm_completion_tokens": self.cost.completion_tokens,
        }
