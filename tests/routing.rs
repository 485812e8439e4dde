//! Routing as the user sees it: both tiers, streaming and not, `auto` deciding by content,
//! explicit signals, concrete models, parameter translation, pass-through of unknown fields.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

async fn echo_upstream() -> MockUpstream {
    MockUpstream::start(|r| {
        let model = r.body["model"].as_str().unwrap_or_default().to_string();
        if r.body["stream"] == json!(true) {
            MockReply::sse(vec![chunk("Hel"), chunk("lo")], Duration::from_millis(5))
        } else {
            MockReply::json(completion(&model, "hello"))
        }
    })
    .await
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

#[tokio::test]
async fn each_tier_serves_non_streaming_and_streaming() {
    let upstream = echo_upstream().await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;
    for (model, upstream_model) in [("fast", "chat-model"), ("reasoning", "think-model-2025")] {
        let r = gw
            .chat(json!({"model": model, "messages": user("hi")}))
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-deliberate-tier"), model);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], "hello");

        let r = gw
            .chat(json!({"model": model, "stream": true, "messages": user("hi")}))
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-type"), "text/event-stream");
        assert_eq!(header(&r, "x-deliberate-tier"), model);
        let events = sse_data(&read_text(r).await);
        assert_eq!(events.len(), 3, "two chunks and [DONE]: {events:?}");
        assert_eq!(events[2], "[DONE]");
        let seen = upstream.requests();
        assert!(
            seen.iter()
                .filter(|r| r.body["model"] == upstream_model)
                .count()
                == 2
        );
    }
}

#[tokio::test]
async fn auto_sends_a_proof_to_reasoning_and_a_greeting_to_fast() {
    let upstream = echo_upstream().await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;

    let proof = "Prove that there are infinitely many prime numbers.";
    let r = gw
        .chat(json!({"model": "auto", "messages": user(proof)}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-deliberate-tier"), "reasoning");
    assert_eq!(header(&r, "x-deliberate-model"), "think-model");
    let score: f64 = header(&r, "x-deliberate-score").parse().unwrap();
    assert!(score >= 0.5, "score {score}");
    assert!(!header(&r, "x-deliberate-reason").is_empty());
    // A minted id is a UUID, and the same id went upstream (servers accept only UUIDs).
    let id = header(&r, "x-request-id");
    assert_eq!(
        uuid::Uuid::try_parse(id).unwrap().get_version_num(),
        4,
        "{id}"
    );
    assert_eq!(upstream.requests()[0].headers["x-request-id"], id);

    let r = gw
        .chat(json!({"model": "auto", "messages": user("hi there! how are you today?")}))
        .await;
    assert_eq!(header(&r, "x-deliberate-tier"), "fast");
    assert_eq!(header(&r, "x-deliberate-model"), "chat-model");
    let score: f64 = header(&r, "x-deliberate-score").parse().unwrap();
    assert!(score < 0.5, "score {score}");

    let models: Vec<Value> = upstream
        .requests()
        .iter()
        .map(|r| r.body["model"].clone())
        .collect();
    assert_eq!(models, vec![json!("think-model-2025"), json!("chat-model")]);
}

#[tokio::test]
async fn explicit_signals_win_over_the_classifier() {
    let upstream = echo_upstream().await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;
    let proof = user("Prove that sqrt(2) is irrational.");

    let r = gw
        .chat_with(
            json!({"model": "auto", "messages": proof}),
            &[("x-deliberate-tier", "fast")],
        )
        .await;
    assert_eq!(header(&r, "x-deliberate-tier"), "fast");
    assert_eq!(
        header(&r, "x-deliberate-reason"),
        "header x-deliberate-tier"
    );

    let r = gw
        .chat(json!({"model": "auto", "reasoning_effort": "high", "messages": user("hello")}))
        .await;
    assert_eq!(header(&r, "x-deliberate-tier"), "reasoning");
    assert_eq!(header(&r, "x-deliberate-reason"), "reasoning_effort=high");
    // The reasoning model accepts reasoning_effort: it is forwarded.
    assert_eq!(upstream.requests()[1].body["reasoning_effort"], "high");

    // A concrete model name goes to that model whatever the content.
    let r = gw
        .chat(json!({"model": "chat-model", "messages": proof}))
        .await;
    assert_eq!(header(&r, "x-deliberate-tier"), "fast");
    assert_eq!(header(&r, "x-deliberate-model"), "chat-model");
}

#[tokio::test]
async fn a_chat_request_is_translated_for_a_reasoning_model() {
    let upstream = echo_upstream().await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;
    let r = gw
        .chat(json!({
            "model": "reasoning",
            "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hi"}],
            "max_tokens": 64, "temperature": 0.3, "top_p": 0.9, "seed": 7,
        }))
        .await;
    assert_eq!(r.status(), 200);
    let adjusted = header(&r, "x-deliberate-adjusted").to_string();
    for change in [
        "dropped temperature",
        "dropped top_p",
        "max_tokens->max_completion_tokens",
        "system->developer",
    ] {
        assert!(
            adjusted.contains(change),
            "{change} missing from {adjusted}"
        );
    }
    let sent = &upstream.requests()[0].body;
    assert_eq!(sent["model"], "think-model-2025");
    assert_eq!(sent["max_completion_tokens"], 64);
    assert!(
        sent.get("max_tokens").is_none()
            && sent.get("temperature").is_none()
            && sent.get("top_p").is_none()
    );
    assert_eq!(sent["messages"][0]["role"], "developer");
    assert_eq!(sent["seed"], 7);

    // The same request on the fast model goes through unchanged.
    let r = gw
        .chat(
            json!({"model": "fast", "messages": user("hi"), "max_tokens": 64, "temperature": 0.3}),
        )
        .await;
    assert!(r.headers().get("x-deliberate-adjusted").is_none());
    let sent = &upstream.requests()[1].body;
    assert_eq!(sent["max_tokens"], 64);
    assert_eq!(sent["temperature"], 0.3);
}

#[tokio::test]
async fn unknown_fields_tools_and_formats_are_forwarded_untouched() {
    let upstream = echo_upstream().await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let format =
        json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}});
    let messages = json!([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 3}"}
    ]);
    let r = gw
        .chat(json!({
            "model": "fast", "messages": messages, "tools": tools, "tool_choice": "auto",
            "response_format": format, "n": 2, "stop": ["\n\n"], "seed": 1,
            "stream_options": {"include_usage": true}, "x_vendor_extension": {"a": [1, 2, 3]},
        }))
        .await;
    assert_eq!(r.status(), 200);
    let sent = &upstream.requests()[0].body;
    assert_eq!(sent["tools"], tools);
    assert_eq!(sent["tool_choice"], "auto");
    assert_eq!(sent["response_format"], format);
    assert_eq!(sent["messages"], messages);
    assert_eq!(sent["n"], 2);
    assert_eq!(sent["stop"], json!(["\n\n"]));
    assert_eq!(sent["x_vendor_extension"], json!({"a": [1, 2, 3]}));
}

