//! `POST /v1/messages` (Anthropic Messages input) seen from a client, served by an
//! OpenAI-compatible provider through the chat stack: routing by the classifier with the
//! same `x-deliberate-*` headers, the Anthropic answer and event sequence, errors in
//! Anthropic's shape, and metering and budgets like chat. Real gateway, mock upstream.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const PROOF: &str = "Prove that there are infinitely many primes of the form 4k+3, and then determine how many such primes are below 200, showing each step.";
const GREETING: &str = "hi there!";

async fn post(gw: &Gateway, path: &str, body: Value) -> reqwest::Response {
    client()
        .post(gw.url(path))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": text}]})
}

#[tokio::test]
async fn auto_routes_a_proof_to_reasoning_and_a_greeting_to_fast_in_anthropic_shape() {
    let upstream = MockUpstream::start(|r| {
        MockReply::json(completion(r.body["model"].as_str().unwrap(), "hello"))
    })
    .await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;
    for (text, tier, model) in [
        (GREETING, "fast", "chat-model"),
        (PROOF, "reasoning", "think-model"),
    ] {
        let response = post(&gw, "/v1/messages", ask("auto", text)).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-deliberate-tier"], tier);
        assert_eq!(response.headers()["x-deliberate-model"], model);
        assert!(response.headers().contains_key("x-deliberate-reason"));
        assert!(response.headers().contains_key("x-deliberate-score"));
        let message: Value = response.json().await.unwrap();
        assert_eq!(message["type"], "message");
        assert_eq!(message["role"], "assistant");
        assert_eq!(message["model"], model);
        assert_eq!(
            message["content"],
            json!([{"type": "text", "text": "hello"}])
        );
        assert_eq!(message["stop_reason"], "end_turn");
    }
    // Fields without a chat equivalent are dropped and named.
    let mut body = ask("fast", GREETING);
    body["top_k"] = json!(40);
    let response = post(&gw, "/v1/messages", body).await;
    assert_eq!(response.headers()["x-deliberate-adjusted"], "dropped top_k");
    // The provider got a chat request.
    let sent = upstream.requests();
    assert_eq!(sent[0].path, "/v1/chat/completions");
    assert_eq!(sent[0].body["messages"][0]["content"], GREETING);
}

