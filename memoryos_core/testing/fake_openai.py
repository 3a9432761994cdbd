"""A stdlib OpenAI-compatible server on 127.0.0.1 with scriptable faults, to test the real HTTP path offline.

Serves ``POST /v1/chat/completions`` (also ``"stream": true``), ``POST /v1/embeddings``, ``GET /v1/models``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

ReplyHandler = Callable[[dict[str, Any]], str]


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour, consumed by the next POST request (build it with the class methods).

    A literal reply text in the action queue is used by a chat request; an embeddings request ignores it.
    """

    kind: Literal["status", "delay", "truncated", "empty"]
    status_code: int = 200
    delay_s: float = 0.0
    retry_after_s: float | None = None
    message: str = ""
    is_null: bool = False

    @classmethod
    def status(cls, code: int, *, retry_after_s: float | None = None, message: str = "") -> Fault:
        """Answer with HTTP ``code`` and an OpenAI-style error body (plus ``Retry-After`` when given)."""
        return cls("status", status_code=code, retry_after_s=retry_after_s, message=message)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Wait ``seconds`` before answering normally, so a client with a shorter timeout gives up."""
        return cls("delay", delay_s=seconds)

    @classmethod
    def truncated(cls) -> Fault:
        """Answer 200 with only the first half of the JSON body."""
        return cls("truncated")

    @classmethod
    def empty(cls, *, is_null: bool = False) -> Fault:
        """Answer 200 with an empty message content (``null`` when ``is_null``)."""
        return cls("empty", is_null=is_null)


Action = Fault | str


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any = None
    received_at: float = field(default=0.0, compare=False)


def default_reply(request: dict[str, Any]) -> str:
    """The deterministic default answer: echoes the last user message (as JSON when JSON mode is asked)."""
    messages = request.get("messages") or []
    last = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "")
    if not isinstance(last, str):
        last = json.dumps(last)
    if (request.get("response_format") or {}).get("type") in ("json_object", "json_schema"):
        return json.dumps({"echo": last})
    return f"echo: {last}"


def hash_embedding(text: str, dim: int) -> list[float]:
    """A deterministic unit vector of length ``dim`` derived from the SHA-256 of ``text``."""
    values: list[float] = []
    counter = 0
    while len(values) < dim:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values.extend(int.from_bytes(digest[i : i + 4], "little") / 2**31 - 1.0 for i in range(0, 32, 4))
        counter += 1
    norm = math.sqrt(sum(v * v for v in values[:dim])) or 1.0
    return [v / norm for v in values[:dim]]


def _lower_headers(headers: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _count_words(value: Any) -> int:
    return len(json.dumps(value).split()) if not isinstance(value, str) else len(value.split())


class FakeOpenAIServer:
    """An OpenAI-compatible HTTP server on an ephemeral 127.0.0.1 port, run in a daemon thread.

    Args:
        handler: Turns a chat request (the parsed JSON body) into the reply text.
        actions: Faults or literal reply texts consumed in order, one per POST request; then ``handler``.
        embedding_dim: Length of embedding vectors when the request does not set ``dimensions``.
        model: The model id listed by ``GET /v1/models`` and reported when a request names none.
        reject_response_format: Answer 400 to any chat request that carries ``response_format``.

    Example:
        >>> with FakeOpenAIServer(lambda request: "hi", actions=[Fault.status(429)]) as server:
        ...     url = server.base_url  # "http://127.0.0.1:PORT/v1"
    """

    def __init__(
        self,
        handler: ReplyHandler | None = None,
        *,
        actions: Iterable[Action] = (),
        embedding_dim: int = 8,
        model: str = "fake-model",
        reject_response_format: bool = False,
    ) -> None:
        self.handler: ReplyHandler = handler or default_reply
        self.embedding_dim = embedding_dim
        self.model = model
        self.reject_response_format = reject_response_format
        self._actions: deque[Action] = deque(actions)
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> FakeOpenAIServer:
        """Bind an ephemeral port on 127.0.0.1 and serve in a daemon thread."""
        if self._httpd is not None:
            return self
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler_class(self))
        httpd.daemon_threads = True
        httpd.block_on_close = False
        self._stopping.clear()
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; pending delayed answers are cut short."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- inspection and scripting ----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound port (the server must be started)."""
        if self._httpd is None:
            raise RuntimeError("FakeOpenAIServer is not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """The URL to pass as ``base_url`` to an OpenAI client, ending in ``/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of every request received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, path_suffix: str) -> list[RecordedRequest]:
        """The recorded requests whose path ends with ``path_suffix`` (e.g. ``"/chat/completions"``)."""
        return [request for request in self.requests if request.path.endswith(path_suffix)]

    def enqueue(self, *actions: Action) -> None:
        """Append faults or literal reply texts to the queue consumed by the next POST requests."""
        with self._lock:
            self._actions.extend(actions)

    def _record(self, request: RecordedRequest) -> Action | None:
        with self._lock:
            self._requests.append(request)
            if request.method == "POST" and self._actions:
                return self._actions.popleft()
            return None


