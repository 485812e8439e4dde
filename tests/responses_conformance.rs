//! Conformance of `POST /v1/responses`: recorded answers of each provider kind, streamed and
//! not (text, tool calls, thinking, usage, a mid-stream error), are sent through the gateway
//! and what the client gets is compared, event by event, with the recorded Responses output
//! in `tests/fixtures/responses/` (`<provider>_<case>.expected.json` or `.jsonl`).
//!
//! Ids and timestamps the gateway makes up are normalized. To re-record after a deliberate
//! change of the output: `DELIBERATE_UPDATE_FIXTURES=1 cargo test --test responses_conformance`,
//! then review the diff.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const KEY_ENV: &str = "DELIBERATE_TEST_ANTHROPIC_KEY";

fn fixture_path(dir: &str, name: &str) -> String {
    format!("{}/tests/fixtures/{dir}/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn read_fixture(dir: &str, name: &str) -> String {
    let path = fixture_path(dir, name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Made-up ids keep their prefix and item index; timestamps and error texts (which name
/// the mock's port) are blanked.
fn normalized(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("created_at", _) => json!(0),
                        ("id" | "item_id", Value::String(s)) => Value::String(normalized_id(&s)),
                        ("message", Value::String(_)) => json!("<message>"),
                        (_, v) => normalized(v),
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(normalized).collect()),
        other => other,
    }
}

fn normalized_id(id: &str) -> String {
    for prefix in ["resp_", "msg_", "fc_", "rs_"] {
        if let Some(rest) = id.strip_prefix(prefix) {
            let index = rest.split_once('_').map(|(_, i)| format!("_{i}"));
            return format!("{prefix}X{}", index.unwrap_or_default());
        }
    }
    id.to_string()
}

/// The client's view: a JSON answer, or one line per SSE event.
async fn client_view(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 200);
    let stream = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream");
    let text = read_text(response).await;
    if !stream {
        let v: Value = serde_json::from_str(&text).unwrap();
        return serde_json::to_string_pretty(&normalized(v)).unwrap() + "\n";
    }
    let mut out = String::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        if block.starts_with(':') {
            continue; // keep-alive comment
        }
        let name = block.lines().find_map(|l| l.strip_prefix("event: "));
        let data = block.lines().find_map(|l| l.strip_prefix("data: "));
        let (Some(name), Some(data)) = (name, data) else {
            panic!("not a Responses event: {block:?}");
        };
        let data: Value = serde_json::from_str(data).unwrap();
        out.push_str(&json!({"event": name, "data": normalized(data)}).to_string());
        out.push('\n');
    }
    out
}

/// Compares with the recorded output, or records it.
fn check(name: &str, got: &str) {
    let path = fixture_path("responses", name);
    if std::env::var_os("DELIBERATE_UPDATE_FIXTURES").is_some() {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = read_fixture("responses", name);
    if want != got {
        let want_lines: Vec<&str> = want.lines().collect();
        for (i, line) in got.lines().enumerate() {
            assert_eq!(Some(&line), want_lines.get(i), "{name}: line {}", i + 1);
        }
        assert_eq!(got.lines().count(), want_lines.len(), "{name}: line count");
    }
}

async fn post(gw: &Gateway, body: Value) -> reqwest::Response {
    let request = client()
        .post(gw.url("/v1/responses"))
        .bearer_auth(KEY)
        .json(&body);
    tokio::time::timeout(TEST_TIMEOUT, request.send())
        .await
        .expect("request finished in time")
        .expect("request sent")
}

fn ask(stream: bool, tools: bool) -> Value {
    let mut body =
        json!({"model": "fast", "input": "What is the weather in Paris?", "stream": stream});
    if tools {
        body["tools"] = json!([{"type": "function", "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    }
    body
}

// --- OpenAI-compatible provider ------------------------------------------------------------

fn openai_chunk(delta: Value, finish: Value) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "chat-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

fn openai_usage() -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "chat-model",
        "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18,
        "prompt_tokens_details": {"cached_tokens": 4}}})
}

fn openai_text_stream() -> Vec<Value> {
    vec![
        openai_chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        openai_chunk(json!({"content": "Sunny, "}), Value::Null),
        openai_chunk(json!({"content": "18 degrees."}), json!("stop")),
        openai_usage(),
    ]
}

fn openai_tool_stream() -> Vec<Value> {
    vec![
        openai_chunk(
            json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": "call_abc",
                "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
            Value::Null,
        ),
        openai_chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
            Value::Null,
        ),
        openai_chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
            json!("tool_calls"),
        ),
        openai_usage(),
    ]
}

