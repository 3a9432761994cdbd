"""The memory inspector's JSON API (``/api/...``), built on the public ``MemoryOS`` calls only.

Every route first resolves the caller's token (401 without a valid one) and, for a user's memory,
whether the token may act for that user (403 otherwise: a user-bound token learns nothing about
another user, not even whether they exist). Bad input is a 400 naming the problem, an unknown page or
item a 404; neither changes anything. Searching calls ``retrieve_memory(update_heat=False)``: looking
at memory is not using it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from memoryos_core._exceptions import BackendError, InvalidInputError, MemoryOSError, NotFoundError
from memoryos_core._types import ContextUnit, Page
from memoryos_core._validation import check_id
from memoryos_core.app.cli_output import with_iso_times
from memoryos_core.app.mcp_access import Grant

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from memoryos_core.engine.memory import MemoryOS

MAX_BODY_BYTES = 256 * 1024
"""A request body larger than this is refused (413): a page's texts fit many times over."""
MAX_TOP_K = 100

Handler = Callable[["Request"], Awaitable["JSONResponse"]]


class ApiError(Exception):
    """An answer other than 200: its status and a message for the person at the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def page_json(page: Page) -> dict[str, Any]:
    data: dict[str, Any] = with_iso_times(dataclasses.asdict(page))
    data["text"] = page.text
    return data


def unit_json(unit: ContextUnit) -> dict[str, Any]:
    return {
        "id": unit.id,
        "tier": unit.tier,
        "text": unit.text,
        "score": unit.score,
        "score_parts": dict(unit.score_parts),
        "timestamp": unit.timestamp,
        "page_ids": list(unit.page_ids),
        "source_ids": list(unit.source_ids),
        "segment_id": str(unit.meta_data.get("segment_id") or ""),
    }


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, f"the request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return data


def _optional_text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ApiError(400, f"{key} must be a string")
    return value


def api_routes(memory: MemoryOS, grant_of: Callable[[Request], Grant | None]) -> list[Route]:
    """The API's routes on ``memory``; ``grant_of`` tells what a request's token may do."""
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def answer(handler: Callable[[Request, Grant], Awaitable[Any]]) -> Handler:
        async def endpoint(request: Request) -> JSONResponse:
            grant = grant_of(request)
            if grant is None:
                return JSONResponse(
                    {"error": "not authenticated: send Authorization: Bearer TOKEN"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            try:
                return JSONResponse(await handler(request, grant))
            except ApiError as exc:
                return JSONResponse({"error": str(exc)}, status_code=exc.status)
            except NotFoundError as exc:
                return JSONResponse({"error": str(exc.args[0] if exc.args else exc)}, status_code=404)
            except InvalidInputError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            except BackendError as exc:  # the store or the embedder failed: say which
                return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=502)
            except MemoryOSError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)

        return endpoint

    def user_of(request: Request, grant: Grant) -> str:
        """The user named in the path, if this token may act for them (403 otherwise, before any read)."""
        user = str(request.path_params["user"])
        if not grant.is_admin and user != grant.user_id:
            raise ApiError(403, "this token may open its own user's memory only")
        try:
            return check_id(user, "user_id")
        except InvalidInputError as exc:
            raise ApiError(400, str(exc)) from exc

    async def session(request: Request, grant: Grant) -> dict[str, Any]:
        return {
            "admin": grant.is_admin,
            "user_id": grant.user_id,
            "heat_threshold": memory.config.mid_term.heat_threshold,
        }

    async def users(request: Request, grant: Grant) -> dict[str, Any]:
        names = await memory.alist_users() if grant.is_admin else [str(grant.user_id)]
        found = []
        for name in names:
            stats = await memory.aget_memory_stats(name)
            pages = stats.short_term_pages + stats.pending_pages + stats.mid_term_pages + stats.archived_pages
            found.append({"user_id": name, "pages": pages})
        return {"users": found}

    async def overview(request: Request, grant: Grant) -> dict[str, Any]:
        user = user_of(request, grant)
        stats = await memory.aget_memory_stats(user)
        recent = await memory.arecent_pages(user_id=user)
        return {"stats": stats.to_dict(), "recent_pages": [page_json(page) for page in recent]}

    async def segments(request: Request, grant: Grant) -> dict[str, Any]:
        user = user_of(request, grant)
        found = await memory.aget_segments(user_id=user)
        return {
            "segments": with_iso_times([segment.to_dict() for segment in found]),
            "heat_threshold": memory.config.mid_term.heat_threshold,
        }

    async def profile(request: Request, grant: Grant) -> dict[str, Any]:
        user = user_of(request, grant)
        found: dict[str, Any] = with_iso_times((await memory.aget_user_profile(user)).to_dict())
        return found

    async def pages(request: Request, grant: Grant) -> dict[str, Any]:
        user = user_of(request, grant)
        ids = [i for i in request.query_params.get("ids", "").split(",") if i]
        if not ids or len(ids) > 200:
            raise ApiError(400, "ids must name 1 to 200 page ids, separated by commas")
        return {"pages": [page_json(page) for page in await memory.aget_pages(ids, user_id=user)]}

    async def search(request: Request, grant: Grant) -> dict[str, Any]:
        user = user_of(request, grant)
        data = await _body(request)
        query, top_k = data.get("query"), data.get("top_k", 10)
        if not isinstance(query, str) or not query.strip():
            raise ApiError(400, "query must be a non-empty string")
        if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= MAX_TOP_K:
            raise ApiError(400, f"top_k must be an integer from 1 to {MAX_TOP_K}")
        context = await memory.aretrieve_memory(query, user_id=user, top_k=top_k, update_heat=False)
        return {
            "query": query,
            "units": [unit_json(unit) for unit in context.units],
            "short_term": [unit_json(unit) for unit in context.short_term],
        }

    async def edit_page(request: Request, grant: Grant) -> dict[str, Any]:
        user = user_of(request, grant)
        data = await _body(request)
        unknown = sorted(set(data) - {"user_input", "agent_response"})
        if unknown:
            raise ApiError(400, f"only user_input and agent_response can be edited, not {', '.join(unknown)}")
        user_input, response = _optional_text(data, "user_input"), _optional_text(data, "agent_response")
        if user_input is None and response is None:
            raise ApiError(400, "give user_input or agent_response")
        page_id = str(request.path_params["page_id"])
        await memory.aupdate_memory(page_id, user_input=user_input, agent_response=response, user_id=user)
        return {"pages": [page_json(page) for page in await memory.aget_pages([page_id], user_id=user)]}

    async def delete_page(request: Request, grant: Grant) -> dict[str, Any]:
        user = user_of(request, grant)
        page_id = str(request.path_params["page_id"])
        return {"deleted_pages": await memory.adelete_memory(page_id, user_id=user)}

    async def delete_knowledge(request: Request, grant: Grant) -> dict[str, Any]:
        user = user_of(request, grant)
        item = str(request.path_params["item_id"])
        await memory.adelete_knowledge(item, user_id=user)
        return {"deleted": item}

    async def delete_trait(request: Request, grant: Grant) -> dict[str, Any]:
        user = user_of(request, grant)
        name = str(request.path_params["name"])
        await memory.adelete_trait(name, user_id=user)
        return {"deleted": name}

    base = "/api/users/{user}"
    return [
        Route("/api/session", answer(session)),
        Route("/api/users", answer(users)),
        Route(f"{base}/overview", answer(overview)),
        Route(f"{base}/segments", answer(segments)),
        Route(f"{base}/profile", answer(profile)),
        Route(f"{base}/pages", answer(pages)),
        Route(f"{base}/search", answer(search), methods=["POST"]),
        Route(f"{base}/pages/{{page_id}}", answer(edit_page), methods=["PATCH"]),
        Route(f"{base}/pages/{{page_id}}", answer(delete_page), methods=["DELETE"]),
        Route(f"{base}/knowledge/{{item_id}}", answer(delete_knowledge), methods=["DELETE"]),
        Route(
            f"{base}/traits/{{name:path}}", answer(delete_trait), methods=["DELETE"]
        ),  # a name may hold "/"
    ]
