"""``MemoryOSMemory``: MemoryOS as the legacy ``memory=`` of ``langchain_classic`` chains."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

from memoryos_core import InvalidInputError, MemoryOS, MissingDependencyError

try:
    from langchain_classic.base_memory import BaseMemory
except ImportError as exc:  # the optional "classic" extra
    raise MissingDependencyError("langchain-classic", extra="classic") from exc


class MemoryOSMemory(BaseMemory):
    """Recalled memory for a classic chain's prompt, and each call stored as a page.

    ``load_memory_variables`` recalls memory for the chain's input and gives it, rendered and
    marked as recalled data, as ``{memory_key: text}``; ``save_context`` stores the input and the
    output as one page; ``clear`` forgets the user entirely.

    Args:
        memory: the MemoryOS instance.
        user_id: whose memory (default: the instance's default user).
        memory_key: the prompt variable that receives the recalled memory.
        input_key, output_key: the chain's input and output keys (found when there is only one).
        top_k: units (older pages, knowledge) recalled beyond the short-term pages.

    Example:
        >>> from langchain_classic.chains import ConversationChain
        >>> chain = ConversationChain(llm=model, memory=MemoryOSMemory(memory=memory, user_id="alice"))
        >>> chain.invoke({"input": "Hi, I'm Alice"})["response"]
        'Hello!'
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    memory: MemoryOS
    user_id: str | None = None
    memory_key: str = "history"
    input_key: str | None = None
    output_key: str | None = None
    top_k: int | None = None

    @property
    def memory_variables(self) -> list[str]:
        """The one prompt variable this memory fills."""
        return [self.memory_key]

    def _key(self, values: dict[str, Any], given: str | None, what: str) -> str:
        if given is not None:
            return given
        keys = [k for k in values if k not in (self.memory_key, "stop")]
        if len(keys) != 1:
            raise InvalidInputError(f"set {what}_key: the chain has several {what} keys {sorted(keys)}")
        return keys[0]

    def _query(self, inputs: dict[str, Any]) -> str:
        return str(inputs[self._key(inputs, self.input_key, "input")])

    def load_memory_variables(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Recall memory for the chain's input."""
        context = self.memory.retrieve_memory(self._query(inputs), user_id=self.user_id, top_k=self.top_k)
        return {self.memory_key: context.render()}

    async def aload_memory_variables(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Async twin of :meth:`load_memory_variables`."""
        context = await self.memory.aretrieve_memory(
            self._query(inputs), user_id=self.user_id, top_k=self.top_k
        )
        return {self.memory_key: context.render()}

    def _page(self, inputs: dict[str, Any], outputs: dict[str, Any]) -> tuple[str, str]:
        return self._query(inputs), str(outputs[self._key(outputs, self.output_key, "output")])

    def save_context(self, inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
        """Store the chain's input and output as one page."""
        self.memory.add_memory(*self._page(inputs, outputs), user_id=self.user_id)

    async def asave_context(self, inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
        """Async twin of :meth:`save_context`."""
        await self.memory.aadd_memory(*self._page(inputs, outputs), user_id=self.user_id)

    def clear(self) -> None:
        """Forget everything MemoryOS holds about the user."""
        self.memory.delete_memory(everything=True, user_id=self.user_id)

    async def aclear(self) -> None:
        """Async twin of :meth:`clear`."""
        await self.memory.adelete_memory(everything=True, user_id=self.user_id)