#[tokio::test]
async fn openai_provider_answers_conform() {
    let upstream = MockUpstream::start(|r| {
        let tools = r.body.get("tools").is_some();
        let stream = r.body["stream"] == true;
        let text = r.body["messages"][0]["content"].as_str().unwrap_or("");
        if text.contains("break") {
            return MockReply::Stream {
                events: vec![(Duration::ZERO, data_event(&openai_text_stream()[1]))],
                end: StreamEnd::Abort,
            };
        }
        match (stream, tools) {
            (true, false) => MockReply::sse(openai_text_stream(), Duration::ZERO),
            (true, true) => MockReply::sse(openai_tool_stream(), Duration::ZERO),
            (false, false) => MockReply::json(completion("chat-model", "Sunny, 18 degrees.")),
            (false, true) => MockReply::json(json!({
                "id": "chatcmpl-2", "object": "chat.completion", "created": 1, "model": "chat-model",
                "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
                    "content": null, "tool_calls": [{"id": "call_abc", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18}})),
        }
    })
    .await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;
    for (name, stream, tools) in [
        ("openai_text.expected.json", false, false),
        ("openai_tool_call.expected.json", false, true),
        ("openai_text_stream.expected.jsonl", true, false),
        ("openai_tool_call_stream.expected.jsonl", true, true),
    ] {
        check(
            name,
            &client_view(post(&gw, ask(stream, tools)).await).await,
        );
    }
    let broken = json!({"model": "fast", "input": "break please", "stream": true});
    check(
        "openai_error_stream.expected.jsonl",
        &client_view(post(&gw, broken).await).await,
    );
}

// --- Anthropic provider (recorded Messages answers in tests/fixtures/anthropic/) -------------

fn recorded_stream(name: &str) -> MockReply {
    let events = read_fixture("anthropic", name)
        .split_inclusive("\n\n")
        .map(|event| (Duration::from_millis(1), event.to_string()))
        .collect();
    MockReply::Stream {
        events,
        end: StreamEnd::Close,
    }
}

#[tokio::test]
async fn anthropic_provider_answers_conform() {
    std::env::set_var(KEY_ENV, "sk-ant-test");
    let upstream = MockUpstream::start(|r| {
        let text = r.body["messages"][0]["content"].to_string();
        let recorded = ["text", "tool_use", "thinking", "error"]
            .into_iter()
            .find(|case| text.contains(&format!("case:{case}")))
            .unwrap_or("text");
        match r.body["stream"].as_bool() {
            Some(true) => recorded_stream(&format!("{recorded}_stream.sse")),
            _ => MockReply::Json {
                status: 200,
                body: read_fixture("anthropic", &format!("{recorded}_response.json")),
            },
        }
    })
    .await;
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
    let gw = Gateway::start_acme(&config, "haiku", "claude-sonnet").await;
    for (case, stream) in [
        ("text", false),
        ("tool_use", false),
        ("text", true),
        ("tool_use", true),
        ("thinking", true),
        ("error", true),
    ] {
        let mut body = json!({"model": "reasoning", "input": format!("case:{case}"),
            "max_output_tokens": 1024, "stream": stream});
        if case == "thinking" {
            body["reasoning"] = json!({"effort": "medium"});
        }
        let suffix = if stream {
            "_stream.expected.jsonl"
        } else {
            ".expected.json"
        };
        let name = format!("anthropic_{case}{suffix}");
        check(&name, &client_view(post(&gw, body).await).await);
    }
}

// --- the simulated provider (`serve --demo`) -------------------------------------------------

#[tokio::test]
async fn simulated_provider_answers_conform() {
    let config = r#"
[providers.sim]
kind = "simulated"

[models.sim-fast]
provider = "sim"
tier = "fast"

[models.sim-reasoning]
provider = "sim"
tier = "reasoning"
capabilities = { reasoning_effort = true }
"#;
    let gw = Gateway::start_acme(config, "sim-fast", "sim-reasoning").await;
    for (name, stream, tools) in [
        ("simulated_text_stream.expected.jsonl", true, false),
        ("simulated_tool_call_stream.expected.jsonl", true, true),
        ("simulated_tool_call.expected.json", false, true),
    ] {
        check(
            name,
            &client_view(post(&gw, ask(stream, tools)).await).await,
        );
    }
    let proof = json!({"model": "reasoning", "input": "Prove that sqrt(2) is irrational."});
    check(
        "simulated_reasoning.expected.json",
        &client_view(post(&gw, proof).await).await,
    );
}
