"""The official, unmodified OpenAI Python SDK's `embeddings.create` against a real
`deliberate serve --demo`, whose tenant has the simulated embedding model `sim-embed`.

The SDK asks for base64 vectors unless told otherwise and decodes them itself; both
encodings are checked.
"""

from __future__ import annotations

import math

import openai
import pytest
from harness import CLIENT_TIMEOUT_S, DEMO_KEY, Gateway, start_gateway


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


def test_embeddings_create_with_the_tenants_embedding_model(client: openai.OpenAI) -> None:
    raw = client.embeddings.with_raw_response.create(model="auto", input=["hello", "world"])
    assert raw.headers["x-deliberate-model"] == "sim-embed"
    result = raw.parse()
    assert [d.index for d in result.data] == [0, 1]
    first = result.data[0].embedding
    assert len(first) == 256
    assert math.isclose(math.sqrt(sum(x * x for x in first)), 1.0, rel_tol=1e-4)
    assert result.usage.prompt_tokens > 0
    # Deterministic: the same input gets the same vector, in float encoding too.
    again = client.embeddings.create(
        model="sim-embed", input="hello", encoding_format="float", dimensions=256
    )
    assert again.data[0].embedding == pytest.approx(first, abs=1e-6)


def test_dimensions_are_honoured(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="sim-embed", input="short", dimensions=32)
    assert len(result.data[0].embedding) == 32


def test_a_chat_model_is_a_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="sim-fast", input="x")
