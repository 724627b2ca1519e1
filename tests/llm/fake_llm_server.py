"""A local HTTP server that speaks the OpenAI chat-completions and Anthropic Messages wire protocols.

The real `openai` and `anthropic` SDKs talk to it as they would to the vendors: each protocol serves a
scripted queue of steps (a reply, an error status, a hang) and records every request it receives.

    def test_x(fake_llm):
        fake_llm.script("openai", error(429, retry_after=0), reply("hi", tokens_in=10, tokens_out=2))
        ...
        assert fake_llm.count("openai") == 2
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from llmseg_mlflow.catalog.models import load_models

OPENAI, ANTHROPIC = "openai", "anthropic"
_ROUTES = {"/v1/chat/completions": OPENAI, "/v1/messages": ANTHROPIC}
# Anthropic's error "type" per HTTP status (https://docs.anthropic.com/en/api/errors).
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_OPENAI_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 429: "rate_limit_exceeded"}


@dataclass(frozen=True)
class Step:
    """One scripted answer: kind is 'reply', 'error' or 'hang'."""

    kind: str
    text: str = ""
    reasoning: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_reasoning: int = 0
    finish: str | None = None
    status: int = 200
    message: str = ""
    retry_after: float | None = None
    seconds: float = 0.0


def reply(
    text: str,
    reasoning: str | None = None,
    *,
    tokens_in: int = 10,
    tokens_out: int = 5,
    tokens_reasoning: int = 0,
    finish: str | None = None,
) -> Step:
    """A successful completion; tokens_out includes tokens_reasoning, as both vendors count it."""
    return Step("reply", text, reasoning, tokens_in, tokens_out, tokens_reasoning, finish)


def error(status: int, message: str | None = None, *, retry_after: float | None = None) -> Step:
    """An HTTP error with the protocol's JSON error body, optionally with a Retry-After header (seconds)."""
    return Step("error", status=status, message=message or f"scripted error {status}", retry_after=retry_after)


def hang(seconds: float = 30.0) -> Step:
    """Accept the request and say nothing for `seconds` (longer than the client's timeout)."""
    return Step("hang", seconds=seconds)


@dataclass(frozen=True)
class Request:
    """One request as the server received it."""

    protocol: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeLLMServer:
    """The server's state: scripts and recorded requests per protocol; URLs to give each SDK."""

    port: int = 0
    scripts: dict[str, list[Step]] = field(default_factory=lambda: {OPENAI: [], ANTHROPIC: []})
    received: list[Request] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def openai_url(self) -> str:
        """Base URL for openai.OpenAI (the SDK appends /chat/completions)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        """Base URL for anthropic.Anthropic (the SDK appends /v1/messages)."""
        return f"http://127.0.0.1:{self.port}"

    def script(self, protocol: str, *steps: Step) -> None:
        """Queue steps to answer the next requests of one protocol, in order."""
        with self.lock:
            self.scripts[protocol].extend(steps)

    def requests(self, protocol: str) -> list[Request]:
        """The requests received for one protocol, in order."""
        with self.lock:
            return [r for r in self.received if r.protocol == protocol]

    def count(self, protocol: str) -> int:
        """How many requests one protocol received."""
        return len(self.requests(protocol))

    def next_step(self, request: Request) -> Step | None:
        """Record the request and take its protocol's next step (None when the script has run out)."""
        with self.lock:
            self.received.append(request)
            queue = self.scripts[request.protocol]
            return queue.pop(0) if queue else None


def _openai_completion(step: Step, model: str, number: int) -> dict[str, Any]:
    """A chat.completion object as api.openai.com (or DeepSeek, with reasoning_content) returns it."""
    message: dict[str, Any] = {"role": "assistant", "content": step.text, "refusal": None}
    if step.reasoning is not None:
        message["reasoning_content"] = step.reasoning
    return {
        "id": f"chatcmpl-fake{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": step.finish or "stop", "logprobs": None}],
        "usage": {
            "prompt_tokens": step.tokens_in,
            "completion_tokens": step.tokens_out,
            "total_tokens": step.tokens_in + step.tokens_out,
            "completion_tokens_details": {"reasoning_tokens": step.tokens_reasoning},
        },
    }


