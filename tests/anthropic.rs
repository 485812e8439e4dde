//! Anthropic Messages API behind the OpenAI endpoint: request translation as the provider
//! receives it, and responses (whole and streamed) replayed from recorded Anthropic event
//! sequences in `tests/fixtures/anthropic/`, compared chunk by chunk with the expected
//! OpenAI output.

mod common;

use common::*;
use serde_json::{json, Value};

const KEY_ENV: &str = "DELIBERATE_TEST_ANTHROPIC_KEY";

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/anthropic/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Replays a recorded Anthropic stream as the provider would send it.
fn recorded_stream(name: &str) -> MockReply {
    let text = fixture(name);
    let events = text
        .split_inclusive("\n\n")
        .map(|event| (std::time::Duration::from_millis(2), event.to_string()))
        .collect();
    MockReply::Stream {
        events,
        end: StreamEnd::Close,
    }
}

async fn gateway(upstream: &MockUpstream) -> Gateway {
    // Set once for the whole test binary; the value is only compared, never printed.
    std::env::set_var(KEY_ENV, "sk-ant-test");
    let config = format!(
        r#"
[providers.claude]
kind = "anthropic"
base_url = "http://{}"
api_key_env = "{KEY_ENV}"

[models.haiku]
provider = "claude"
tier = "fast"

[models.claude-sonnet]
provider = "claude"
tier = "reasoning"
capabilities = {{ reasoning_effort = true }}
"#,
        upstream.addr
    );
    Gateway::start_acme(&config, "haiku", "claude-sonnet").await
}

/// The `created` timestamp is the gateway's clock; everything else must match exactly.
fn normalized(mut v: Value) -> Value {
    if v.get("created").is_some() {
        v["created"] = json!(0);
    }
    v
}

fn expected_chunks(name: &str) -> Vec<Value> {
    fixture(name)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| normalized(serde_json::from_str(l).unwrap()))
        .collect()
}

#[tokio::test]
async fn non_streaming_request_and_response_are_translated() {
    let upstream = MockUpstream::start(|_| MockReply::Json {
        status: 200,
        body: fixture("text_response.json"),
    })
    .await;
    let gw = gateway(&upstream).await;
    let r = gw
        .chat(json!({
            "model": "reasoning",
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
            "max_tokens": 100, "stop": "END", "presence_penalty": 0.5,
        }))
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["x-deliberate-adjusted"]
        .to_str()
        .unwrap()
        .contains("dropped presence_penalty"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        normalized(body),
        normalized(serde_json::from_str(&fixture("text_response.expected.json")).unwrap())
    );

    let sent = &upstream.requests()[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.headers["x-api-key"], "sk-ant-test");
    assert_eq!(sent.headers["anthropic-version"], "2023-06-01");
    assert_eq!(sent.body["model"], "claude-sonnet");
    assert_eq!(sent.body["system"], "Be brief.");
    assert_eq!(
        sent.body["messages"],
        json!([{"role": "user", "content": "Hello"}])
    );
    assert_eq!(sent.body["max_tokens"], 100);
    assert_eq!(sent.body["stop_sequences"], json!(["END"]));
    assert!(sent.body.get("presence_penalty").is_none());
}

#[tokio::test]
async fn tool_use_response_becomes_tool_calls() {
    let upstream = MockUpstream::start(|_| MockReply::Json {
        status: 200,
        body: fixture("tool_use_response.json"),
    })
    .await;
    let gw = gateway(&upstream).await;
    let r = gw.chat(json!({"model": "reasoning", "messages": [{"role": "user", "content": "weather in Oslo?"}]})).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        normalized(body),
        normalized(serde_json::from_str(&fixture("tool_use_response.expected.json")).unwrap())
    );
}

#[tokio::test]
async fn recorded_streams_translate_to_the_expected_openai_chunks() {
    for (recording, expected, include_usage) in [
        ("text_stream.sse", "text_stream.expected.jsonl", true),
        (
            "tool_use_stream.sse",
            "tool_use_stream.expected.jsonl",
            false,
        ),
        (
            "thinking_stream.sse",
            "thinking_stream.expected.jsonl",
            true,
        ),
    ] {
        let upstream = MockUpstream::start(move |_| recorded_stream(recording)).await;
        let gw = gateway(&upstream).await;
        let mut request = json!({"model": "claude-sonnet", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
        if include_usage {
            request["stream_options"] = json!({"include_usage": true});
        }
        let r = gw.chat(request).await;
        assert_eq!(r.status(), 200, "{recording}");
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        let events = sse_data(&read_text(r).await);
        assert_eq!(
            events.last().map(String::as_str),
            Some("[DONE]"),
            "{recording}"
        );
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| normalized(serde_json::from_str(e).unwrap()))
            .collect();
        assert_eq!(chunks, expected_chunks(expected), "{recording}");
        assert_eq!(upstream.requests()[0].body["stream"], true);
    }
}

#[tokio::test]
async fn an_error_event_mid_stream_ends_the_stream_with_one_error() {
    let upstream = MockUpstream::start(|_| recorded_stream("error_stream.sse")).await;
    let gw = gateway(&upstream).await;
    let r = gw.chat(json!({"model": "claude-sonnet", "stream": true, "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(r.status(), 200);
    let events = sse_data(&read_text(r).await);
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_unavailable");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("verloaded"),
        "{last}"
    );
    assert!(!events.iter().any(|e| e == "[DONE]"));
    assert_eq!(events.iter().filter(|e| e.contains("\"error\"")).count(), 1);
}

#[tokio::test]
async fn provider_errors_keep_their_meaning() {
    let upstream = MockUpstream::start(|_| MockReply::Json {
        status: 529,
        body:
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                .to_string(),
    })
    .await;
    let gw = gateway(&upstream).await;
    let r = gw
        .chat(json!({"model": "claude-sonnet", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(r.status(), 502);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Overloaded"));
    // n > 1 cannot be served by Anthropic: a clear 400 naming the field, before any call.
    let r = gw.chat(json!({"model": "claude-sonnet", "n": 2, "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["param"], "n");
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn an_anthropic_stream_answered_with_json_is_upstream_invalid() {
    // A proxy in front of Anthropic answering the stream request with a JSON body.
    let upstream = MockUpstream::start(|_| MockReply::json(json!({"type": "message"}))).await;
    let gw = gateway(&upstream).await;
    let request =
        json!({"model": "fast", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let error = expect_error(
        gw.chat(request).await,
        502,
        "upstream_error",
        "upstream_invalid",
    )
    .await;
    assert_message_contains(&error, "not text/event-stream");
}
