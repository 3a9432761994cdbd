"""``MemoryOSMiddleware``: recalled memory in every model call of a ``create_agent`` agent, turns stored."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from langchain.agents.middleware import AgentMiddleware, AgentState, ModelRequest, ModelResponse
from langchain.agents.middleware.types import ModelCallResult, PrivateStateAttr
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.config import get_config
from langgraph.runtime import Runtime
from typing_extensions import NotRequired

from memoryos_core import MemoryOS, RetrievedContext
from memoryos_langchain._common import last_turn, message_text, resolve_user_id
from memoryos_langchain.tools import memory_tools


class MemoryOSState(AgentState[Any]):
    """Agent state plus the id of the last human message stored (private: not in input or output)."""

    memoryos_stored_id: NotRequired[Annotated[str | None, PrivateStateAttr]]


def _config() -> dict[str, Any]:
    try:
        return dict(get_config())
    except RuntimeError:  # outside a runnable context (a hook called directly)
        return {}


def _with_memory(system: SystemMessage | None, recalled: str) -> SystemMessage:
    if system is None:
        return SystemMessage(recalled)
    if isinstance(system.content, str):
        return SystemMessage(f"{system.content}\n\n{recalled}" if system.content else recalled)
    return SystemMessage([*system.content, {"type": "text", "text": f"\n\n{recalled}"}])


class MemoryOSMiddleware(AgentMiddleware[MemoryOSState, Any, Any]):
    """Gives a ``langchain.agents.create_agent`` agent a MemoryOS memory.

    Before each model call (sync and async) it recalls memory for the last human message and appends
    it, rendered and marked as recalled data, to the system message of that call only: the agent's
    state is not changed. After the agent finishes it stores the turn (last human message and the
    final answer, with their message ids in ``meta_data["message_ids"]``), once per human message.

    The user is, in order: ``user_id`` of the runtime context (attribute or key), ``user_id`` of
    ``config["configurable"]``, the ``user_id`` given here; with none of them a call raises
    ``ConfigError`` rather than fall back to a shared user.

    Args:
        memory: the MemoryOS instance.
        user_id: the default user of this agent.
        top_k: units (older pages, knowledge) recalled beyond the short-term pages (core default when None).
        max_units: most recalled units put in the prompt (all when None).
        recall: inject recalled memory before model calls.
        store_turns: store each finished turn.
        tools: also give the agent ``recall_memory`` and ``remember`` tools.

    Example:
        >>> from langchain.agents import create_agent
        >>> agent = create_agent(model, tools=[], middleware=[MemoryOSMiddleware(memory)])
        >>> agent.invoke({"messages": [("user", "hi")]}, context={"user_id": "alice"})["messages"][-1].content
        'Hello!'
    """

    state_schema = MemoryOSState

    def __init__(
        self,
        memory: MemoryOS,
        user_id: str | None = None,
        *,
        top_k: int | None = None,
        max_units: int | None = None,
        recall: bool = True,
        store_turns: bool = True,
        tools: bool = False,
    ) -> None:
        super().__init__()
        self.memory = memory
        self.user_id = user_id
        self.top_k = top_k
        self.max_units = max_units
        self.recall = recall
        self.store_turns = store_turns
        self.tools = memory_tools(memory, user_id, top_k=top_k) if tools else []

    def _user(self, runtime: Runtime[Any] | None) -> str:
        return resolve_user_id(getattr(runtime, "context", None), _config(), self.user_id)

    # --- recall, for one model call ---------------------------------------------------------------
    def _query(self, request: ModelRequest[Any]) -> str | None:
        if not self.recall:
            return None
        human = next((m for m in reversed(request.messages) if isinstance(m, HumanMessage)), None)
        text = message_text(human).strip() if human is not None else ""
        return text or None

    def _inject(self, request: ModelRequest[Any], context: RetrievedContext) -> ModelRequest[Any]:
        recalled = context.render(max_units=self.max_units)
        return request.override(system_message=_with_memory(request.system_message, recalled))

    def wrap_model_call(
        self, request: ModelRequest[Any], handler: Callable[[ModelRequest[Any]], ModelResponse[Any]]
    ) -> ModelCallResult[Any]:
        """Call the model with recalled memory added to the system message."""
        query = self._query(request)
        if query is not None:
            user = self._user(request.runtime)
            request = self._inject(
                request, self.memory.retrieve_memory(query, user_id=user, top_k=self.top_k)
            )
        return handler(request)

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelCallResult[Any]:
        """Async twin of :meth:`wrap_model_call`."""
        query = self._query(request)
        if query is not None:
            user = self._user(request.runtime)
            context = await self.memory.aretrieve_memory(query, user_id=user, top_k=self.top_k)
            request = self._inject(request, context)
        return await handler(request)

    # --- store the finished turn --------------------------------------------------------------------
    def _turn(self, state: MemoryOSState) -> dict[str, Any] | None:
        turn = last_turn(state["messages"]) if self.store_turns else None
        if turn is None or (turn[0].id is not None and turn[0].id == state.get("memoryos_stored_id")):
            return None
        human, answer = turn
        ai_id = answer.id if answer is not None else None
        page: dict[str, Any] = {
            "user_input": message_text(human),
            "agent_response": message_text(answer) if answer is not None else "",
            "meta_data": {
                "message_ids": [i for i in (human.id, ai_id) if i],
                "langchain": {"human_id": human.id, "ai_id": ai_id},
            },
        }
        return page if (page["user_input"].strip() or page["agent_response"].strip()) else None

    def after_agent(self, state: MemoryOSState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """Store the turn the agent just finished."""
        page = self._turn(state)
        if page is None:
            return None
        self.memory.add_memories([page], user_id=self._user(runtime))
        return {"memoryos_stored_id": page["meta_data"]["langchain"]["human_id"]}

    async def aafter_agent(self, state: MemoryOSState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """Async twin of :meth:`after_agent`."""
        page = self._turn(state)
        if page is None:
            return None
        await self.memory.aadd_memories([page], user_id=self._user(runtime))
        return {"memoryos_stored_id": page["meta_data"]["langchain"]["human_id"]}
