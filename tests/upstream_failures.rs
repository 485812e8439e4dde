//! Upstream failures as the client sees them: provider error statuses, unreachable providers,
//! first-token and total timeouts, and streams that break after the 200, plus the request's
//! `outcome` label in `deliberate_requests_total`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::time::Instant;

fn hi(stream: bool) -> Value {
    json!({"model": "fast", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

/// Fast-tier timeouts for stream tests: a short first-token deadline, keep-alives that never
/// come first, and total/idle deadlines far away.
const SHORT_FIRST_TOKEN: &str =
    "[tiers.fast]\nfirst_token_timeout_ms = 300\nkeepalive_interval_ms = 5000\n";

/// The `error` object of the single error event that ends `text`; also checks there is
/// exactly one error event, it is the last event, and no `[DONE]` follows a failure.
fn final_error_event(text: &str) -> Value {
    let events = sse_data(text);
    let errors: Vec<&String> = events.iter().filter(|e| e.contains("\"error\"")).collect();
    assert_eq!(errors.len(), 1, "exactly one error event in {text:?}");
    let last = events.last().expect("at least one event");
    assert_eq!(
        &last,
        errors.last().unwrap(),
        "the error event is the last event: {text:?}"
    );
    assert!(
        !events.iter().any(|e| e == "[DONE]"),
        "no [DONE] after a failure: {text:?}"
    );
    let value: Value =
        serde_json::from_str(last).unwrap_or_else(|e| panic!("error event is JSON ({e}): {last}"));
    for field in ["message", "type", "param", "code"] {
        assert!(
            value["error"].get(field).is_some(),
            "error.{field} in {last}"
        );
    }
    value["error"].clone()
}

/// `deliberate_requests_total` for the fast tier with this outcome.
async fn requests_with_outcome(gw: &Gateway, outcome: &str) -> f64 {
    metrics_value(
        gw,
        "deliberate_requests_total",
        &[
            "tenant=\"acme\"",
            "tier=\"fast\"",
            "model=\"chat-model\"",
            &format!("outcome=\"{outcome}\""),
        ],
    )
    .await
}

/// Asserts that exactly one request was recorded with `outcome`, none as `ok`, and that
/// nothing is left in flight.
async fn assert_outcome(gw: &Gateway, outcome: &str) {
    assert_eq!(
        requests_with_outcome(gw, outcome).await,
        1.0,
        "one request with outcome {outcome}"
    );
    assert_eq!(
        requests_with_outcome(gw, "ok").await,
        0.0,
        "no request counted as ok"
    );
    assert_eq!(
        metrics_value(gw, "deliberate_in_flight_requests", &[]).await,
        0.0,
        "nothing left in flight"
    );
}

/// An address on 127.0.0.1 where nothing listens (bound, then released).
async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// A gateway whose only provider points at a closed port.
async fn gateway_without_upstream() -> Gateway {
    Gateway::with_openai_at(closed_port().await, "").await
}

/// A mock that answers every request with an OpenAI error (`status`, `message`), and a
/// gateway in front of it.
async fn failing_upstream(status: u16, message: &str) -> (MockUpstream, Gateway) {
    let message = message.to_string();
    let mock = MockUpstream::start(move |_| MockReply::error(status, &message)).await;
    let gw = Gateway::with_openai_upstream(&mock, "").await;
    (mock, gw)
}

/// Sends `request` and returns the response with the time it took to arrive.
async fn timed_chat(gw: &Gateway, request: Value) -> (reqwest::Response, Duration) {
    let started = Instant::now();
    let response = gw.chat(request).await;
    (response, started.elapsed())
}

/// Sends a streaming request, checks it is answered 200, and returns the whole body with the
/// time it took to end.
async fn timed_stream(gw: &Gateway) -> (String, Duration) {
    let started = Instant::now();
    let response = gw.chat(hi(true)).await;
    assert_eq!(response.status(), 200);
    let text = read_text(response).await;
    (text, started.elapsed())
}

/// The final error event of `text` (see `final_error_event`), checked to have `code` and a
/// message mentioning `needle`.
fn expect_error_event(text: &str, code: &str, needle: &str) -> Value {
    let error = final_error_event(text);
    assert_eq!(error["code"], code);
    assert_message_contains(&error, needle);
    error
}

/// A mock that sends chunks `one` and `two` (20 ms apart), then the `extra` events, then ends
/// as `end` says; a gateway in front of it; and the body of one streaming request, checked to
/// be two chunks and one error event. Returns the gateway and the error.
async fn two_chunks_then(extra: Vec<(Duration, String)>, end: StreamEnd) -> (Gateway, Value) {
    let mut events = vec![
        (Duration::ZERO, data_event(&chunk("one"))),
        (Duration::from_millis(20), data_event(&chunk("two"))),
    ];
    events.extend(extra);
    let mock = MockUpstream::stream(events, end).await;
    let gw = Gateway::with_openai_upstream(&mock, "").await;
    let response = gw.chat(hi(true)).await;
    assert_eq!(response.status(), 200);
    let text = read_text(response).await;
    let events = sse_data(&text);
    assert_eq!(events.len(), 3, "two chunks and one error event: {text:?}");
    assert_event(&events[0], chunk("one"));
    assert_event(&events[1], chunk("two"));
    let error = final_error_event(&text);
    assert_eq!(error["code"], "upstream_unavailable");
    (gw, error)
}

#[tokio::test]
async fn upstream_500_is_502_with_the_upstream_message() {
    let (mock, gw) = failing_upstream(500, "the model melted").await;
    let error = expect_error(
        gw.chat(hi(false)).await,
        502,
        "upstream_error",
        "upstream_status",
    )
    .await;
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("the model melted"),
        "upstream message kept: {message}"
    );
    assert!(
        message.contains("500"),
        "upstream status mentioned: {message}"
    );
    // A 500 is retryable: the first attempt plus `max_retries` (default 2) retries.
    assert_eq!(mock.requests().len(), 3);
    assert_outcome(&gw, "upstream_status").await;
}

#[tokio::test]
async fn upstream_500_on_a_stream_is_502() {
    let (_mock, gw) = failing_upstream(500, "the model melted").await;
    let error = expect_error(
        gw.chat(hi(true)).await,
        502,
        "upstream_error",
        "upstream_status",
    )
    .await;
    assert_message_contains(&error, "the model melted");
    assert_outcome(&gw, "upstream_status").await;
}

#[tokio::test]
async fn upstream_429_stays_429() {
    let (_mock, gw) = failing_upstream(429, "Rate limit reached").await;
    let error = expect_error(
        gw.chat(hi(false)).await,
        429,
        "rate_limit_error",
        "upstream_status",
    )
    .await;
    assert_message_contains(&error, "Rate limit reached");
    assert_outcome(&gw, "upstream_status").await;
}

#[tokio::test]
async fn connection_refused_is_502_upstream_unavailable() {
    let gw = gateway_without_upstream().await;
    let error = expect_error(
        gw.chat(hi(false)).await,
        502,
        "upstream_error",
        "upstream_unavailable",
    )
    .await;
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("mock"), "names the provider: {message}");
    assert_outcome(&gw, "upstream_unavailable").await;
}

#[tokio::test]
async fn connection_refused_on_a_stream_is_502_upstream_unavailable() {
    let gw = gateway_without_upstream().await;
    expect_error(
        gw.chat(hi(true)).await,
        502,
        "upstream_error",
        "upstream_unavailable",
    )
    .await;
    assert_outcome(&gw, "upstream_unavailable").await;
}

#[tokio::test]
async fn silent_stream_ends_with_first_token_timeout_event() {
    // Headers at once, then nothing.
    let mock = MockUpstream::stream(vec![], StreamEnd::Hang).await;
    let gw = Gateway::with_openai_upstream(&mock, SHORT_FIRST_TOKEN).await;
    let started = Instant::now();
    let response = gw.chat(hi(true)).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = read_text(response).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(250),
        "not before the deadline: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "soon after the deadline: {elapsed:?}"
    );
    assert_eq!(sse_data(&text).len(), 1, "only the error event: {text:?}");
    let error = expect_error_event(&text, "upstream_timeout", "first-token");
    assert_eq!(error["type"], "timeout_error");
    assert_outcome(&gw, "upstream_timeout").await;
    // The gateway hung up on the silent upstream.
    wait_for_cancelled(&mock, 1).await;
}

