//! Streaming completions end to end: SSE passthrough and order, response headers, keep-alive
//! comments while the upstream is slow, no buffering, cancelling the upstream when the client
//! leaves, and usage chunks counted in metrics.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::time::Instant;

/// Waits up to 2 s for the gateway to have cancelled the upstream stream.
async fn wait_for_upstream_cancelled(mock: &MockUpstream) {
    mock.wait_for_cancelled(
        1,
        Duration::from_secs(2),
        "the upstream stream was not cancelled within 2 s",
    )
    .await;
}

/// Waits up to 2 s for `deliberate_requests_total` with `labels` (a client disconnect) to
/// reach 1.
async fn wait_for_disconnect_recorded(gw: &Gateway, labels: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while metrics_value(gw, "deliberate_requests_total", labels).await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "client_disconnected not recorded: {}",
            gw.metrics().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn chunks_pass_through_in_order_then_done() {
    let chunks = vec![chunk("Hel"), chunk("lo"), chunk(" world")];
    let reply_chunks = chunks.clone();
    let mock = MockUpstream::start(move |_| {
        MockReply::sse(reply_chunks.clone(), Duration::from_millis(20))
    })
    .await;
    let gw = Gateway::with_openai_upstream(&mock, "").await;
    let response = gw.chat(stream_request("fast")).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let request_id = headers["x-request-id"].clone();
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(headers["x-deliberate-tier"], "fast");
    assert_eq!(headers["x-deliberate-model"], "chat-model");
    assert!(headers.contains_key("x-deliberate-reason"));
    assert!(headers.contains_key("x-deliberate-score"));
    assert!(headers.contains_key("x-request-id"));
    let text = read_text(response).await;
    let events = sse_data(&text);
    assert_eq!(events.len(), 4, "three chunks and [DONE]: {text:?}");
    for (event, expected) in events.iter().zip(&chunks) {
        assert_eq!(
            &serde_json::from_str::<Value>(event).unwrap(),
            expected,
            "in order, unchanged"
        );
    }
    assert_eq!(events[3], "[DONE]");
    // Byte for byte: the client's body is the upstream's body.
    let upstream_body: String =
        chunks.iter().map(data_event).collect::<String>() + "data: [DONE]\n\n";
    assert_eq!(text, upstream_body);
    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].body["stream"], true);
    assert_eq!(requests[0].body["model"], "chat-model");
    assert_eq!(
        requests[0].headers["x-request-id"], request_id,
        "the upstream sees the same request id"
    );
    let ok = metrics_value(
        &gw,
        "deliberate_requests_total",
        &["model=\"chat-model\"", "outcome=\"ok\""],
    )
    .await;
    assert_eq!(ok, 1.0);
}

#[tokio::test]
async fn keepalives_flow_while_the_first_chunk_is_late() {
    let events = vec![
        (Duration::from_millis(700), data_event(&chunk("finally"))),
        (Duration::ZERO, "data: [DONE]\n\n".to_string()),
    ];
    let mock = MockUpstream::stream(events, StreamEnd::Close).await;
    let gw = Gateway::with_openai_upstream(
        &mock,
        "[tiers.fast]\nkeepalive_interval_ms = 100\nfirst_token_timeout_ms = 5000\n",
    )
    .await;
    let response = gw.chat(stream_request("fast")).await;
    assert_eq!(response.status(), 200);
    let text = read_text(response).await;
    let first_data = text.find("data:").expect("a data event");
    let before = &text[..first_data];
    let keepalives = before.matches(": keep-alive\n\n").count();
    assert!(
        keepalives >= 3,
        "keep-alive comments before the first data event: {text:?}"
    );
    assert_eq!(
        before,
        ": keep-alive\n\n".repeat(keepalives),
        "only keep-alives before data: {text:?}"
    );
    let events = sse_data(&text);
    assert_eq!(events.len(), 2, "{text:?}");
    assert_event(&events[0], chunk("finally"));
    assert_eq!(events[1], "[DONE]");
    assert!(
        text.ends_with("data: [DONE]\n\n"),
        "completes normally: {text:?}"
    );
}

