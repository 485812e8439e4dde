//! The endpoints mechanism seen from a client: paths with and without `/v1`, `GET /health`
//! without a key, and error bodies in the shape of the path's endpoint.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn chat_completions_and_models_answer_without_the_v1_prefix() {
    let upstream = MockUpstream::ok("hello").await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;
    let body = json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]});
    let response = client()
        .post(gw.url("/chat/completions"))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-deliberate-tier"], "fast");
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "hello");

    for path in ["/models", "/v1/models", "/models/fast"] {
        let response = client()
            .get(gw.url(path))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    // Without `/v1` the key is still required.
    let response = client().get(gw.url("/models")).send().await.unwrap();
    expect_error(response, 401, "authentication_error", "invalid_api_key").await;
}

#[tokio::test]
async fn health_answers_without_a_key_and_is_not_a_request() {
    let upstream = MockUpstream::ok("hello").await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;
    let response = client().get(gw.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, json!({"status": "ok"}));
    // Probes are not counted as API requests (the configured tenant's series exist, at zero).
    assert_eq!(
        metric_value(&gw.metrics().await, "deliberate_requests_total", &[]),
        0.0
    );
    // Only GET (and HEAD) is the probe; a POST is an ordinary unknown path.
    let response = client()
        .post(gw.url("/health"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    expect_error(response, 404, "not_found_error", "unknown_url").await;
}

#[tokio::test]
async fn errors_on_the_messages_path_come_in_anthropic_shape() {
    let upstream = MockUpstream::ok("hello").await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;
    for path in ["/v1/messages", "/messages", "/v1/messages/count_tokens"] {
        let response = client()
            .post(gw.url(path))
            .header("x-api-key", "wrong")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{path}");
        assert!(response.headers().contains_key("x-request-id"));
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["type"], "error", "{path}: {body}");
        assert_eq!(body["error"]["type"], "authentication_error", "{body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    // Other endpoints keep the OpenAI shape.
    let response = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    expect_error(response, 401, "authentication_error", "invalid_api_key").await;
}
