"""The official, unmodified OpenAI Python SDK against a real `deliberate serve --demo`.

The gateway (`harness.start_gateway`) is started once per session on ephemeral loopback
ports and stopped with SIGTERM at the end.

The demo's simulated models answer in ~0.2 s (fast) and ~1.5 s (reasoning).
"""

from __future__ import annotations

import asyncio
import signal
import urllib.request

import openai
import pytest
from harness import (
    CLIENT_TIMEOUT_S,
    DEMO_KEY,
    GREETING,
    PROOF,
    SHUTDOWN_TIMEOUT_S,
    Gateway,
    start_gateway,
)


@pytest.fixture(scope="session")
def gateway():
    gw = start_gateway()
    try:
        yield gw
    finally:
        code = gw.stop()
        # Graceful shutdown on SIGTERM exits 0; anything else is worth seeing in the report.
        if code != 0:
            print(f"gateway exited with {code}; log:\n" + "\n".join(gw.log))


@pytest.fixture()
def client(gateway: Gateway) -> openai.OpenAI:
    with openai.OpenAI(
        base_url=gateway.base_url,
        api_key=DEMO_KEY,
        max_retries=0,
        timeout=CLIENT_TIMEOUT_S,
    ) as c:
        yield c


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


# --- routing -------------------------------------------------------------------------------


def test_auto_routes_greeting_to_fast(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=user(GREETING))
    assert raw.status_code == 200
    assert raw.headers["x-deliberate-tier"] == "fast"
    assert raw.headers.get("x-deliberate-model") == "sim-fast"
    assert raw.headers.get("x-deliberate-reason"), "routing reason header missing"
    float(raw.headers["x-deliberate-score"])  # a number
    assert raw.headers.get("x-request-id"), "x-request-id missing"
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content.startswith("[simulated]")
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens > 0


def test_auto_routes_proof_to_reasoning(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=user(PROOF))
    assert raw.headers["x-deliberate-tier"] == "reasoning"
    assert raw.headers.get("x-deliberate-model") == "sim-reasoning"
    completion = raw.parse()
    assert completion.choices[0].message.content.startswith("[simulated]")
    assert completion.model == "sim-reasoning"


def test_plain_create_returns_typed_completion(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="fast", messages=user(GREETING))
    assert completion.choices[0].message.content.startswith("[simulated]")
    assert completion.id


# --- streaming -----------------------------------------------------------------------------


def test_stream_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="auto",
        messages=user(GREETING),
        stream=True,
        stream_options={"include_usage": True},
    )
    parts: list[str] = []
    usage_chunks = []
    finish_reasons = []
    with stream:
        for chunk in stream:
            assert chunk.object == "chat.completion.chunk"
            if chunk.usage is not None:
                usage_chunks.append(chunk)
            for choice in chunk.choices:
                if choice.delta.content:
                    parts.append(choice.delta.content)
                if choice.finish_reason:
                    finish_reasons.append(choice.finish_reason)
    text = "".join(parts)
    assert text.startswith("[simulated]"), text
    assert finish_reasons == ["stop"]
    assert len(usage_chunks) == 1, "exactly one usage chunk"
    final = usage_chunks[0]
    assert final.choices == [], "the usage chunk has no choices"
    assert final.usage.completion_tokens > 0
    assert final.usage.total_tokens == final.usage.prompt_tokens + final.usage.completion_tokens


def test_stream_raw_response_has_routing_headers(client: openai.OpenAI) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="auto", messages=user(PROOF), stream=True
    ) as response:
        assert response.headers["x-deliberate-tier"] == "reasoning"
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(
            c.choices[0].delta.content or ""
            for c in response.parse()
            if c.choices
        )
    assert text.startswith("[simulated]")


def test_async_client_streaming(gateway: Gateway) -> None:
    async def run() -> tuple[str, object]:
        async with openai.AsyncOpenAI(
            base_url=gateway.base_url,
            api_key=DEMO_KEY,
            max_retries=0,
            timeout=CLIENT_TIMEOUT_S,
        ) as aclient:

            async def one(prompt: str) -> tuple[str, object]:
                stream = await aclient.chat.completions.create(
                    model="auto",
                    messages=user(prompt),
                    stream=True,
                    stream_options={"include_usage": True},
                )
                parts, usage = [], None
                async for chunk in stream:
                    if chunk.usage is not None:
                        usage = chunk.usage
                    for choice in chunk.choices:
                        parts.append(choice.delta.content or "")
                return "".join(parts), usage

            # Two concurrent streams over one async client.
            return await asyncio.wait_for(
                asyncio.gather(one(GREETING), one(PROOF)), timeout=CLIENT_TIMEOUT_S
            )

    (fast_text, fast_usage), (slow_text, slow_usage) = asyncio.run(run())
    assert fast_text.startswith("[simulated]")
    assert slow_text.startswith("[simulated]")
    assert fast_usage is not None and fast_usage.total_tokens > 0
    assert slow_usage is not None and slow_usage.total_tokens > 0