#[tokio::test]
async fn response_starts_and_keepalives_flow_while_upstream_holds_its_head() {
    let mock = MockUpstream::late(Duration::from_millis(1200)).await;
    let gw = Gateway::with_openai_upstream(
        &mock,
        "[tiers.fast]\nkeepalive_interval_ms = 100\nfirst_token_timeout_ms = 5000\n",
    )
    .await;
    let started = Instant::now();
    let mut response = gw.chat(stream_request("fast")).await;
    let head_after = started.elapsed();
    assert_eq!(response.status(), 200);
    assert!(
        head_after < Duration::from_millis(700),
        "200 before the upstream answered: {head_after:?}"
    );
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(response.headers()["x-deliberate-tier"], "fast");
    // A keep-alive arrives while the upstream is still silent.
    let first = tokio::time::timeout(TEST_TIMEOUT, response.chunk())
        .await
        .unwrap()
        .unwrap()
        .expect("a first chunk");
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "keep-alive before the upstream answered"
    );
    assert!(first.starts_with(b": keep-alive\n\n"), "{first:?}");
    assert!(!first.windows(5).any(|w| w == b"data:"), "{first:?}");
    let rest = read_text(response).await;
    let text = String::from_utf8(first.to_vec()).unwrap() + &rest;
    let first_data = text.find("data:").expect("a data event");
    assert!(
        text[..first_data].matches(": keep-alive").count() >= 3,
        "{text:?}"
    );
    let events = sse_data(&text);
    assert_eq!(events.len(), 2, "{text:?}");
    assert_event(&events[0], chunk("late"));
    assert_eq!(events[1], "[DONE]");
}

#[tokio::test]
async fn first_event_reaches_the_client_before_the_upstream_finishes() {
    let events = vec![
        (Duration::ZERO, data_event(&chunk("now"))),
        (Duration::from_millis(1000), data_event(&chunk("later"))),
        (Duration::ZERO, "data: [DONE]\n\n".to_string()),
    ];
    let mock = MockUpstream::stream(events, StreamEnd::Close).await;
    let gw = Gateway::with_openai_upstream(&mock, "").await;
    let started = Instant::now();
    let mut response = gw.chat(stream_request("fast")).await;
    assert_eq!(response.status(), 200);
    let head = read_until_data(&mut response).await;
    let first_after = started.elapsed();
    assert!(
        first_after < Duration::from_millis(500),
        "first chunk not held back: {first_after:?}"
    );
    assert!(
        head.contains("\"now\"") && !head.contains("\"later\""),
        "{head:?}"
    );
    let text = head + &read_text(response).await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the rest came later"
    );
    let events = sse_data(&text);
    assert_eq!(events.len(), 3, "{text:?}");
    assert_event(&events[1], chunk("later"));
    assert_eq!(events[2], "[DONE]");
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_stream() {
    let events: Vec<(Duration, String)> = (0..200)
        .map(|i| {
            (
                Duration::from_millis(50),
                data_event(&chunk(&format!("t{i}"))),
            )
        })
        .collect();
    let mock = MockUpstream::stream(events, StreamEnd::Close).await;
    let gw = Gateway::with_openai_upstream(&mock, "").await;
    let mut response = gw.chat(stream_request("fast")).await;
    assert_eq!(response.status(), 200);
    read_until_data(&mut response).await;
    assert_eq!(mock.cancelled_streams(), 0);
    drop(response);
    wait_for_upstream_cancelled(&mock).await;
    assert_eq!(mock.cancelled_streams(), 1);
    let labels = [
        "tenant=\"acme\"",
        "model=\"chat-model\"",
        "outcome=\"client_disconnected\"",
    ];
    wait_for_disconnect_recorded(&gw, &labels).await;
    assert_eq!(
        metrics_value(&gw, "deliberate_requests_total", &labels).await,
        1.0
    );
    assert_eq!(
        metrics_value(&gw, "deliberate_requests_total", &["outcome=\"ok\""]).await,
        0.0
    );
    assert_eq!(
        metrics_value(&gw, "deliberate_in_flight_requests", &[]).await,
        0.0
    );
}