def _anthropic_message(step: Step, model: str, number: int) -> dict[str, Any]:
    """A Messages API message with an optional thinking block before the text block."""
    content: list[dict[str, Any]] = []
    if step.reasoning is not None:
        content.append({"type": "thinking", "thinking": step.reasoning, "signature": f"sig-fake{number}"})
    content.append({"type": "text", "text": step.text})
    return {
        "id": f"msg_fake{number}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": step.finish or "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": step.tokens_in,
            "output_tokens": step.tokens_out,
            "output_tokens_details": {"thinking_tokens": step.tokens_reasoning},
        },
    }


def _error_body(protocol: str, status: int, message: str) -> dict[str, Any]:
    """The JSON error body each vendor sends with a failed status."""
    if protocol == ANTHROPIC:
        kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    kind = _OPENAI_ERROR_TYPES.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


class _Handler(BaseHTTPRequestHandler):
    """Routes POSTs by path to a protocol and answers with that protocol's next step."""

    server: _Server
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        """Answer one API call."""
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        protocol = _ROUTES.get(self.path.split("?")[0])
        if protocol is None:
            self._send(404, {"error": {"message": f"fake LLM server: no route {self.path}", "type": "not_found"}})
            return
        body = json.loads(raw or b"{}")
        request = Request(protocol, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        step = state.next_step(request)
        number = next(state.ids)
        model = str(body.get("model", "unknown"))
        if step is None:
            message = f"fake LLM server: no scripted step left for {protocol}; call fake_llm.script(...)"
            self._send(400, _error_body(protocol, 400, message))
        elif step.kind == "hang":
            # Wakes early when the fixture stops, so no thread outlives the test.
            state.stopping.wait(step.seconds)
            self._send(
                200,
                _openai_completion(reply("late"), model, number)
                if protocol == OPENAI
                else _anthropic_message(reply("late"), model, number),
            )
        elif step.kind == "error":
            headers = {} if step.retry_after is None else {"Retry-After": f"{step.retry_after:g}"}
            self._send(step.status, _error_body(protocol, step.status, step.message), headers)
        elif protocol == OPENAI:
            self._send(200, _openai_completion(step, model, number))
        else:
            self._send(200, _anthropic_message(step, model, number), {"request-id": f"req_fake{number}"})

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        """Write a JSON response; a client that already gave up (timeout) is not an error here."""
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            # One request per connection: the SDK then closes its socket at once instead of pooling it,
            # so no test leaves sockets behind for the garbage collector.
            self.send_header("Connection", "close")
            self.close_connection = True
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Stay quiet: pytest output is for failures."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: FakeLLMServer


def start_fake_llm_server() -> tuple[FakeLLMServer, _Server]:
    """Start the server on a free port of 127.0.0.1 in a background thread."""
    httpd = _Server(("127.0.0.1", 0), _Handler)
    state = FakeLLMServer(port=httpd.server_address[1])
    httpd.state = state
    # A short poll interval keeps shutdown() quick at fixture teardown.
    threading.Thread(target=httpd.serve_forever, args=(0.02,), name="fake-llm-server", daemon=True).start()
    return state, httpd


@pytest.fixture
def fake_llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLMServer]:
    """A running fake server; both SDK families pointed at it with dummy keys, fast retries and timeouts."""
    state, httpd = start_fake_llm_server()
    monkeypatch.setenv("LLMSEG_OPENAI_BASE_URL", state.openai_url)
    monkeypatch.setenv("LLMSEG_ANTHROPIC_BASE_URL", state.anthropic_url)
    for var in {spec.api_key_env for spec in load_models().values() if spec.api_key_env}:
        monkeypatch.setenv(var, f"test-key-{var.lower()}")
    monkeypatch.setenv("LLMSEG_LLM_RETRY_BASE_S", "0.01")
    monkeypatch.setenv("LLMSEG_LLM_TIMEOUT_S", "2")
    monkeypatch.setenv("LLMSEG_LLM_MAX_RETRIES", "3")
    try:
        yield state
    finally:
        state.stopping.set()
        httpd.shutdown()
        httpd.server_close()
