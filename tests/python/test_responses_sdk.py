"""The official, unmodified OpenAI Python SDK's Responses API (`client.responses`) against a
real `deliberate serve --demo`: plain, streamed, function calling round trip, structured
output, `model="auto"` routing, and the clear 400 for server-side state.
"""

from __future__ import annotations

import json

import openai
import pytest
from harness import CLIENT_TIMEOUT_S, DEMO_KEY, GREETING, PROOF, Gateway, start_gateway

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


@pytest.fixture(scope="module")
def gateway():
    gw = start_gateway()
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture()
def client(gateway: Gateway) -> openai.OpenAI:
    with openai.OpenAI(
        base_url=gateway.base_url, api_key=DEMO_KEY, max_retries=0, timeout=CLIENT_TIMEOUT_S
    ) as c:
        yield c


def test_create_plain_routes_a_greeting_to_fast(client: openai.OpenAI) -> None:
    raw = client.responses.with_raw_response.create(
        model="auto", input=GREETING, instructions="Be brief."
    )
    assert raw.status_code == 200
    assert raw.headers["x-deliberate-tier"] == "fast"
    assert raw.headers["x-deliberate-model"] == "sim-fast"
    assert raw.headers.get("x-deliberate-reason")
    float(raw.headers["x-deliberate-score"])
    response = raw.parse()
    assert response.object == "response"
    assert response.status == "completed"
    assert response.id.startswith("resp_")
    assert response.model == "sim-fast"
    assert response.instructions == "Be brief."
    assert response.output_text.startswith("[simulated]")
    assert response.usage.input_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens


def test_auto_routes_a_proof_to_reasoning_with_reasoning_tokens(client: openai.OpenAI) -> None:
    raw = client.responses.with_raw_response.create(model="auto", input=PROOF)
    assert raw.headers["x-deliberate-tier"] == "reasoning"
    assert raw.headers["x-deliberate-model"] == "sim-reasoning"
    response = raw.parse()
    assert response.output_text.startswith("[simulated]")
    assert response.usage.output_tokens_details.reasoning_tokens > 0


def test_reasoning_effort_is_a_routing_hint(client: openai.OpenAI) -> None:
    raw = client.responses.with_raw_response.create(
        model="auto", input=GREETING, reasoning={"effort": "high"}
    )
    assert raw.headers["x-deliberate-tier"] == "reasoning"
    assert raw.parse().reasoning.effort == "high"


def test_stream_true_yields_typed_events_ending_in_completed(client: openai.OpenAI) -> None:
    stream = client.responses.create(model="auto", input=GREETING, stream=True)
    types: list[str] = []
    deltas: list[str] = []
    final = None
    with stream:
        for event in stream:
            types.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
            if event.type == "response.completed":
                final = event.response
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    for expected in (
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ):
        assert expected in types, (expected, types)
    assert final is not None
    assert "".join(deltas) == final.output_text
    assert final.output_text.startswith("[simulated]")
    assert final.usage.output_tokens > 0


def test_stream_helper_accumulates_the_final_response(client: openai.OpenAI) -> None:
    with client.responses.stream(model="fast", input=GREETING) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert final.output_text == text
    assert final.status == "completed"


def test_function_calling_round_trip(client: openai.OpenAI) -> None:
    conversation: list = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.responses.create(model="fast", input=conversation, tools=[WEATHER_TOOL])
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1, first.output
    call = calls[0]
    assert call.name == "get_weather"
    assert "city" in json.loads(call.arguments)
    conversation += first.output
    conversation.append(
        {"type": "function_call_output", "call_id": call.call_id, "output": '{"temp_c": 18}'}
    )
    second = client.responses.create(model="fast", input=conversation, tools=[WEATHER_TOOL])
    assert second.status == "completed"
    assert second.output_text, second.output
    assert not [item for item in second.output if item.type == "function_call"]


def test_streamed_function_call_arguments(client: openai.OpenAI) -> None:
    stream = client.responses.create(
        model="fast", input="Weather in Oslo?", tools=[WEATHER_TOOL], stream=True
    )
    arguments: list[str] = []
    done = None
    with stream:
        for event in stream:
            if event.type == "response.function_call_arguments.delta":
                arguments.append(event.delta)
            elif event.type == "response.function_call_arguments.done":
                done = event.arguments
    assert done is not None
    assert "".join(arguments) == done
    json.loads(done)


def test_text_format_json_schema_gets_a_document_of_that_shape(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    response = client.responses.create(
        model="fast",
        input="Invent a person.",
        text={"format": {"type": "json_schema", "name": "person", "schema": schema, "strict": True}},
    )
    document = json.loads(response.output_text)
    assert isinstance(document["name"], str)
    assert isinstance(document["age"], int)


def test_previous_response_id_is_a_clear_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="auto", input="hi", previous_response_id="resp_123")
    assert caught.value.status_code == 400
    assert "previous_response_id" in str(caught.value)
    assert "not supported" in str(caught.value)