#[tokio::test]
async fn usage_chunk_passes_through_and_is_counted() {
    let usage = json!({
        "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    });
    let chunks = vec![chunk("a"), chunk("b"), usage.clone()];
    let mock =
        MockUpstream::start(move |_| MockReply::sse(chunks.clone(), Duration::from_millis(10)))
            .await;
    let gw = Gateway::with_openai_upstream(&mock, "").await;
    let mut request = stream_request("fast");
    request["stream_options"] = json!({"include_usage": true});
    let response = gw.chat(request).await;
    assert_eq!(response.status(), 200);
    let text = read_text(response).await;
    let events = sse_data(&text);
    assert_eq!(events.len(), 4, "{text:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&events[2]).unwrap(),
        usage,
        "usage chunk unchanged"
    );
    assert_eq!(events[3], "[DONE]");
    assert_eq!(
        mock.requests()[0].body["stream_options"]["include_usage"],
        true,
        "option forwarded"
    );
    let base = ["tenant=\"acme\"", "tier=\"fast\"", "model=\"chat-model\""];
    let tokens = |kind: &'static str| {
        let mut labels = base.to_vec();
        labels.push(kind);
        labels
    };
    assert_eq!(
        metrics_value(&gw, "deliberate_tokens_total", &tokens("kind=\"input\"")).await,
        11.0
    );
    assert_eq!(
        metrics_value(&gw, "deliberate_tokens_total", &tokens("kind=\"output\"")).await,
        7.0
    );
    assert_eq!(
        metrics_value(&gw, "deliberate_tokens_total", &base).await,
        18.0,
        "nothing else counted"
    );
}

#[tokio::test]
async fn client_disconnect_cancels_a_silent_upstream() {
    // One chunk, then nothing: the gateway writes nothing more (keep-alives are 10 s apart),
    // so it must notice the client leaving by itself.
    let events = vec![(Duration::ZERO, data_event(&chunk("only")))];
    let mock = MockUpstream::stream(events, StreamEnd::Hang).await;
    let gw = Gateway::with_openai_upstream(&mock, "").await;
    let mut response = gw.chat(stream_request("fast")).await;
    assert_eq!(response.status(), 200);
    read_until_data(&mut response).await;
    drop(response);
    wait_for_upstream_cancelled(&mock).await;
    let labels = ["model=\"chat-model\"", "outcome=\"client_disconnected\""];
    assert_eq!(
        metrics_value(&gw, "deliberate_requests_total", &labels).await,
        1.0
    );
}

#[tokio::test]
async fn client_leaving_while_upstream_holds_its_head_is_recorded_as_disconnect() {
    let mock = MockUpstream::late(Duration::from_secs(5)).await;
    let gw =
        Gateway::with_openai_upstream(&mock, "[tiers.fast]\nkeepalive_interval_ms = 100\n").await;
    let mut response = gw.chat(stream_request("fast")).await;
    assert_eq!(response.status(), 200);
    let first = tokio::time::timeout(TEST_TIMEOUT, response.chunk())
        .await
        .unwrap()
        .unwrap()
        .expect("a keep-alive");
    assert!(first.starts_with(b": keep-alive"), "{first:?}");
    drop(response);
    let labels = ["model=\"chat-model\"", "outcome=\"client_disconnected\""];
    wait_for_disconnect_recorded(&gw, &labels).await;
    assert_eq!(
        metrics_value(&gw, "deliberate_in_flight_requests", &[]).await,
        0.0
    );
}