#[tokio::test]
async fn request_id_is_kept_and_forwarded_when_a_server_accepts_it() {
    let upstream = echo_upstream().await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;
    // A caller's UUID goes upstream as it is.
    let uuid = "5f0c2b8e-9d1a-4e57-8a63-0c1d2e3f4a5b";
    let r = gw
        .chat_with(
            json!({"model": "fast", "messages": user("hi")}),
            &[("x-request-id", uuid)],
        )
        .await;
    assert_eq!(header(&r, "x-request-id"), uuid);
    assert_eq!(upstream.requests()[0].headers["x-request-id"], uuid);
    // Any other sane id is kept for the caller and the logs, but real servers refuse
    // non-UUID ids (llama.cpp answers 400), so it is not forwarded.
    let r = gw
        .chat_with(
            json!({"model": "fast", "messages": user("hi")}),
            &[("x-request-id", "trace-123")],
        )
        .await;
    assert_eq!(header(&r, "x-request-id"), "trace-123");
    assert!(upstream.requests()[1].headers.get("x-request-id").is_none());
}

#[tokio::test]
async fn models_lists_virtual_and_allowed_models() {
    let upstream = echo_upstream().await;
    let config = openai_config(upstream.addr, "[models.extra-model]\nprovider = \"mock\"\ntier = \"fast\"\n[models.hidden-model]\nprovider = \"mock\"\ntier = \"fast\"\n");
    let tenant = tenant_toml(
        "acme",
        KEY,
        "chat-model",
        "think-model",
        "allowed_models = [\"extra-model\"]",
    );
    let gw = Gateway::start(&config, &[("acme", tenant)]).await;
    let r = client()
        .get(gw.url("/v1/models"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "list");
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![
            "auto",
            "fast",
            "reasoning",
            "chat-model",
            "think-model",
            "extra-model"
        ]
    );

    let r = client()
        .get(gw.url("/v1/models/extra-model"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .get(gw.url("/v1/models/hidden-model"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn tenants_get_their_own_models() {
    let upstream = echo_upstream().await;
    let config = openai_config(
        upstream.addr,
        "[models.other-chat]\nprovider = \"mock\"\ntier = \"fast\"\n",
    );
    let gw = Gateway::start(
        &config,
        &[
            (
                "acme",
                tenant_toml("acme", KEY, "chat-model", "think-model", ""),
            ),
            (
                "globex",
                tenant_toml("globex", OTHER_KEY, "other-chat", "think-model", ""),
            ),
        ],
    )
    .await;
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(OTHER_KEY)
        .header("content-type", "application/json")
        .body(json!({"model": "fast", "messages": user("hi")}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "x-deliberate-model"), "other-chat");
    assert_eq!(upstream.requests()[0].body["model"], "other-chat");
}

#[tokio::test]
async fn h2c_clients_are_served_on_the_same_port() {
    let upstream = echo_upstream().await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(json!({"model": "fast", "stream": true, "messages": user("hi")}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert_eq!(
        sse_data(&read_text(r).await).last().map(String::as_str),
        Some("[DONE]")
    );
}

#[tokio::test]
async fn azure_style_deployments_get_their_query_and_key_header() {
    let upstream = echo_upstream().await;
    std::env::set_var("DELIBERATE_TEST_AZURE_KEY", "azure-secret");
    let config = format!(
        r#"
[providers.azure]
kind = "openai"
base_url = "http://{}/openai/deployments/gpt-4o-mini"
auth_header = "api-key"
api_key_env = "DELIBERATE_TEST_AZURE_KEY"
query = {{ "api-version" = "2024-10-21" }}

[models.az-fast]
provider = "azure"
tier = "fast"

[models.az-think]
provider = "azure"
tier = "reasoning"
"#,
        upstream.addr
    );
    let gw = Gateway::start_acme(&config, "az-fast", "az-think").await;
    let r = gw
        .chat(json!({"model": "fast", "messages": user("hi")}))
        .await;
    assert_eq!(r.status(), 200);
    let seen = &upstream.requests()[0];
    assert_eq!(
        seen.path,
        "/openai/deployments/gpt-4o-mini/chat/completions"
    );
    assert_eq!(seen.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(seen.headers["api-key"], "azure-secret");
    assert!(seen.headers.get("authorization").is_none());
}