#[tokio::test]
async fn upstream_holding_its_head_past_first_token_deadline_is_504() {
    let mock = MockUpstream::late(Duration::from_secs(3)).await;
    let gw = Gateway::with_openai_upstream(&mock, SHORT_FIRST_TOKEN).await;
    let (response, elapsed) = timed_chat(&gw, hi(true)).await;
    assert!(
        elapsed < Duration::from_millis(2000),
        "did not wait for the upstream: {elapsed:?}"
    );
    let error = expect_error(response, 504, "timeout_error", "upstream_timeout").await;
    assert_message_contains(&error, "first-token");
    assert_outcome(&gw, "upstream_timeout").await;
}

#[tokio::test]
async fn non_streaming_total_timeout_is_504() {
    let mock = MockUpstream::start(|r| {
        MockReply::Delay(
            Duration::from_secs(3),
            Box::new(MockReply::json(completion(
                r.body["model"].as_str().unwrap_or(""),
                "late",
            ))),
        )
    })
    .await;
    let gw = Gateway::with_openai_upstream(
        &mock,
        "[tiers.fast]\nfirst_token_timeout_ms = 300\ntotal_timeout_ms = 300\n",
    )
    .await;
    let (response, elapsed) = timed_chat(&gw, hi(false)).await;
    assert!(
        elapsed >= Duration::from_millis(250),
        "not before the deadline: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(2000),
        "did not wait for the upstream: {elapsed:?}"
    );
    let error = expect_error(response, 504, "timeout_error", "upstream_timeout").await;
    assert_message_contains(&error, "total");
    assert_outcome(&gw, "upstream_timeout").await;
}

