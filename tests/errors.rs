//! Client-facing errors the gateway produces itself (400/401/404/405/413): status, the
//! OpenAI error body shape, `x-request-id` and content type, and that the upstream is never called.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// A second configured model (`other-model`) the `acme` tenant may not use, and a reasoning
/// model (`strict-model`) that rejects unsupported parameters instead of dropping them.
const EXTRA_MODELS: &str = r#"
[models.other-model]
provider = "mock"
tier = "fast"

[models.strict-model]
provider = "mock"
tier = "reasoning"
capabilities = { max_tokens_param = "max_completion_tokens", system_role = "developer", reasoning_effort = true, unsupported_params = ["temperature", "top_p"], on_unsupported = "reject" }
"#;

async fn upstream() -> MockUpstream {
    MockUpstream::start(|r| {
        MockReply::json(completion(r.body["model"].as_str().unwrap_or(""), "hello"))
    })
    .await
}

fn hi(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

async fn send(request: reqwest::RequestBuilder) -> reqwest::Response {
    tokio::time::timeout(TEST_TIMEOUT, request.send())
        .await
        .expect("request finished in time")
        .expect("request sent")
}

const CHAT: &str = "/v1/chat/completions";

/// A POST with a JSON content type to `path`, authenticated with `key` when there is one.
fn post(gw: &Gateway, path: &str, key: Option<&str>) -> reqwest::RequestBuilder {
    let request = client()
        .post(gw.url(path))
        .header("content-type", "application/json");
    match key {
        Some(key) => request.bearer_auth(key),
        None => request,
    }
}

/// POSTs `body` to the chat endpoint as the test tenant.
async fn post_chat(gw: &Gateway, body: impl Into<reqwest::Body>) -> reqwest::Response {
    send(post(gw, CHAT, Some(KEY)).body(body)).await
}

/// POSTs raw bytes to the chat endpoint as the test tenant.
async fn post_raw(gw: &Gateway, body: &str) -> reqwest::Response {
    post_chat(gw, body.to_string()).await
}

/// GETs the chat endpoint as the test tenant.
async fn get_chat(gw: &Gateway) -> reqwest::Response {
    send(client().get(gw.url(CHAT)).bearer_auth(KEY)).await
}

/// `body` as a chunked request body (no content length) of `size`-byte chunks.
fn chunked(body: Vec<u8>, size: usize) -> reqwest::Body {
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = body
        .chunks(size)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

/// A mock upstream answering every chat with "hello", and a gateway with `extra_config` in
/// front of it.
async fn gateway(extra_config: &str) -> (MockUpstream, Gateway) {
    let mock = upstream().await;
    let gw = Gateway::with_openai_upstream(&mock, extra_config).await;
    (mock, gw)
}

/// `expect_strict_error` for a 400 `invalid_request_error` / `invalid_request`.
async fn expect_invalid_request(response: reqwest::Response) -> Value {
    expect_strict_error(response, 400, "invalid_request_error", "invalid_request").await
}

/// Checks status, headers and the OpenAI error shape (see `expect_error_body`), and more
/// strictly: a non-empty `x-request-id`, a body with nothing but `error`, every error field
/// present and a non-empty message. Returns the `error` object.
async fn expect_strict_error(
    response: reqwest::Response,
    status: u16,
    error_type: &str,
    code: &str,
) -> Value {
    let request_id = response
        .headers()
        .get("x-request-id")
        .expect("every error response has x-request-id")
        .to_str()
        .unwrap()
        .to_string();
    assert!(!request_id.is_empty(), "x-request-id is not empty");
    let body = expect_error_body(response, status, error_type, code).await;
    let object = body.as_object().expect("body is an object");
    assert_eq!(object.len(), 1, "body has only `error`: {body}");
    let error = body["error"].clone();
    for field in ["message", "type", "param", "code"] {
        assert!(
            error.get(field).is_some(),
            "error.{field} is present: {body}"
        );
    }
    let message = error["message"]
        .as_str()
        .expect("error.message is a string");
    assert!(!message.is_empty(), "error.message is not empty");
    error
}

#[tokio::test]
async fn malformed_json_is_400_without_param() {
    let (mock, gw) = gateway("").await;
    let error =
        expect_invalid_request(post_raw(&gw, "{\"model\": \"auto\", \"messages\": [").await).await;
    assert_message_contains(&error, "not valid JSON");
    assert_eq!(error["param"], Value::Null);
    assert!(
        mock.requests().is_empty(),
        "a bad request never reaches the upstream"
    );
}

#[tokio::test]
async fn missing_messages_is_400_naming_messages() {
    let (mock, gw) = gateway("").await;
    let error = expect_invalid_request(gw.chat(json!({"model": "auto"})).await).await;
    assert_eq!(error["param"], "messages");
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn empty_messages_is_400_naming_messages() {
    let (mock, gw) = gateway("").await;
    let response = gw.chat(json!({"model": "auto", "messages": []})).await;
    let error = expect_invalid_request(response).await;
    assert_eq!(error["param"], "messages");
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn missing_model_is_400_naming_model() {
    let (mock, gw) = gateway("").await;
    let response = gw
        .chat(json!({"messages": [{"role": "user", "content": "hi"}]}))
        .await;
    let error = expect_invalid_request(response).await;
    assert_eq!(error["param"], "model");
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn bad_role_is_400_naming_the_role_field() {
    let (mock, gw) = gateway("").await;
    let response = gw
        .chat(json!({"model": "auto", "messages": [{"role": "wizard", "content": "hi"}]}))
        .await;
    let error = expect_invalid_request(response).await;
    assert_eq!(error["param"], "messages[0].role");
    assert_message_contains(&error, "wizard");
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn missing_api_key_is_401() {
    let (mock, gw) = gateway("").await;
    let response = send(post(&gw, CHAT, None).body(hi("auto").to_string())).await;
    let error = expect_strict_error(response, 401, "authentication_error", "invalid_api_key").await;
    assert_eq!(error["param"], Value::Null);
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn wrong_api_key_is_401_and_never_echoed() {
    let (mock, gw) = gateway("").await;
    let wrong = "sk-wrong-key-0123456789abcdef";
    let response = send(post(&gw, CHAT, Some(wrong)).body(hi("auto").to_string())).await;
    assert_eq!(response.status(), 401);
    for (name, value) in response.headers() {
        assert!(
            !value
                .as_bytes()
                .windows(wrong.len())
                .any(|w| w == wrong.as_bytes()),
            "key echoed in header {name}"
        );
    }
    let text = read_text(response).await;
    assert!(!text.contains(wrong), "the key must not be echoed: {text}");
    assert!(
        !text.contains("0123456789abcdef"),
        "no part of the key is echoed: {text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["type"], "authentication_error");
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn unknown_model_is_404_naming_model() {
    let (mock, gw) = gateway(EXTRA_MODELS).await;
    let error = expect_strict_error(
        gw.chat(hi("gpt-nonexistent")).await,
        404,
        "not_found_error",
        "model_not_found",
    )
    .await;
    assert_eq!(error["param"], "model");
    assert_message_contains(&error, "gpt-nonexistent");
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn configured_model_not_allowed_for_tenant_is_404() {
    // `other-model` exists in the config but the tenant's policy does not list it.
    let (mock, gw) = gateway(EXTRA_MODELS).await;
    let error = expect_strict_error(
        gw.chat(hi("other-model")).await,
        404,
        "not_found_error",
        "model_not_found",
    )
    .await;
    assert_eq!(error["param"], "model");
    // A tenant model still works on the same gateway, so the 404 is about access, not config.
    let ok = gw.chat(hi("chat-model")).await;
    assert_eq!(ok.status(), 200);
    let requests = mock.requests();
    assert_eq!(
        requests.len(),
        1,
        "only the allowed model reached the upstream"
    );
    assert_eq!(requests[0].body["model"], "chat-model");
}

#[tokio::test]
async fn unknown_path_is_404() {
    let (mock, gw) = gateway("").await;
    let response =
        send(post(&gw, "/v1/embeddings-that-do-not-exist", Some(KEY)).body(hi("auto").to_string()))
            .await;
    let error = expect_strict_error(response, 404, "not_found_error", "unknown_url").await;
    assert_message_contains(&error, "/v1/embeddings-that-do-not-exist");
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn get_on_chat_completions_is_405() {
    let (mock, gw) = gateway("").await;
    let response = get_chat(&gw).await;
    let error =
        expect_strict_error(response, 405, "invalid_request_error", "method_not_allowed").await;
    assert_message_contains(&error, "GET");
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn method_not_allowed_names_the_allowed_method() {
    // RFC 9110 section 15.5.6: a 405 response must carry `Allow`.
    let (_mock, gw) = gateway("").await;
    let response = get_chat(&gw).await;
    assert_eq!(response.status(), 405);
    let allow = response
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(allow.as_deref(), Some("POST"), "405 carries `Allow: POST`");
}

const SMALL_LIMIT: &str = "[server]\nmax_request_body_bytes = 1024\n";

/// A valid chat request of roughly `size` bytes.
fn big_request(size: usize) -> String {
    json!({"model": "auto", "messages": [{"role": "user", "content": "a".repeat(size)}]})
        .to_string()
}

#[tokio::test]
async fn body_over_limit_with_content_length_is_413() {
    let (mock, gw) = gateway(SMALL_LIMIT).await;
    let response = post_chat(&gw, big_request(2048)).await;
    let error =
        expect_strict_error(response, 413, "invalid_request_error", "payload_too_large").await;
    assert_message_contains(&error, "1024");
    // A small body is still accepted on the same gateway.
    let ok = gw.chat(hi("auto")).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn chunked_body_over_limit_is_413() {
    let (mock, gw) = gateway(SMALL_LIMIT).await;
    let response = post_chat(&gw, chunked(big_request(2048).into_bytes(), 256)).await;
    expect_strict_error(response, 413, "invalid_request_error", "payload_too_large").await;
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn chunked_body_under_limit_is_accepted() {
    let (mock, gw) = gateway(SMALL_LIMIT).await;
    let response = post_chat(&gw, chunked(hi("auto").to_string().into_bytes(), 8)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn invalid_tier_header_with_auto_is_400() {
    let (mock, gw) = gateway("").await;
    let response = gw
        .chat_with(hi("auto"), &[("x-deliberate-tier", "medium")])
        .await;
    let error = expect_invalid_request(response).await;
    assert_message_contains(&error, "x-deliberate-tier");
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn rejected_unsupported_parameter_is_400_naming_it() {
    let mock = upstream().await;
    let config = openai_config(mock.addr, EXTRA_MODELS);
    let tenant = tenant_toml(
        "acme",
        KEY,
        "chat-model",
        "think-model",
        "allowed_models = [\"strict-model\"]",
    );
    let gw = Gateway::start(&config, &[("acme", tenant)]).await;
    let request = json!({"model": "strict-model", "temperature": 0.2, "messages": [{"role": "user", "content": "hi"}]});
    let error = expect_invalid_request(gw.chat(request).await).await;
    assert_eq!(error["param"], "temperature");
    assert_message_contains(&error, "strict-model");
    assert!(mock.requests().is_empty());
    // Without the parameter the same model is served.
    let ok = tokio::time::timeout(Duration::from_secs(10), gw.chat(hi("strict-model")))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(mock.requests().len(), 1);
}

/// A valid chat request of exactly `len` bytes.
fn request_of_len(len: usize) -> String {
    let base = json!({"model": "auto", "messages": [{"role": "user", "content": ""}]}).to_string();
    let body = json!({"model": "auto", "messages": [{"role": "user", "content": "a".repeat(len - base.len())}]}).to_string();
    assert_eq!(body.len(), len);
    body
}

/// POSTs `body` to the chat endpoint, with a content length or (`chunked`) in 100-byte chunks.
async fn post_sized(gw: &Gateway, body: String, chunked: bool) -> reqwest::Response {
    if chunked {
        post_chat(gw, self::chunked(body.into_bytes(), 100)).await
    } else {
        post_chat(gw, body).await
    }
}

#[tokio::test]
async fn body_limit_is_inclusive_with_and_without_content_length() {
    let (mock, gw) = gateway(SMALL_LIMIT).await;
    for chunked in [false, true] {
        let at_limit = post_sized(&gw, request_of_len(1024), chunked).await;
        assert_eq!(
            at_limit.status(),
            200,
            "exactly the limit is accepted (chunked: {chunked})"
        );
        let over = post_sized(&gw, request_of_len(1025), chunked).await;
        expect_strict_error(over, 413, "invalid_request_error", "payload_too_large").await;
    }
    assert_eq!(
        mock.requests().len(),
        2,
        "only the requests within the limit reached the upstream"
    );
}

#[tokio::test]
async fn caller_request_id_is_echoed_on_errors() {
    let (_mock, gw) = gateway("").await;
    let response = gw
        .chat_with(
            json!({"model": "auto", "messages": []}),
            &[("x-request-id", "trace-abc-123")],
        )
        .await;
    assert_eq!(response.headers()["x-request-id"], "trace-abc-123");
    expect_invalid_request(response).await;
}

#[tokio::test]
async fn non_boolean_stream_is_400_naming_stream() {
    let (mock, gw) = gateway("").await;
    let request =
        json!({"model": "auto", "stream": "yes", "messages": [{"role": "user", "content": "hi"}]});
    let error = expect_invalid_request(gw.chat(request).await).await;
    assert_eq!(error["param"], "stream");
    assert!(mock.requests().is_empty());
}