# --- models --------------------------------------------------------------------------------


def test_models_list(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    for virtual in ("auto", "fast", "reasoning"):
        assert virtual in ids, ids
    assert "sim-fast" in ids and "sim-reasoning" in ids, ids


def test_models_say_what_they_serve(client: openai.OpenAI) -> None:
    # The SDK keeps the gateway's extra field: an embedding model is no chat tier.
    serves = {m.id: m.to_dict()["deliberate"] for m in client.models.list()}
    assert serves["sim-embed"] == {"kind": "embedding", "endpoints": ["embeddings"]}
    assert serves["sim-fast"]["tier"] == "fast"
    assert "embeddings" not in serves["sim-fast"]["endpoints"]
    assert serves["auto"]["routes_to"]["embeddings"] == "sim-embed"


def test_models_retrieve(client: openai.OpenAI) -> None:
    model = client.models.retrieve("auto")
    assert model.id == "auto"
    assert model.object == "model"


def test_client_request_id_is_kept(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="fast", messages=user(GREETING), extra_headers={"x-request-id": "sdk-test-42"}
    )
    assert raw.headers["x-request-id"] == "sdk-test-42"


# --- errors map to the SDK's exception types -----------------------------------------------


def test_wrong_api_key_is_authentication_error(gateway: Gateway) -> None:
    with openai.OpenAI(
        base_url=gateway.base_url, api_key="sk-wrong", max_retries=0, timeout=CLIENT_TIMEOUT_S
    ) as bad:
        with pytest.raises(openai.AuthenticationError) as info:
            bad.chat.completions.create(model="auto", messages=user(GREETING))
    assert info.value.status_code == 401
    assert info.value.response.headers.get("x-request-id")


def test_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=user(GREETING))
    err = info.value
    assert err.status_code == 404
    assert err.param == "model"
    assert "no-such-model" in err.message


def test_empty_messages_is_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="auto", messages=[])
    err = info.value
    assert err.status_code == 400
    # The SDK unwraps {"error": {...}} into `body` and lifts `param`.
    assert isinstance(err.body, dict), err.body
    assert err.body.get("param") == "messages", err.body
    assert err.param == "messages"
    assert err.type == "invalid_request_error"


# --- parameter translation -----------------------------------------------------------------


def test_reasoning_model_parameter_translation(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="reasoning",
        messages=user(GREETING),
        temperature=0.2,
        max_tokens=50,
    )
    assert raw.status_code == 200
    assert raw.headers["x-deliberate-tier"] == "reasoning"
    adjusted = raw.headers.get("x-deliberate-adjusted", "")
    assert "max_tokens->max_completion_tokens" in adjusted, adjusted
    assert "dropped temperature" in adjusted, adjusted
    assert raw.parse().choices[0].message.content.startswith("[simulated]")


def test_fast_model_is_not_adjusted(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="fast", messages=user(GREETING), temperature=0.2, max_tokens=50
    )
    assert raw.headers["x-deliberate-tier"] == "fast"
    assert "x-deliberate-adjusted" not in raw.headers


# --- admin ---------------------------------------------------------------------------------


def test_admin_endpoints(gateway: Gateway, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="fast", messages=user(GREETING))
    for path in ("/healthz", "/readyz"):
        with urllib.request.urlopen(f"http://{gateway.admin}{path}", timeout=5) as r:
            assert r.status == 200, path
    with urllib.request.urlopen(f"http://{gateway.admin}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    assert "deliberate_requests_total" in metrics
    assert "deliberate_in_flight_requests" in metrics


# --- graceful shutdown (its own gateway) ---------------------------------------------------


def test_sigterm_drains_an_open_stream() -> None:
    gw = start_gateway()
    try:
        with openai.OpenAI(
            base_url=gw.base_url, api_key=DEMO_KEY, max_retries=0, timeout=CLIENT_TIMEOUT_S
        ) as c:
            # The simulated model answers deterministically: this is the whole answer.
            whole = c.chat.completions.create(model="reasoning", messages=user(PROOF))
            expected = whole.choices[0].message.content
            stream = c.chat.completions.create(model="reasoning", messages=user(PROOF), stream=True)
            parts: list[str] = []
            finish_reasons: list[str] = []
            signalled = False
            with stream:
                for chunk in stream:
                    for choice in chunk.choices:
                        parts.append(choice.delta.content or "")
                        if choice.finish_reason:
                            finish_reasons.append(choice.finish_reason)
                    if not signalled:
                        # The response has started: now ask the gateway to stop.
                        gw.process.send_signal(signal.SIGTERM)
                        signalled = True
            assert signalled
            # Drained, not cut: the whole text and a clean finish.
            assert finish_reasons == ["stop"], finish_reasons
            assert "".join(parts) == expected
        assert gw.process.wait(timeout=SHUTDOWN_TIMEOUT_S) == 0
    finally:
        gw.stop()
