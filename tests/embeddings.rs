//! `POST /v1/embeddings` seen from a client: the tenant's `embedding_model` or a named one,
//! sent to the provider's `/embeddings` with the deployment's model name, never classified,
//! metered (tokens, cost), budgeted and cached like chat, and listed by `/v1/models` as
//! serving embeddings only. Real gateway, mock OpenAI-compatible upstream.

mod common;

use common::*;
use serde_json::{json, Value};

const EMBED_MODEL: &str = r#"
[models.embed-model]
provider = "mock"
kind = "embedding"
upstream_model = "text-embedding-3-small"
price = { input_per_1m = 0.1 }
"#;

/// A mock answering `/embeddings` with one 3-dimensional vector per input and this usage.
async fn mock(prompt_tokens: u64) -> MockUpstream {
    MockUpstream::start(move |r| {
        let n = r.body["input"].as_array().map_or(1, Vec::len);
        let data: Vec<Value> = (0..n)
            .map(|i| json!({"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}))
            .collect();
        MockReply::json(
            json!({"object": "list", "data": data, "model": r.body["model"],
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}),
        )
    })
    .await
}

async fn gateway(upstream: &MockUpstream, policy: &str) -> Gateway {
    let config = openai_config(upstream.addr, EMBED_MODEL);
    let policy = format!("embedding_model = \"embed-model\"\n{policy}");
    Gateway::start(
        &config,
        &[(
            "acme",
            tenant_toml("acme", KEY, "chat-model", "think-model", &policy),
        )],
    )
    .await
}

async fn embed(gw: &Gateway, body: Value) -> reqwest::Response {
    client()
        .post(gw.url("/v1/embeddings"))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn auto_uses_the_tenants_embedding_model_at_the_providers_embeddings_path() {
    let upstream = mock(12).await;
    let gw = gateway(&upstream, "").await;
    let response = embed(
        &gw,
        json!({"model": "auto", "input": ["Prove the Riemann hypothesis.", "hi"]}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-deliberate-model"], "embed-model");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["data"].as_array().unwrap().len(), 2);
    assert_eq!(answer["usage"]["prompt_tokens"], 12);
    let sent = upstream.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].path, "/v1/embeddings");
    assert_eq!(sent[0].body["model"], "text-embedding-3-small");
    assert_eq!(sent[0].body["input"][1], "hi");
    // Not classified: no classifier decision was counted.
    let metrics = gw.metrics().await;
    assert!(
        !has_series(&metrics, "deliberate_classifier_decisions_total"),
        "{metrics}"
    );
}

#[tokio::test]
async fn embeddings_are_metered_and_budgeted() {
    // Each answer costs 3000 tokens x 0.1/1M = 0.0003; the daily budget is 0.0002.
    let upstream = mock(3000).await;
    let gw = gateway(
        &upstream,
        "[budget]\ndaily_usd = 0.0002\non_limit = \"reject\"\n",
    )
    .await;
    let first = embed(&gw, json!({"model": "embed-model", "input": "one"})).await;
    assert_eq!(first.status(), 200);
    read_text(first).await;
    let tokens = metrics_value(
        &gw,
        "deliberate_tokens_total",
        &["model=\"embed-model\"", "kind=\"input\""],
    )
    .await;
    assert_eq!(tokens, 3000.0);
    assert!(metrics_value(&gw, "deliberate_cost_usd_total", &["tenant=\"acme\""]).await > 0.0);
    let second = embed(&gw, json!({"model": "embed-model", "input": "two"})).await;
    expect_error_body(second, 429, "insufficient_quota", "budget_exceeded").await;
    assert_eq!(
        upstream.requests().len(),
        1,
        "a refused request is never sent"
    );
}

#[tokio::test]
async fn a_chat_model_is_refused_on_embeddings_and_an_embedding_model_on_chat() {
    let upstream = mock(1).await;
    let gw = gateway(&upstream, "").await;
    let response = embed(&gw, json!({"model": "chat-model", "input": "x"})).await;
    let body = expect_error_body(response, 400, "invalid_request_error", "invalid_request").await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("chat model"));
    let response = gw
        .chat(json!({"model": "embed-model", "messages": [{"role": "user", "content": "x"}]}))
        .await;
    expect_error_body(response, 400, "invalid_request_error", "invalid_request").await;
    let response = embed(&gw, json!({"model": "auto", "input": []})).await;
    let body = expect_error_body(response, 400, "invalid_request_error", "invalid_request").await;
    assert_eq!(body["error"]["param"], "input");
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn models_say_which_endpoints_each_model_serves() {
    let upstream = mock(1).await;
    let gw = gateway(&upstream, "").await;
    let get = |path: &str| client().get(gw.url(path)).bearer_auth(KEY).send();
    let r = get("/v1/models").await.unwrap();
    assert_eq!(r.status(), 200);
    let list: Value = r.json().await.unwrap();
    assert_eq!(list["object"], "list");
    let data = list["data"].as_array().unwrap();
    let ids: Vec<&str> = data.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "auto",
            "fast",
            "reasoning",
            "chat-model",
            "think-model",
            "embed-model"
        ]
    );
    let entry = |id: &str| data.iter().find(|m| m["id"] == id).unwrap().clone();
    // Still OpenAI's model object, with what it serves beside it.
    let auto = entry("auto");
    assert_eq!(auto["object"], "model");
    assert_eq!(auto["owned_by"], "deliberate");
    assert!(auto["created"].is_u64());
    assert_eq!(
        auto["deliberate"],
        json!({"kind": "router",
            "endpoints": ["chat.completions", "responses", "messages", "embeddings"],
            "routes_to": {"fast": "chat-model", "reasoning": "think-model", "embeddings": "embed-model"}})
    );
    assert_eq!(entry("reasoning")["deliberate"]["tier"], "reasoning");
    assert_eq!(
        entry("chat-model")["deliberate"],
        json!({"kind": "chat", "tier": "fast",
            "endpoints": ["chat.completions", "responses", "messages"]})
    );
    assert_eq!(entry("chat-model")["owned_by"], "mock");
    // An embedding model is no chat tier.
    assert_eq!(
        entry("embed-model")["deliberate"],
        json!({"kind": "embedding", "endpoints": ["embeddings"]})
    );
    let one: Value = get("/models/embed-model")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one, entry("embed-model"));

    // What the listing says is what the endpoints accept.
    let response = embed(&gw, json!({"model": "embed-model", "input": "x"})).await;
    assert_eq!(response.status(), 200);
    let response = gw
        .chat(json!({"model": "embed-model", "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn without_an_embedding_model_no_model_is_listed_for_embeddings() {
    let upstream = mock(1).await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;
    let r = client()
        .get(gw.url("/v1/models"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let list: Value = r.json().await.unwrap();
    for model in list["data"].as_array().unwrap() {
        let endpoints = &model["deliberate"]["endpoints"];
        assert_eq!(
            endpoints,
            &json!(["chat.completions", "responses", "messages"]),
            "{model}"
        );
    }
    let response = embed(&gw, json!({"model": "auto", "input": "x"})).await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn a_repeated_embeddings_request_is_a_tenant_scoped_cache_hit() {
    let upstream = mock(40).await;
    let config = openai_config(upstream.addr, EMBED_MODEL);
    let policy = "embedding_model = \"embed-model\"\n[cache]\nenabled = true\n";
    let gw = Gateway::start(
        &config,
        &[
            (
                "acme",
                tenant_toml("acme", KEY, "chat-model", "think-model", policy),
            ),
            (
                "other",
                tenant_toml("other", OTHER_KEY, "chat-model", "think-model", policy),
            ),
        ],
    )
    .await;
    let send = |key: &'static str, body: &'static str| {
        client()
            .post(gw.url("/v1/embeddings"))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let first = send(KEY, r#"{"model": "auto", "input": ["a", "b"]}"#)
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-deliberate-cache"], "miss");
    let first: Value = first.json().await.unwrap();
    let cost = metrics_value(&gw, "deliberate_cost_usd_total", &["tenant=\"acme\""]).await;
    assert!(cost > 0.0);

    // The same request, fields in another order: answered here, never sent upstream.
    let second = send(KEY, r#"{"input":["a","b"],"model":"auto"}"#)
        .await
        .unwrap();
    assert_eq!(second.status(), 200);
    assert_eq!(second.headers()["x-deliberate-cache"], "hit");
    assert_eq!(second.headers()["x-deliberate-model"], "embed-model");
    let second: Value = second.json().await.unwrap();
    assert_eq!(second, first);
    assert_eq!(second["data"].as_array().unwrap().len(), 2);
    assert_eq!(upstream.requests().len(), 1);
    for result in ["hit", "miss"] {
        let label = format!("result=\"{result}\"");
        let n = metrics_value(
            &gw,
            "deliberate_cache_requests_total",
            &["tenant=\"acme\"", &label],
        )
        .await;
        assert_eq!(n, 1.0, "{result}");
    }
    // A hit is billed nothing; what it saved is counted.
    assert_eq!(
        metrics_value(&gw, "deliberate_cost_usd_total", &["tenant=\"acme\""]).await,
        cost
    );
    let saved = metrics_value(
        &gw,
        "deliberate_cache_saved_usd_total",
        &["tenant=\"acme\""],
    )
    .await;
    assert!((saved - cost).abs() < 1e-12, "saved {saved} vs {cost}");

    // Another tenant never gets acme's entry.
    let theirs = send(OTHER_KEY, r#"{"model": "auto", "input": ["a", "b"]}"#)
        .await
        .unwrap();
    assert_eq!(theirs.headers()["x-deliberate-cache"], "miss");
    assert_eq!(upstream.requests().len(), 2);
    // What changes the vectors changes the entry: the encoding, and token ids against the
    // text that spells them.
    for body in [
        r#"{"model": "auto", "input": ["a", "b"], "encoding_format": "base64"}"#,
        r#"{"model": "auto", "input": [1, 2]}"#,
        r#"{"model": "auto", "input": "[1, 2]"}"#,
    ] {
        let r = send(KEY, body).await.unwrap();
        assert_eq!(r.headers()["x-deliberate-cache"], "miss", "{body}");
    }
    assert_eq!(upstream.requests().len(), 5);
}