#[tokio::test]
async fn stream_broken_mid_way_ends_with_one_error_event() {
    // The mock's hyper server discards what is still buffered when its body fails, so
    // give chunk two time to go out; this trailing comment may or may not arrive.
    let padding = vec![(Duration::from_millis(100), ": padding\n\n".to_string())];
    let (gw, error) = two_chunks_then(padding, StreamEnd::Abort).await;
    assert_eq!(error["type"], "upstream_error");
    assert_outcome(&gw, "upstream_unavailable").await;
}

#[tokio::test]
async fn stream_closed_without_done_ends_with_one_error_event() {
    let (gw, error) = two_chunks_then(vec![], StreamEnd::Close).await;
    assert_message_contains(&error, "[DONE]");
    assert_outcome(&gw, "upstream_unavailable").await;
}

/// Waits up to 3 s for the gateway to have cancelled `n` upstream streams.
async fn wait_for_cancelled(mock: &MockUpstream, n: usize) {
    mock.wait_for_cancelled(
        n,
        Duration::from_secs(3),
        "upstream stream was not cancelled in time",
    )
    .await;
}

#[tokio::test]
async fn upstream_400_stays_400_with_the_upstream_message() {
    let (_mock, gw) = failing_upstream(400, "Invalid value for 'tools'").await;
    let error = expect_error(
        gw.chat(hi(false)).await,
        400,
        "invalid_request_error",
        "upstream_status",
    )
    .await;
    assert_message_contains(&error, "Invalid value for 'tools'");
    assert_outcome(&gw, "upstream_status").await;
}

#[tokio::test]
async fn upstream_silent_past_first_token_after_the_200_ends_with_timeout_event() {
    // Keep-alives are due before the first-token deadline, so the 200 goes out first.
    let mock = MockUpstream::late(Duration::from_secs(3)).await;
    let gw = Gateway::with_openai_upstream(
        &mock,
        "[tiers.fast]\nfirst_token_timeout_ms = 500\nkeepalive_interval_ms = 100\n",
    )
    .await;
    let (text, elapsed) = timed_stream(&gw).await;
    assert!(
        elapsed >= Duration::from_millis(450),
        "not before the deadline: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(2500),
        "did not wait for the upstream: {elapsed:?}"
    );
    assert!(
        text.starts_with(": keep-alive\n\n"),
        "keep-alives while waiting: {text:?}"
    );
    assert_eq!(sse_data(&text).len(), 1, "only the error event: {text:?}");
    expect_error_event(&text, "upstream_timeout", "first-token");
    assert_outcome(&gw, "upstream_timeout").await;
}

