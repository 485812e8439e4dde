"""The unmodified OpenAI Python SDK through the gateway to an upstream that behaves like
llama.cpp's OpenAI-compatible server rather than like OpenAI:

- any `x-request-id` that is not a UUID gets an empty 400;
- streams never carry usage (`stream_options` is ignored);
- streamed tool-call deltas repeat `id`, `type` and `function.name` in every chunk;
- the body ends a moment after `data: [DONE]` (the SDK has stopped reading by then).

The upstream is a small recording HTTP server in this process; the gateway is the real
binary with a config that points at it (cache on, so stored streams can be checked).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import openai
import pytest
from harness import CLIENT_TIMEOUT_S, Gateway, start_gateway

KEY = "sk-python-real-shapes"
# How long the upstream keeps its body open after `[DONE]`.
TAIL_AFTER_DONE_S = 1.5

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


class LlamaLike(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # the body ends when the connection closes
    received: list[dict] = []

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        request_id = self.headers.get("x-request-id")
        LlamaLike.received.append({"request_id": request_id, "body": body})
        if request_id is not None:
            try:
                uuid.UUID(request_id)
            except ValueError:
                self.send_response(400)
                self.send_header("content-length", "0")
                self.end_headers()
                return
        if body.get("stream"):
            self.stream(body)
        else:
            self.whole(body)

    def whole(self, body: dict) -> None:
        message: dict = {"role": "assistant", "content": "Hello there"}
        finish = "stop"
        if body.get("tools"):
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            }
            finish = "tool_calls"
        answer = {
            "id": "chatcmpl-llama",
            "object": "chat.completion",
            "created": 1,
            "model": body.get("model", "smollm2"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        }
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def stream(self, body: dict) -> None:
        def chunk(delta: dict, finish: str | None = None) -> dict:
            return {
                "id": "chatcmpl-llama",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": body.get("model", "smollm2"),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        if body.get("tools"):
            # Every delta repeats id, type and name, as llama.cpp's server does.
            def call(arguments: str) -> dict:
                return {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": arguments},
                        }
                    ]
                }

            chunks = [chunk({"role": "assistant", "content": None, **call("")})]
            chunks += [chunk(call(part)) for part in ('{"city"', ':"Par', 'is"}')]
            chunks.append(chunk({}, "tool_calls"))
        else:
            chunks = [chunk({"role": "assistant", "content": ""})]
            chunks += [chunk({"content": word}) for word in ("Hello", " there")]
            chunks.append(chunk({}, "stop"))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        for c in chunks:
            self.wfile.write(f"data: {json.dumps(c)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        time.sleep(TAIL_AFTER_DONE_S)


@pytest.fixture(scope="module")
def upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), LlamaLike)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="llama-like", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def gateway(upstream: ThreadingHTTPServer):
    port = upstream.server_address[1]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "deliberate.toml").write_text(
            f"""
[providers.llama]
kind = "openai"
base_url = "http://127.0.0.1:{port}/v1"

[models.small]
provider = "llama"
tier = "fast"
upstream_model = "smollm2"

[models.small-think]
provider = "llama"
tier = "reasoning"
upstream_model = "smollm2"
"""
        )
        policies = root / "policies"
        policies.mkdir()
        (policies / "app.toml").write_text(
            f"""
name = "app"
api_keys = [{{ sha256 = "{hashlib.sha256(KEY.encode()).hexdigest()}" }}]
fast_model = "small"
reasoning_model = "small-think"

[cache]
enabled = true
"""
        )
        gw = start_gateway("--config", str(root / "deliberate.toml"), "--policies", str(policies))
        try:
            yield gw
        finally:
            gw.stop()


@pytest.fixture()
def client(gateway: Gateway):
    with openai.OpenAI(
        base_url=gateway.base_url, api_key=KEY, max_retries=0, timeout=CLIENT_TIMEOUT_S
    ) as c:
        yield c


def metrics(gateway: Gateway) -> str:
    with urllib.request.urlopen(f"http://{gateway.admin}/metrics", timeout=5) as r:
        return r.read().decode()


def outcome_count(text: str, outcome: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("deliberate_requests_total{") and f'outcome="{outcome}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_a_uuid_only_server_answers_every_request(client: openai.OpenAI) -> None:
    before = len(LlamaLike.received)
    done = client.chat.completions.create(model="fast", messages=ask("uuid plain"))
    assert done.choices[0].message.content == "Hello there"
    parts = [
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model="fast", messages=ask("uuid stream"), stream=True
        )
        if c.choices
    ]
    assert "".join(parts) == "Hello there"
    # Even a caller's own non-UUID id does not break the call (it is echoed, not forwarded).
    raw = client.chat.completions.with_raw_response.create(
        model="fast", messages=ask("uuid caller id"), extra_headers={"x-request-id": "mine-1"}
    )
    assert raw.headers["x-request-id"] == "mine-1"
    ids = [r["request_id"] for r in LlamaLike.received[before:]]
    assert len(ids) == 3
    for sent in ids:
        assert sent is None or uuid.UUID(sent), ids


def test_a_stream_read_to_done_is_ok_and_stored(gateway: Gateway, client: openai.OpenAI) -> None:
    before = metrics(gateway)
    started = time.monotonic()
    stream = client.chat.completions.create(
        model="fast", messages=ask("stored stream"), stream=True, temperature=0
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    stream.close()
    assert text == "Hello there"
    # The gateway ended the stream at `[DONE]`, not when the server closed its body.
    assert time.monotonic() - started < TAIL_AFTER_DONE_S
    deadline = time.monotonic() + 5
    while outcome_count(metrics(gateway), "ok") <= outcome_count(before, "ok"):
        assert time.monotonic() < deadline, "the stream was never counted ok"
        time.sleep(0.05)
    after = metrics(gateway)
    assert outcome_count(after, "client_disconnected") == outcome_count(
        before, "client_disconnected"
    )
    # Stored: the same request again is a hit, and a JSON hit built from the stored stream
    # has usage (the SDK's `usage.total_tokens` works).
    calls = len(LlamaLike.received)
    raw = client.chat.completions.with_raw_response.create(
        model="fast", messages=ask("stored stream"), temperature=0
    )
    assert raw.headers["x-deliberate-cache"] == "hit"
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello there"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    assert len(LlamaLike.received) == calls


def test_usage_asked_for_is_estimated_when_the_server_sends_none(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="fast",
        messages=ask("how long is a piece of string, roughly?"),
        stream=True,
        stream_options={"include_usage": True},
    )
    usages = [c.usage for c in stream if c.usage is not None]
    assert len(usages) == 1
    usage = usages[0]
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert (usage.model_extra or {}).get("estimated") is True


def test_the_stream_helper_assembles_a_tool_call_once(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model="fast", messages=ask("weather in Paris?"), tools=[WEATHER_TOOL]
    ) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].id == "call_1"
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert final.choices[0].finish_reason == "tool_calls"
