//! Upstreams that behave like real OpenAI-compatible servers rather than like OpenAI
//! (seen with llama.cpp's server): request ids accepted only as UUIDs, a body that ends a
//! moment after `[DONE]`, no usage on streams, tool-call deltas that repeat `id`/`type`/
//! `name` in every chunk. Plus the cache replaying usage as each client asked, and the
//! simulated provider answering tools and response formats.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

fn hi(stream: bool) -> Value {
    json!({"model": "fast", "stream": stream, "temperature": 0,
        "messages": [{"role": "user", "content": "hi"}]})
}

fn chunk(delta: Value, finish: Value) -> Value {
    json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "chat-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

fn text_chunks() -> Vec<Value> {
    vec![
        chunk(json!({"role": "assistant", "content": "Hel"}), Value::Null),
        chunk(json!({"content": "lo"}), Value::Null),
        chunk(json!({}), json!("stop")),
    ]
}

/// Like llama.cpp: an empty 400 for any `x-request-id` that is not a UUID.
async fn uuid_only_upstream() -> MockUpstream {
    MockUpstream::start(|r| {
        let id = r.headers.get("x-request-id").map(|v| v.to_str().unwrap());
        if id.is_some_and(|id| uuid::Uuid::try_parse(id).is_err()) {
            return MockReply::Json {
                status: 400,
                body: String::new(),
            };
        }
        if r.body["stream"] == true {
            MockReply::sse(text_chunks(), Duration::ZERO)
        } else {
            MockReply::json(
                json!({"id": "c1", "object": "chat.completion", "created": 1,
                "model": "chat-model", "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "Hello"}}]}),
            )
        }
    })
    .await
}

#[tokio::test]
async fn a_server_that_accepts_only_uuid_request_ids_serves_every_request() {
    let upstream = uuid_only_upstream().await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;

    // No caller id: the gateway's own is a UUID, echoed and sent upstream.
    for stream in [false, true] {
        let r = gw.chat(hi(stream)).await;
        assert_eq!(r.status(), 200);
        let id = header(&r, "x-request-id").unwrap();
        assert!(read_text(r).await.contains("lo"));
        let sent = upstream.requests().last().unwrap().headers["x-request-id"].clone();
        assert_eq!(sent, id.as_str());
    }
    // A caller's plain id is echoed, but not sent to a server that would refuse it.
    let r = gw
        .chat_with(hi(false), &[("x-request-id", "trace-42")])
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-request-id").unwrap(), "trace-42");
    assert!(upstream.requests()[2].headers.get("x-request-id").is_none());
    // A caller's UUID goes through as it is.
    let uuid = "0b5bd2a9-4c3e-4c41-9a39-2d4f0a1e7c55";
    let r = gw.chat_with(hi(false), &[("x-request-id", uuid)]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(upstream.requests()[3].headers["x-request-id"], uuid);
}

#[tokio::test]
async fn a_provider_can_be_told_to_get_no_request_id() {
    let upstream = uuid_only_upstream().await;
    let config = openai_config(upstream.addr, "").replace(
        "kind = \"openai\"\n",
        "kind = \"openai\"\nsend_request_id = false\n",
    );
    let gw = Gateway::start_acme(&config, "chat-model", "think-model").await;
    let r = gw.chat(hi(false)).await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "x-request-id").is_some());
    assert!(upstream.requests()[0].headers.get("x-request-id").is_none());
}

/// A cache-on tenant on `upstream`.
async fn cached_gateway(upstream: &MockUpstream) -> Gateway {
    Gateway::start(
        &openai_config(upstream.addr, ""),
        &[(
            "acme",
            tenant_toml(
                "acme",
                KEY,
                "chat-model",
                "think-model",
                "[cache]\nenabled = true\n",
            ),
        )],
    )
    .await
}

#[tokio::test]
async fn a_stream_is_complete_at_done_even_if_the_server_keeps_its_body_open() {
    // `[DONE]`, then the body stays open (an SDK has stopped reading by then).
    let upstream = MockUpstream::start(|_| {
        let MockReply::Stream { events, .. } = MockReply::sse(text_chunks(), Duration::ZERO) else {
            unreachable!()
        };
        MockReply::Stream {
            events,
            end: StreamEnd::Hang,
        }
    })
    .await;
    let gw = cached_gateway(&upstream).await;

    let r = gw.chat(hi(true)).await;
    assert_eq!(r.status(), 200);
    // Ends at `[DONE]`: this read would hang (and time out) if the gateway waited for the
    // server's body to end.
    let text = read_text(r).await;
    assert_eq!(sse_data(&text).last().unwrap(), "[DONE]");

    let m = gw.metrics().await;
    let ok = ["model=\"chat-model\"", "outcome=\"ok\""];
    assert_eq!(
        metric_value(&m, "deliberate_requests_total", &ok),
        1.0,
        "{m}"
    );
    assert!(!m.contains("outcome=\"client_disconnected\""), "{m}");
    // Complete, so it was stored: the same request is a hit without an upstream call.
    let r = gw.chat(hi(true)).await;
    assert_eq!(header(&r, "x-deliberate-cache").as_deref(), Some("hit"));
    assert_eq!(read_text(r).await, text);
    assert_eq!(upstream.requests().len(), 1);
}

fn usage_chunks(text: &str) -> Vec<Value> {
    sse_data(text)
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter(|c| c["usage"].is_object())
        .collect()
}

/// An OpenAI-like upstream: usage on streams only when asked.
async fn usage_upstream() -> MockUpstream {
    MockUpstream::start(|r| {
        let mut chunks = text_chunks();
        if r.body["stream_options"]["include_usage"] == true {
            chunks.push(
                json!({"id": "c1", "object": "chat.completion.chunk", "created": 1,
                "model": "chat-model", "choices": [],
                "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}}),
            );
        }
        MockReply::sse(chunks, Duration::ZERO)
    })
    .await
}

fn with_usage(mut body: Value) -> Value {
    body["stream_options"] = json!({"include_usage": true});
    body
}

#[tokio::test]
async fn cache_hits_carry_usage_exactly_when_their_own_request_asks() {
    let upstream = usage_upstream().await;
    let gw = cached_gateway(&upstream).await;

    // Stored by a client that did not ask for usage.
    let r = gw.chat(hi(true)).await;
    assert!(usage_chunks(&read_text(r).await).is_empty());
    // A hit that asks gets the stored usage; one that does not, none.
    let r = gw.chat(with_usage(hi(true))).await;
    assert_eq!(header(&r, "x-deliberate-cache").as_deref(), Some("hit"));
    let usage = usage_chunks(&read_text(r).await);
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0]["usage"]["total_tokens"], 11);
    assert_eq!(usage[0]["choices"], json!([]));
    let r = gw.chat(hi(true)).await;
    assert_eq!(header(&r, "x-deliberate-cache").as_deref(), Some("hit"));
    assert!(usage_chunks(&read_text(r).await).is_empty());
    // A JSON answer made from the stored stream has its usage (SDKs read `usage.total_tokens`).
    let r = gw.chat(hi(false)).await;
    assert_eq!(header(&r, "x-deliberate-cache").as_deref(), Some("hit"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["usage"]["total_tokens"], 11);
    assert_eq!(body["choices"][0]["message"]["content"], "Hello");
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn a_stream_stored_with_usage_is_replayed_without_it_to_a_client_that_did_not_ask() {
    let upstream = usage_upstream().await;
    let gw = cached_gateway(&upstream).await;
    let r = gw.chat(with_usage(hi(true))).await;
    assert_eq!(usage_chunks(&read_text(r).await).len(), 1);
    let r = gw.chat(hi(true)).await;
    assert_eq!(header(&r, "x-deliberate-cache").as_deref(), Some("hit"));
    let text = read_text(r).await;
    assert!(usage_chunks(&text).is_empty(), "{text}");
    assert_eq!(sse_data(&text).last().unwrap(), "[DONE]");
}

#[tokio::test]
async fn a_client_that_asked_for_usage_gets_an_estimate_from_a_server_that_sends_none() {
    // Ignores `stream_options` (as llama.cpp does): never a usage chunk.
    let upstream = MockUpstream::start(|_| MockReply::sse(text_chunks(), Duration::ZERO)).await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;

    let long = "a question of some length ".repeat(40);
    let body = json!({"model": "fast", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": long}]});
    let text = read_text(gw.chat(body).await).await;
    let usage = usage_chunks(&text);
    assert_eq!(usage.len(), 1, "{text}");
    let u = &usage[0]["usage"];
    assert_eq!(u["estimated"], true);
    let (prompt, completion) = (
        u["prompt_tokens"].as_u64().unwrap(),
        u["completion_tokens"].as_u64().unwrap(),
    );
    // About a token per 3-4 bytes of the ~1,000-byte prompt; one per relayed chunk.
    assert!((200..=500).contains(&prompt), "{u}");
    assert_eq!(completion, 3, "{u}");
    assert_eq!(u["total_tokens"].as_u64().unwrap(), prompt + completion);
    assert_eq!(usage[0]["id"], "c1");
    let data = sse_data(&text);
    assert_eq!(
        data[data.len() - 2],
        usage[0].to_string(),
        "usage is last before [DONE]"
    );

    // The output estimate (one per data event, role and finish chunks included) never
    // exceeds the client's own limit.
    let body = json!({"model": "fast", "stream": true, "stream_options": {"include_usage": true},
        "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]});
    let text = read_text(gw.chat(body).await).await;
    let usage = usage_chunks(&text);
    assert_eq!(usage[0]["usage"]["completion_tokens"], 2, "{text}");

    // A client that did not ask gets none.
    let text = read_text(gw.chat(hi(true)).await).await;
    assert!(usage_chunks(&text).is_empty(), "{text}");
}

#[tokio::test]
async fn repeated_tool_call_fields_reach_the_client_once_per_call() {
    // llama.cpp repeats id, type and name in every delta of a tool call.
    let call = |index: u64, id: &str, name: &str, args: &str| {
        json!({"index": index, "id": id, "type": "function",
            "function": {"name": name, "arguments": args}})
    };
    let tool_chunks = vec![
        chunk(
            json!({"role": "assistant", "content": null,
                "tool_calls": [call(0, "call_a", "get_weather", "")]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [call(0, "call_a", "get_weather", "{\"city\":")]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [call(0, "call_a", "get_weather", "\"Paris\"}")]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [call(1, "call_b", "get_time", "{}")]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [call(1, "call_b", "get_time", "")]}),
            Value::Null,
        ),
        chunk(json!({}), json!("tool_calls")),
    ];
    let upstream =
        MockUpstream::start(move |_| MockReply::sse(tool_chunks.clone(), Duration::ZERO)).await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;
    let text = read_text(gw.chat(hi(true)).await).await;

    // Assembled as the SDKs' stream helpers do: strings concatenated per tool-call index.
    let mut calls: Vec<(String, String, String)> = vec![Default::default(); 2];
    let mut names_seen = [0, 0];
    for data in sse_data(&text).iter().filter(|d| *d != "[DONE]") {
        let c: Value = serde_json::from_str(data).unwrap();
        for delta in c["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let i = delta["index"].as_u64().unwrap() as usize;
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            calls[i].0 += &text(&delta["id"]);
            calls[i].1 += &text(&delta["function"]["name"]);
            calls[i].2 += &text(&delta["function"]["arguments"]);
            names_seen[i] += usize::from(delta["function"].get("name").is_some());
        }
    }
    assert_eq!(
        calls,
        vec![
            (
                "call_a".into(),
                "get_weather".into(),
                "{\"city\":\"Paris\"}".into()
            ),
            ("call_b".into(), "get_time".into(), "{}".into()),
        ],
        "{text}"
    );
    assert_eq!(names_seen, [1, 1]);
}

/// The demo's simulated models, fast and reasoning.
async fn simulated_gateway() -> Gateway {
    let config = r#"
[providers.sim]
kind = "simulated"
time_to_first_token_ms = 1
tokens_per_second = 5000

[models.chat-model]
provider = "sim"
tier = "fast"

[models.think-model]
provider = "sim"
tier = "reasoning"
"#;
    Gateway::start_acme(config, "chat-model", "think-model").await
}

#[tokio::test]
async fn the_simulated_provider_calls_a_tool_and_answers_after_its_result() {
    let gw = simulated_gateway().await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
        "required": ["city"]}}}]);
    let question = json!({"role": "user", "content": "weather in Paris?"});
    let body = json!({"model": "fast", "tools": tools, "messages": [question]});
    let r: Value = gw.chat(body).await.json().await.unwrap();
    let choice = &r["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(args["city"].is_string(), "{args}");

    // Streamed: the same call, name once, arguments in pieces that parse when joined.
    let body = json!({"model": "fast", "stream": true, "tools": tools, "messages": [question]});
    let text = read_text(gw.chat(body).await).await;
    let (mut name, mut arguments, mut finish) = (String::new(), String::new(), String::new());
    for data in sse_data(&text).iter().filter(|d| *d != "[DONE]") {
        let c: Value = serde_json::from_str(data).unwrap();
        let choice = &c["choices"][0];
        if let Some(call) = choice["delta"]["tool_calls"].get(0) {
            name += call["function"]["name"].as_str().unwrap_or_default();
            arguments += call["function"]["arguments"].as_str().unwrap_or_default();
        }
        finish += choice["finish_reason"].as_str().unwrap_or_default();
    }
    assert_eq!(
        (name.as_str(), finish.as_str()),
        ("get_weather", "tool_calls")
    );
    assert_eq!(serde_json::from_str::<Value>(&arguments).unwrap(), args);

    // After the tool's result, a text answer.
    let body = json!({"model": "fast", "tools": tools, "messages": [question,
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "18C, sunny"}]});
    let r: Value = gw.chat(body).await.json().await.unwrap();
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert!(r["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .starts_with("[simulated]"));
}

#[tokio::test]
async fn the_simulated_provider_answers_a_json_schema_with_a_document_of_its_shape() {
    let gw = simulated_gateway().await;
    let schema = json!({"type": "object", "properties": {
        "name": {"type": "string"}, "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["name", "age", "tags"]});
    for stream in [false, true] {
        let body = json!({"model": "fast", "stream": stream,
            "messages": [{"role": "user", "content": "a person"}],
            "response_format": {"type": "json_schema",
                "json_schema": {"name": "person", "schema": schema}}});
        let r = gw.chat(body).await;
        let content = if stream {
            let text = read_text(r).await;
            sse_data(&text)
                .iter()
                .filter(|d| *d != "[DONE]")
                .map(|d| serde_json::from_str::<Value>(d).unwrap())
                .filter_map(|c| {
                    c["choices"][0]["delta"]["content"]
                        .as_str()
                        .map(String::from)
                })
                .collect::<String>()
        } else {
            let r: Value = r.json().await.unwrap();
            r["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let doc: Value = serde_json::from_str(&content).expect("valid JSON");
        assert!(doc["name"].is_string() && doc["age"].is_i64(), "{doc}");
        assert!(
            doc["tags"].as_array().is_some_and(|t| t[0].is_string()),
            "{doc}"
        );
    }
}