def _make_handler_class(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        fake = server

    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle keep-alive connection frees its thread after this
    fake: FakeOpenAIServer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        self.fake._record(RecordedRequest("GET", self.path, _lower_headers(self.headers), None, time.time()))
        if self.path.rstrip("/").endswith("/models"):
            data = [{"id": self.fake.model, "object": "model", "created": 0, "owned_by": "fake"}]
            self._send_json(200, {"object": "list", "data": data})
        else:
            self._send_error(404, f"unknown path {self.path}", "not_found_error")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw or b"null")
        except ValueError:
            body = raw.decode("utf-8", "replace")
        action = self.fake._record(
            RecordedRequest("POST", self.path, _lower_headers(self.headers), body, time.time())
        )
        path = self.path.split("?", 1)[0].rstrip("/")
        if not isinstance(body, dict):
            self._send_error(400, "request body must be a JSON object", "invalid_request_error")
        elif isinstance(action, Fault) and action.kind == "status":
            headers = {}
            if action.retry_after_s is not None:
                headers["retry-after-ms"] = str(round(action.retry_after_s * 1000))
                headers["Retry-After"] = str(max(1, math.ceil(action.retry_after_s)))
            message = action.message or f"scripted HTTP {action.status_code}"
            self._send_error(action.status_code, message, "scripted_error", headers)
        else:
            is_delay = isinstance(action, Fault) and action.kind == "delay"
            if is_delay and self.fake._stopping.wait(action.delay_s):  # type: ignore[union-attr]
                return  # the server is stopping
            try:
                if path.endswith("/chat/completions"):
                    self._chat(body, action)
                elif path.endswith("/embeddings"):
                    self._embeddings(body, action)
                else:
                    self._send_error(404, f"unknown path {self.path}", "not_found_error")
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (e.g. its timeout fired)

    # -- endpoints ---------------------------------------------------------------------------------------
    def _chat(self, body: dict[str, Any], action: Action | None) -> None:
        if self.fake.reject_response_format and "response_format" in body:
            self._send_error(400, "response_format is not supported by this server", "invalid_request_error")
            return
        if isinstance(action, str):
            content: str | None = action
        elif isinstance(action, Fault) and action.kind == "empty":
            content = None if action.is_null else ""
        else:
            try:
                content = self.fake.handler(body)
            except Exception as exc:  # a broken test handler shows up as a 500 with its message
                self._send_error(500, f"handler failed: {exc!r}", "server_error")
                return
        prompt_tokens = sum(_count_words(m.get("content", "")) for m in body.get("messages") or [])
        completion_tokens = _count_words(content or "")
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
        usage["total_tokens"] = prompt_tokens + completion_tokens
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        head = {
            "id": f"chatcmpl-{digest[:24]}",
            "created": int(time.time()),
            "model": body.get("model") or self.fake.model,
        }
        is_truncated = isinstance(action, Fault) and action.kind == "truncated"
        if not body.get("stream"):
            message = {"role": "assistant", "content": content, "refusal": None}
            choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
            reply = {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
            self._send_json(200, reply, is_truncated=is_truncated)
            return

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            return {**head, "object": "chat.completion.chunk", "choices": [choice]}

        text = content or ""
        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": text[i : i + 8]}) for i in range(0, len(text), 8)]
        events.append(chunk({}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({**chunk({}), "choices": [], "usage": usage})
        lines = [f"data: {json.dumps(event)}\n\n" for event in events]
        if is_truncated:
            lines = lines[: max(1, len(lines) // 2)]  # the stream stops without [DONE]
        else:
            lines.append("data: [DONE]\n\n")
        self._send(200, "".join(lines).encode(), "text/event-stream")

    def _embeddings(self, body: dict[str, Any], action: Action | None) -> None:
        inputs = body.get("input")
        if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            self._send_error(400, "'input' must be a string or a non-empty list", "invalid_request_error")
            return
        dim = int(body.get("dimensions") or self.fake.embedding_dim)
        data = []
        for index, item in enumerate(inputs):
            vector = hash_embedding(item if isinstance(item, str) else json.dumps(item), dim)
            if body.get("encoding_format") == "base64":
                embedding: Any = base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode()
            else:
                embedding = vector
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(_count_words(item) for item in inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        reply = {
            "object": "list",
            "data": data,
            "model": body.get("model") or self.fake.model,
            "usage": usage,
        }
        self._send_json(200, reply, is_truncated=isinstance(action, Fault) and action.kind == "truncated")

    # -- writing -----------------------------------------------------------------------------------------
    def _send_json(
        self, status: int, payload: Any, *, is_truncated: bool = False, headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        if is_truncated:
            self.close_connection = True
            data = data[: len(data) // 2]
        self._send(status, data, "application/json", headers)

    def _send_error(
        self, status: int, message: str, kind: str, headers: dict[str, str] | None = None
    ) -> None:
        error = {"message": message, "type": kind, "param": None, "code": str(status)}
        self._send_json(status, {"error": error}, headers=headers)

    def _send(
        self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
