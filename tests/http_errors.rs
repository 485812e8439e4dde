//! Requests hyper itself refuses before the gateway sees them (a bad request line, headers
//! too large, two different `Content-Length`s) are answered with an OpenAI-shaped JSON body, not an
//! empty one (issue 10).

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `request` on a fresh connection and reads the answer until the gateway closes.
async fn exchange(gw: &Gateway, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(gw.api).await.unwrap();
    // Headers too large are refused mid-write: the rest of the write may fail.
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("answered and closed in time");
    String::from_utf8_lossy(&out).into_owned()
}

fn json_error(text: &str, status: &str, code: &str) {
    assert!(text.starts_with(&format!("HTTP/1.1 {status}")), "{text}");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let json: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(json["error"]["code"], code, "{text}");
    assert_eq!(json["error"]["type"], "invalid_request_error", "{text}");
    assert!(json["error"]["message"].is_string(), "{text}");
    assert!(json["error"].get("param").is_some(), "{text}");
}

#[tokio::test]
async fn hyper_refusals_have_openai_shaped_bodies() {
    let mock = MockUpstream::ok("fine").await;
    let gw = Gateway::with_openai_upstream(&mock, "").await;

    let text = exchange(&gw, b"THIS IS NOT HTTP\r\n\r\n").await;
    json_error(&text, "400", "bad_request");

    let conflicting = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {KEY}\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!"
    );
    let text = exchange(&gw, conflicting.as_bytes()).await;
    json_error(&text, "400", "bad_request");

    let huge = format!(
        "GET /v1/models HTTP/1.1\r\nhost: gw\r\nx-big: {}\r\n\r\n",
        "a".repeat(1024 * 1024)
    );
    let text = exchange(&gw, huge.as_bytes()).await;
    json_error(&text, "431", "request_header_fields_too_large");

    // Ordinary requests on the same gateway are untouched.
    let r = gw
        .chat(serde_json::json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(mock.count(), 1);
}

#[tokio::test]
async fn an_unknown_model_name_is_not_echoed_whole() {
    let mock = MockUpstream::start(|_| MockReply::json(serde_json::json!({}))).await;
    let gw = Gateway::with_openai_upstream(&mock, "").await;
    let name = format!("{}{}", "m".repeat(200), "x".repeat(20_000));
    let response = gw
        .chat(serde_json::json!({"model": name, "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(response.status(), 404);
    let text = response.text().await.unwrap();
    assert!(text.contains(&"m".repeat(200)), "{text}");
    assert!(!text.contains("xx"), "{text}");
    assert!(text.len() < 600, "{} bytes", text.len());
    // The same on the Anthropic endpoint, in its error shape.
    let response = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", KEY)
        .header("content-type", "application/json")
        .body(
            serde_json::json!({"model": name, "max_tokens": 5,
                "messages": [{"role": "user", "content": "hi"}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.len() < 400 && !message.contains("xx"), "{message}");
    assert!(mock.requests().is_empty());
}