#[tokio::test]
async fn a_stream_is_anthropics_event_sequence_with_usage() {
    let chunks = vec![
        chunk("Hel"),
        chunk("lo"),
        json!({"id": "c", "object": "chat.completion.chunk", "model": "chat-model", "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}}),
    ];
    let upstream =
        MockUpstream::start(move |_| MockReply::sse(chunks.clone(), Duration::ZERO)).await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;
    let mut body = ask("fast", GREETING);
    body["stream"] = json!(true);
    let response = post(&gw, "/v1/messages", body).await;
    assert_eq!(response.status(), 200);
    let text = read_text(response).await;
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .filter(|n| *n != "ping")
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ],
        "{text}"
    );
    assert!(
        text.contains(r#""usage":{"input_tokens":9,"output_tokens":2"#),
        "{text}"
    );
    // The provider was asked for usage, which the message_delta carries.
    assert_eq!(
        upstream.requests()[0].body["stream_options"]["include_usage"],
        true
    );
}

#[tokio::test]
async fn errors_are_in_anthropic_shape() {
    let upstream = MockUpstream::ok("hello").await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;
    let response = post(
        &gw,
        "/v1/messages",
        json!({"model": "auto", "messages": []}),
    )
    .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let response = post(&gw, "/v1/messages", ask("no-such-model", GREETING)).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "not_found_error");
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn messages_are_metered_and_budgeted() {
    // Each answer really costs 1000 x 0.15/1M + 500 x 0.6/1M = 0.00045; budget 0.0005.
    let upstream = MockUpstream::start(|r| {
        let mut c = completion(r.body["model"].as_str().unwrap(), "ok");
        c["usage"] = json!({"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500});
        MockReply::json(c)
    })
    .await;
    let config = openai_config(upstream.addr, "");
    let policy = "[budget]\ndaily_usd = 0.0005\non_limit = \"reject\"\n";
    let gw = Gateway::start(
        &config,
        &[(
            "acme",
            tenant_toml("acme", KEY, "chat-model", "think-model", policy),
        )],
    )
    .await;
    let first = post(&gw, "/v1/messages", ask("fast", GREETING)).await;
    assert_eq!(first.status(), 200);
    let message: Value = first.json().await.unwrap();
    assert_eq!(message["usage"]["input_tokens"], 1000);
    let tokens = metrics_value(
        &gw,
        "deliberate_tokens_total",
        &["model=\"chat-model\"", "kind=\"output\""],
    )
    .await;
    assert_eq!(tokens, 500.0);
    let second = post(&gw, "/v1/messages", ask("fast", GREETING)).await;
    assert_eq!(second.status(), 429);
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(
        upstream.requests().len(),
        1,
        "a refused request is never sent"
    );
}

/// An Anthropic error: `status`, `{"type": "error", "error": {"type": kind, "message"}}`.
async fn expect_anthropic_error(response: reqwest::Response, status: u16, kind: &str) -> Value {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    body
}

#[tokio::test]
async fn count_tokens_is_the_estimate_the_limits_reserve_and_calls_no_model() {
    let upstream = MockUpstream::ok("hello").await;
    let gw =
        Gateway::with_openai_policy(&upstream, "[rate_limits]\ntokens_per_minute = 100000\n").await;
    let mut message = ask("auto", PROOF);
    message["system"] = json!("Answer step by step.");
    message["tools"] = json!([{"name": "calc", "description": "Adds two numbers.",
        "input_schema": {"type": "object", "properties": {"a": {"type": "number"}}}}]);
    let mut count = message.clone();
    count.as_object_mut().unwrap().remove("max_tokens");
    let mut counted = Vec::new();
    for path in ["/v1/messages/count_tokens", "/messages/count_tokens"] {
        let response = post(&gw, path, count.clone()).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], "application/json");
        assert!(response.headers().contains_key("x-request-id"));
        let body: Value = response.json().await.unwrap();
        assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
        counted.push(body["input_tokens"].as_u64().unwrap());
    }
    assert_eq!(counted[0], counted[1]);
    let tokens = counted[0];
    // More text, more tokens.
    let short = json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]});
    let response = post(&gw, "/v1/messages/count_tokens", short).await;
    let short: Value = response.json().await.unwrap();
    assert!(short["input_tokens"].as_u64().unwrap() < tokens);
    assert_eq!(upstream.count(), 0, "counting calls no model");
    // Counted as requests of the tenant, with no tier or model.
    let counts = metrics_value(
        &gw,
        "deliberate_requests_total",
        &[
            "tenant=\"acme\"",
            "model=\"none\"",
            "tier=\"none\"",
            "outcome=\"ok\"",
        ],
    )
    .await;
    assert_eq!(counts, 3.0);

    // The same message sent: the rate limit reserves that estimate plus `max_tokens`
    // (and the counts above reserved nothing).
    let response = post(&gw, "/v1/messages", message).await;
    assert_eq!(response.status(), 200);
    let remaining: u64 = response.headers()["x-ratelimit-remaining-tokens"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(remaining, 100_000 - tokens - 100);
}

#[tokio::test]
async fn count_tokens_refuses_bad_input_in_anthropic_shape() {
    let upstream = MockUpstream::ok("hello").await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;
    let path = "/v1/messages/count_tokens";
    let user = json!([{"role": "user", "content": "hi"}]);
    let response = client()
        .post(gw.url(path))
        .header("x-api-key", KEY)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    expect_anthropic_error(response, 400, "invalid_request_error").await;
    for body in [
        json!({"model": "auto"}),
        json!({"model": "auto", "messages": []}),
        json!({"messages": user}),
        json!({"model": "auto", "messages": [{"role": "user", "content": [{"type": "document"}]}]}),
    ] {
        let response = post(&gw, path, body.clone()).await;
        let error = expect_anthropic_error(response, 400, "invalid_request_error").await;
        assert!(
            !error["error"]["message"].as_str().unwrap().is_empty(),
            "{body}"
        );
    }
    // A model the tenant may not use, as on /v1/messages.
    let response = post(&gw, path, json!({"model": "nope", "messages": user})).await;
    expect_anthropic_error(response, 404, "not_found_error").await;
    // Bearer works too (as on /v1/messages); GET is not the endpoint.
    let response = client()
        .post(gw.url(path))
        .bearer_auth(KEY)
        .json(&json!({"model": "think-model", "messages": user}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = client()
        .get(gw.url(path))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    expect_anthropic_error(response, 405, "invalid_request_error").await;
    assert_eq!(upstream.count(), 0);
}
