"""The official, unmodified Anthropic Python SDK against a real `deliberate serve --demo`,
on `POST /v1/messages` (the gateway translates to and from its chat stack).

The demo's simulated models answer in ~0.2 s (fast) and ~1.5 s (reasoning); with tools they
call the first tool, and answer in text once the tool's result is in.
"""

from __future__ import annotations

import re
import urllib.request

import anthropic
import pytest
from harness import CLIENT_TIMEOUT_S, DEMO_KEY, GREETING, PROOF, Gateway, start_gateway

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="module")
def gateway():
    gw = start_gateway()
    try:
        yield gw
    finally:
        code = gw.stop()
        if code != 0:
            print(f"gateway exited with {code}; log:\n" + "\n".join(gw.log))


def sdk(gateway: Gateway, key: str = DEMO_KEY) -> anthropic.Anthropic:
    # The SDK appends `/v1/messages` itself: the base URL is the bare host.
    return anthropic.Anthropic(
        base_url=f"http://{gateway.api}",
        api_key=key,
        max_retries=0,
        timeout=CLIENT_TIMEOUT_S,
    )


@pytest.fixture()
def client(gateway: Gateway) -> anthropic.Anthropic:
    with sdk(gateway) as c:
        yield c


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def metric_sum(gateway: Gateway, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"http://{gateway.admin}/metrics", timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            total += float(m.group(2))
    return total


def test_auto_routes_a_greeting_to_fast(client: anthropic.Anthropic) -> None:
    raw = client.messages.with_raw_response.create(
        model="auto", max_tokens=256, messages=user(GREETING)
    )
    assert raw.headers["x-deliberate-tier"] == "fast"
    assert raw.headers["x-deliberate-model"] == "sim-fast"
    assert raw.headers.get("x-deliberate-reason")
    float(raw.headers["x-deliberate-score"])
    message = raw.parse()
    assert isinstance(message, anthropic.types.Message)
    assert message.role == "assistant"
    assert message.content[0].type == "text"
    assert message.content[0].text.startswith("[simulated]")
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


def test_auto_routes_a_proof_to_reasoning(client: anthropic.Anthropic) -> None:
    raw = client.messages.with_raw_response.create(
        model="auto", max_tokens=1024, messages=user(PROOF)
    )
    assert raw.headers["x-deliberate-tier"] == "reasoning"
    assert raw.headers["x-deliberate-model"] == "sim-reasoning"
    assert raw.parse().content[0].text.startswith("[simulated]")


def test_thinking_is_a_routing_hint(client: anthropic.Anthropic) -> None:
    raw = client.messages.with_raw_response.create(
        model="auto",
        max_tokens=4096,
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=user(GREETING),
    )
    assert raw.headers["x-deliberate-tier"] == "reasoning"


def test_system_prompt_and_stop_sequences_are_accepted(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="fast",
        max_tokens=5,
        system="You are terse.",
        stop_sequences=["END"],
        messages=user(GREETING),
    )
    # The simulated model stops at the token limit.
    assert message.stop_reason == "max_tokens"


def test_stream_gives_text_and_the_final_message(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model="fast", max_tokens=256, messages=user(GREETING)) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.startswith("[simulated]")
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


def test_stream_event_sequence(client: anthropic.Anthropic) -> None:
    events = list(
        client.messages.create(model="fast", max_tokens=64, messages=user(GREETING), stream=True)
    )
    types = [e.type for e in events]
    assert types[0] == "message_start"
    assert types[-2:] == ["message_delta", "message_stop"]
    assert "content_block_start" in types and "content_block_stop" in types


def test_tool_use_round_trip(client: anthropic.Anthropic) -> None:
    question = user("What is the weather in Paris?")
    first = client.messages.create(
        model="fast", max_tokens=256, tools=[WEATHER_TOOL], messages=question
    )
    assert first.stop_reason == "tool_use"
    call = next(b for b in first.content if b.type == "tool_use")
    assert call.name == "get_weather"
    assert isinstance(call.input, dict) and "city" in call.input
    second = client.messages.create(
        model="fast",
        max_tokens=256,
        tools=[WEATHER_TOOL],
        messages=[
            *question,
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 C"}],
            },
        ],
    )
    assert second.stop_reason == "end_turn"
    assert second.content[0].type == "text"


def test_streamed_tool_use_has_the_parsed_input(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model="fast", max_tokens=256, tools=[WEATHER_TOOL], messages=user("Weather in Oslo?")
    ) as stream:
        final = stream.get_final_message()
    call = next(b for b in final.content if b.type == "tool_use")
    assert "city" in call.input


def test_a_wrong_key_is_authentication_error(gateway: Gateway) -> None:
    with sdk(gateway, key="wrong") as c, pytest.raises(anthropic.AuthenticationError) as err:
        c.messages.create(model="auto", max_tokens=16, messages=user(GREETING))
    assert err.value.status_code == 401
    assert err.value.body["type"] == "error"
    assert err.value.body["error"]["type"] == "authentication_error"


def test_a_bad_request_is_bad_request_error(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model="auto", max_tokens=16, messages=[])
    assert err.value.body["error"]["type"] == "invalid_request_error"
    assert "messages" in err.value.body["error"]["message"]


def test_an_unknown_model_is_not_found_error(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="no-such-model", max_tokens=16, messages=user(GREETING))


def test_messages_are_metered(gateway: Gateway, client: anthropic.Anthropic) -> None:
    before = metric_sum(gateway, "deliberate_tokens_total", tenant="demo", model="sim-fast")
    client.messages.create(model="fast", max_tokens=64, messages=user("Count my tokens"))
    after = metric_sum(gateway, "deliberate_tokens_total", tenant="demo", model="sim-fast")
    assert after > before


# --- messages/count_tokens -------------------------------------------------------------------


def test_count_tokens_counts_what_messages_would_send(client: anthropic.Anthropic) -> None:
    count = client.messages.count_tokens(
        model="auto", system="Answer step by step.", messages=user(PROOF), tools=[WEATHER_TOOL]
    )
    assert isinstance(count, anthropic.types.MessageTokensCount)
    assert count.input_tokens > 0
    shorter = client.messages.count_tokens(model="auto", messages=user(GREETING))
    assert 0 < shorter.input_tokens < count.input_tokens
    # The same request counts the same: the estimate is deterministic.
    again = client.messages.count_tokens(
        model="auto", system="Answer step by step.", messages=user(PROOF), tools=[WEATHER_TOOL]
    )
    assert again.input_tokens == count.input_tokens


def test_count_tokens_errors_are_the_sdks_exceptions(gateway: Gateway) -> None:
    with sdk(gateway, key="wrong") as c, pytest.raises(anthropic.AuthenticationError) as err:
        c.messages.count_tokens(model="auto", messages=user(GREETING))
    assert err.value.body["error"]["type"] == "authentication_error"
    with sdk(gateway) as c:
        with pytest.raises(anthropic.BadRequestError) as err:
            c.messages.count_tokens(model="auto", messages=[])
        assert err.value.body["type"] == "error"
        assert "messages" in err.value.body["error"]["message"]
        with pytest.raises(anthropic.NotFoundError):
            c.messages.count_tokens(model="no-such-model", messages=user(GREETING))
