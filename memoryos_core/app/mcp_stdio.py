"""The MCP server over stdio, where a line that is not a valid JSON-RPC message is answered, not ignored.

The SDK's stdio transport turns such a line (not JSON, a lone surrogate escape, deep nesting, a
5000-digit number) into an exception that the server only logs at DEBUG: a client waiting for that
request's reply would wait forever. Here each one gets a JSON-RPC error carrying the request's id when it
can be read (``null`` otherwise), or, for a notification, which must not be answered, a log line.
"""

from __future__ import annotations

import json
import logging
from typing import Any

logger = logging.getLogger("memoryos")
_MAX_ID_CHARS = 256
_MAX_ID_DIGITS = 18  # fits an int64, which every JSON-RPC client can read back


class _Unreadable:
    """An id no reply could carry (too many digits): the reply's id is null."""


def _small_int(digits: str) -> int | _Unreadable:
    # json.loads would raise on > 4300 digits (CPython's int limit), losing the rest of the message.
    return int(digits) if len(digits.lstrip("-")) <= _MAX_ID_DIGITS else _Unreadable()


def _details(error: Exception) -> list[dict[str, Any]]:
    """The pydantic error details of what the transport failed to read (empty for other exceptions)."""
    errors = getattr(error, "errors", None)
    if not callable(errors):
        return []
    try:
        return [dict(detail) for detail in errors()]
    except Exception:  # an object with an unrelated errors(): nothing to read
        return []


def _message_of(details: list[dict[str, Any]]) -> Any:
    """The raw line (not JSON) or the parsed object (not a JSON-RPC message) the details hold, or None."""
    for detail in details:
        value = detail.get("input")
        if (detail.get("type") == "json_invalid" and isinstance(value, str)) or isinstance(value, dict):
            return value
    return None


def _request_id(message: Any) -> tuple[bool, int | str | None]:
    """Whether the message asks for a reply (it has an id, or its id cannot be known), and that id."""
    if isinstance(message, str):
        try:
            message = json.loads(message, parse_int=_small_int)
        except (ValueError, RecursionError):
            return True, None  # not JSON at all: JSON-RPC's parse error, id null
    if not isinstance(message, dict):
        return True, None
    if "id" not in message:
        return False, None  # a notification: never answered
    request_id = message["id"]
    if isinstance(request_id, bool) or not isinstance(request_id, (int, str)):
        return True, None
    if isinstance(request_id, str):
        try:
            request_id.encode("utf-8")  # a lone surrogate could not be written back
        except UnicodeEncodeError:
            return True, None
        if len(request_id) > _MAX_ID_CHARS:
            return True, None
    return True, request_id


def malformed_reply(error: Exception) -> Any:
    """The JSON-RPC error answering an unreadable message, or None (a notification) after a log line."""
    from mcp.types import INVALID_REQUEST, PARSE_ERROR, ErrorData, JSONRPCError

    details = _details(error)
    wants_reply, request_id = _request_id(_message_of(details))
    is_json_error = not details or any(detail.get("type") == "json_invalid" for detail in details)
    # The reason, never the content: a message is personal data.
    reason = str(details[0].get("msg") if details else type(error).__name__)[:200]
    if not wants_reply:
        logger.warning("dropped an unreadable notification on stdin: %s", reason)
        return None
    logger.warning(
        "answered an unreadable MCP message on stdin (id %r) with an error: %s", request_id, reason
    )
    return JSONRPCError(
        jsonrpc="2.0",
        id=request_id,
        error=ErrorData(
            code=PARSE_ERROR if is_json_error else INVALID_REQUEST,
            message=f"{'Parse error' if is_json_error else 'Invalid request'}: {reason}",
        ),
    )


def idless_request_reply(message: Any) -> Any:
    """The JSON-RPC error for a request method that came without a usable id, or None for anything else.

    The SDK reads ``{"id": 1.5, "method": "tools/list"}`` (an id that is null, fractional, boolean or
    structured) as a notification and drops it, so its sender would wait forever. Every MCP notification
    is named ``notifications/...``; any other method without an id is such a request, answered with id null.
    """
    from mcp.types import INVALID_REQUEST, ErrorData, JSONRPCError, JSONRPCNotification

    if not isinstance(message, JSONRPCNotification) or message.method.startswith("notifications/"):
        return None
    logger.warning(
        "answered an MCP request without a usable id on stdin (%s) with an error", message.method[:80]
    )
    reason = "the id must be a string or an integer"
    return JSONRPCError(
        jsonrpc="2.0", id=None, error=ErrorData(code=INVALID_REQUEST, message=f"Invalid request: {reason}")
    )


async def serve_stdio(server: Any) -> None:
    """Serve an ``MCPServer`` over this process's stdin/stdout until stdin closes."""
    import anyio
    from mcp.server.stdio import stdio_server
    from mcp.shared.message import SessionMessage

    async with stdio_server() as (read_stream, write_stream):
        forward, screened = anyio.create_memory_object_stream[Any](0)

        async def screen() -> None:
            async with forward:
                async for item in read_stream:
                    if isinstance(item, Exception):
                        reply = malformed_reply(item)
                    elif (reply := idless_request_reply(item.message)) is None:
                        await forward.send(item)
                        continue
                    if reply is not None:
                        await write_stream.send(SessionMessage(reply))

        # What MCPServer.run_stdio_async does, with screen() between the transport and the server.
        lowlevel = server._lowlevel_server
        async with anyio.create_task_group() as group:
            group.start_soon(screen)
            await lowlevel.run(screened, write_stream, lowlevel.create_initialization_options())