#[tokio::test]
async fn stalled_stream_ends_with_idle_timeout_event() {
    let events = vec![(Duration::ZERO, data_event(&chunk("one")))];
    let mock = MockUpstream::stream(events, StreamEnd::Hang).await;
    let gw = Gateway::with_openai_upstream(
        &mock,
        "[tiers.fast]\nidle_timeout_ms = 300\nkeepalive_interval_ms = 5000\n",
    )
    .await;
    let (text, elapsed) = timed_stream(&gw).await;
    assert!(
        elapsed >= Duration::from_millis(250),
        "not before the idle deadline: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    let events = sse_data(&text);
    assert_eq!(events.len(), 2, "one chunk and one error event: {text:?}");
    assert_event(&events[0], chunk("one"));
    expect_error_event(&text, "upstream_timeout", "idle");
    assert_outcome(&gw, "upstream_timeout").await;
    wait_for_cancelled(&mock, 1).await;
}

#[tokio::test]
async fn stream_past_total_deadline_ends_with_timeout_event() {
    let events: Vec<(Duration, String)> = (0..40)
        .map(|i| {
            (
                Duration::from_millis(50),
                data_event(&chunk(&format!("t{i}"))),
            )
        })
        .collect();
    let mock = MockUpstream::stream(events, StreamEnd::Close).await;
    let gw = Gateway::with_openai_upstream(
        &mock,
        "[tiers.fast]\nfirst_token_timeout_ms = 300\ntotal_timeout_ms = 600\n",
    )
    .await;
    let (text, elapsed) = timed_stream(&gw).await;
    assert!(
        elapsed >= Duration::from_millis(550),
        "not before the total deadline: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(1800),
        "the 2 s stream was cut: {elapsed:?}"
    );
    let events = sse_data(&text);
    assert!(
        events.len() >= 4 && events.len() < 41,
        "some chunks, then the error: {text:?}"
    );
    for (i, event) in events[..events.len() - 1].iter().enumerate() {
        assert_event(event, chunk(&format!("t{i}")));
    }
    expect_error_event(&text, "upstream_timeout", "total");
    assert_outcome(&gw, "upstream_timeout").await;
    wait_for_cancelled(&mock, 1).await;
}

#[tokio::test]
async fn upstream_comments_do_not_count_as_the_first_token() {
    // A stuck provider that only sends SSE comments (its own keep-alives) has not produced a
    // token: the first-token deadline still applies.
    let mut events: Vec<(Duration, String)> = (0..30)
        .map(|_| {
            (
                Duration::from_millis(100),
                ": still processing\n\n".to_string(),
            )
        })
        .collect();
    events.push((Duration::ZERO, data_event(&chunk("too late"))));
    events.push((Duration::ZERO, "data: [DONE]\n\n".to_string()));
    let mock = MockUpstream::stream(events, StreamEnd::Close).await;
    let gw = Gateway::with_openai_upstream(&mock, SHORT_FIRST_TOKEN).await;
    let (text, elapsed) = timed_stream(&gw).await;
    assert!(
        elapsed < Duration::from_millis(1500),
        "cut at the first-token deadline, not after 3 s: {elapsed:?}"
    );
    assert_eq!(sse_data(&text).len(), 1, "only the error event: {text:?}");
    expect_error_event(&text, "upstream_timeout", "first-token");
    assert_outcome(&gw, "upstream_timeout").await;
    // Nor was a comment recorded as the time to first token.
    let metrics = gw.metrics().await;
    assert!(
        !has_series(&metrics, "deliberate_time_to_first_token_seconds_count"),
        "no time to first token recorded"
    );
}
