"""How a chat transcript is cut into pages: one page per turn, the user's message(s) and the answer.

Both adapters (LangChain, LlamaIndex) convert their framework's messages to ``TurnMessage`` and fold
them here, so a conversation becomes the same pages whichever framework carried it. Pure: no I/O.

Rules: system messages are skipped; tool plumbing (tool calls, tool results, assistant messages
without answer text) joins the turn in progress; an assistant message with text closes the turn as
its answer. Consecutive user messages form one turn (``join_users=True``) or each unanswered one is
a turn of its own (``join_users=False``). User messages left at the end are the open turn.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

TurnRole = Literal["user", "assistant", "system", "tool"]
"""``tool`` stands for any plumbing: tool calls and results, and roles that are not conversation."""

S = TypeVar("S")


@dataclass(frozen=True)
class TurnMessage(Generic[S]):
    """One chat message as the folding sees it.

    Args:
        role: see ``TurnRole``; an ``assistant`` message with blank ``text`` is plumbing.
        text: the message text (for an assistant: its final answer).
        source: the framework's own message, handed back unchanged in the open turn.
        id: the message id, kept as provenance (``meta_data["message_ids"]``).
        tool_calls: names of the tools the message calls.
    """

    role: TurnRole
    text: str
    source: S
    id: str | None = None
    tool_calls: tuple[str, ...] = ()


@dataclass(frozen=True)
class Turn(Generic[S]):
    """A finished (or closed) turn: what becomes one page."""

    users: tuple[TurnMessage[S], ...]
    """The user messages, in order (with ``join_users=False``: at most one)."""
    answer: TurnMessage[S] | None
    """The assistant message answering them; None for a turn of user messages only."""
    messages: tuple[TurnMessage[S], ...]
    """Every message folded into the turn, plumbing included, in order."""

    @property
    def user_input(self) -> str:
        """The user messages' texts, one per line (empty ones left out)."""
        return "\n".join(m.text for m in self.users if m.text)

    @property
    def agent_response(self) -> str:
        return self.answer.text if self.answer is not None else ""

    @property
    def message_ids(self) -> tuple[str, ...]:
        """Ids of every message of the turn, plumbing included, in order."""
        return tuple(m.id for m in self.messages if m.id)

    @property
    def tool_calls(self) -> tuple[str, ...]:
        """Names of the tools called during the turn, each once, in order."""
        return tuple(dict.fromkeys(name for m in self.messages for name in m.tool_calls if name))


def fold_messages(
    messages: Iterable[TurnMessage[S]],
    open_turn: Sequence[TurnMessage[S]] = (),
    *,
    join_users: bool = True,
) -> tuple[list[Turn[S]], list[TurnMessage[S]]]:
    """Fold ``messages`` into the turn in progress ``open_turn``.

    Returns the finished turns, in order, and the new open turn (messages not answered yet).
    """
    buffer, turns = list(open_turn), []
    for message in messages:
        if message.role == "system":
            continue  # instructions belong to the agent, not to the user's memory
        if message.role == "assistant" and message.text.strip():
            users = tuple(m for m in buffer if m.role == "user")
            turns.append(Turn(users, message, (*buffer, message)))
            buffer = []
        elif message.role == "user" and not join_users and any(m.role == "user" for m in buffer):
            turns.append(Turn(tuple(m for m in buffer if m.role == "user"), None, tuple(buffer)))
            buffer = [message]
        else:
            buffer.append(message)
    return turns, buffer


def close_turn(open_turn: Sequence[TurnMessage[S]]) -> Turn[S] | None:
    """The open turn's user messages with text as a turn without an answer (None if there are none),
    so that nothing the user said is dropped."""
    users = tuple(m for m in open_turn if m.role == "user" and m.text.strip())
    return Turn(users, None, users) if users else None
