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

/// Checks status, headers and body shape of an error response; returns the `error` object.
async fn expect_error(
    response: reqwest::Response,
    status: u16,
    error_type: &str,
    code: &str,
) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    assert!(
        response.headers().contains_key("x-request-id"),
        "x-request-id on errors"
    );
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/json"),
        "content-type: {content_type}"
    );
    let text = read_text(response).await;
    let body: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("error body is JSON ({e}): {text}"));
    let error = body["error"].clone();
    assert_eq!(error["type"], error_type, "error.type in {text}");
    assert_eq!(error["code"], code, "error.code in {text}");
    assert!(error["message"].is_string(), "error.message in {text}");
    assert!(error.get("param").is_some(), "error.param in {text}");
    error
}

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
    let metrics = tokio::time::timeout(TEST_TIMEOUT, gw.metrics())
        .await
        .expect("metrics in time");
    metric_value(
        &metrics,
        "deliberate_requests_total",
        &[
            "tenant=\"acme\"",
            "tier=\"fast\"",
            "model=\"chat-model\"",
            &format!("outcome=\"{outcome}\""),
        ],
    )
}

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
    let metrics = tokio::time::timeout(TEST_TIMEOUT, gw.metrics())
        .await
        .expect("metrics in time");
    assert_eq!(
        metric_value(&metrics, "deliberate_in_flight_requests", &[]),
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

#[tokio::test]
async fn upstream_500_is_502_with_the_upstream_message() {
    let mock = MockUpstream::start(|_| MockReply::error(500, "the model melted")).await;
    let gw = Gateway::with_openai_upstream(&mock, "").await;
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
    assert_eq!(mock.requests().len(), 1);
    assert_outcome(&gw, "upstream_status").await;
}

#[tokio::test]
async fn upstream_500_on_a_stream_is_502() {
    let mock = MockUpstream::start(|_| MockReply::error(500, "the model melted")).await;
    let gw = Gateway::with_openai_upstream(&mock, "").await;
    let error = expect_error(
        gw.chat(hi(true)).await,
        502,
        "upstream_error",
        "upstream_status",
    )
    .await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("the model melted"),
        "{error}"
    );
    assert_outcome(&gw, "upstream_status").await;
}

#[tokio::test]
async fn upstream_429_stays_429() {
    let mock = MockUpstream::start(|_| MockReply::error(429, "Rate limit reached")).await;
    let gw = Gateway::with_openai_upstream(&mock, "").await;
    let error = expect_error(
        gw.chat(hi(false)).await,
        429,
        "rate_limit_error",
        "upstream_status",
    )
    .await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("Rate limit reached"),
        "{error}"
    );
    assert_outcome(&gw, "upstream_status").await;
}

#[tokio::test]
async fn connection_refused_is_502_upstream_unavailable() {
    let config = openai_config(closed_port().await, "");
    let gw = Gateway::start(
        &config,
        &[(
            "acme",
            tenant_toml("acme", KEY, "chat-model", "think-model", ""),
        )],
    )
    .await;
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
    let config = openai_config(closed_port().await, "");
    let gw = Gateway::start(
        &config,
        &[(
            "acme",
            tenant_toml("acme", KEY, "chat-model", "think-model", ""),
        )],
    )
    .await;
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
    let mock = MockUpstream::start(|_| MockReply::Stream {
        events: vec![],
        end: StreamEnd::Hang,
    })
    .await;
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
    let error = final_error_event(&text);
    assert_eq!(sse_data(&text).len(), 1, "only the error event: {text:?}");
    assert_eq!(error["code"], "upstream_timeout");
    assert_eq!(error["type"], "timeout_error");
    assert!(
        error["message"].as_str().unwrap().contains("first-token"),
        "{error}"
    );
    assert_outcome(&gw, "upstream_timeout").await;
    // The gateway hung up on the silent upstream.
    wait_for_cancelled(&mock, 1).await;
}

#[tokio::test]
async fn upstream_holding_its_head_past_first_token_deadline_is_504() {
    let mock = MockUpstream::start(|_| {
        MockReply::Delay(
            Duration::from_secs(3),
            Box::new(MockReply::sse(vec![chunk("late")], Duration::ZERO)),
        )
    })
    .await;
    let gw = Gateway::with_openai_upstream(&mock, SHORT_FIRST_TOKEN).await;
    let started = Instant::now();
    let response = gw.chat(hi(true)).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(2000),
        "did not wait for the upstream: {elapsed:?}"
    );
    let error = expect_error(response, 504, "timeout_error", "upstream_timeout").await;
    assert!(
        error["message"].as_str().unwrap().contains("first-token"),
        "{error}"
    );
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
    let started = Instant::now();
    let response = gw.chat(hi(false)).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(250),
        "not before the deadline: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(2000),
        "did not wait for the upstream: {elapsed:?}"
    );
    let error = expect_error(response, 504, "timeout_error", "upstream_timeout").await;
    assert!(
        error["message"].as_str().unwrap().contains("total"),
        "{error}"
    );
    assert_outcome(&gw, "upstream_timeout").await;
}

#[tokio::test]
async fn stream_broken_mid_way_ends_with_one_error_event() {
    let events = vec![
        (Duration::ZERO, format!("data: {}\n\n", chunk("one"))),
        (
            Duration::from_millis(20),
            format!("data: {}\n\n", chunk("two")),
        ),
        // The mock's hyper server discards what is still buffered when its body fails, so
        // give chunk two time to go out; this trailing comment may or may not arrive.
        (Duration::from_millis(100), ": padding\n\n".to_string()),
    ];
    let mock = MockUpstream::start(move |_| MockReply::Stream {
        events: events.clone(),
        end: StreamEnd::Abort,
    })
    .await;
    let gw = Gateway::with_openai_upstream(&mock, "").await;
    let response = gw.chat(hi(true)).await;
    assert_eq!(response.status(), 200);
    let text = read_text(response).await;
    let events = sse_data(&text);
    assert_eq!(events.len(), 3, "two chunks and one error event: {text:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&events[0]).unwrap(),
        chunk("one")
    );
    assert_eq!(
        serde_json::from_str::<Value>(&events[1]).unwrap(),
        chunk("two")
    );
    let error = final_error_event(&text);
    assert_eq!(error["code"], "upstream_unavailable");
    assert_eq!(error["type"], "upstream_error");
    assert_outcome(&gw, "upstream_unavailable").await;
}

#[tokio::test]
async fn stream_closed_without_done_ends_with_one_error_event() {
    let events = vec![
        (Duration::ZERO, format!("data: {}\n\n", chunk("one"))),
        (
            Duration::from_millis(20),
            format!("data: {}\n\n", chunk("two")),
        ),
    ];
    let mock = MockUpstream::start(move |_| MockReply::Stream {
        events: events.clone(),
        end: StreamEnd::Close,
    })
    .await;
    let gw = Gateway::with_openai_upstream(&mock, "").await;
    let response = gw.chat(hi(true)).await;
    assert_eq!(response.status(), 200);
    let text = read_text(response).await;
    let events = sse_data(&text);
    assert_eq!(events.len(), 3, "two chunks and one error event: {text:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&events[0]).unwrap(),
        chunk("one")
    );
    assert_eq!(
        serde_json::from_str::<Value>(&events[1]).unwrap(),
        chunk("two")
    );
    let error = final_error_event(&text);
    assert_eq!(error["code"], "upstream_unavailable");
    assert!(
        error["message"].as_str().unwrap().contains("[DONE]"),
        "{error}"
    );
    assert_outcome(&gw, "upstream_unavailable").await;
}

async fn wait_for_cancelled(mock: &MockUpstream, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while mock.cancelled_streams() < n {
        assert!(
            Instant::now() < deadline,
            "upstream stream was not cancelled in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn upstream_400_stays_400_with_the_upstream_message() {
    let mock = MockUpstream::start(|_| MockReply::error(400, "Invalid value for 'tools'")).await;
    let gw = Gateway::with_openai_upstream(&mock, "").await;
    let error = expect_error(
        gw.chat(hi(false)).await,
        400,
        "invalid_request_error",
        "upstream_status",
    )
    .await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("Invalid value for 'tools'"),
        "{error}"
    );
    assert_outcome(&gw, "upstream_status").await;
}

#[tokio::test]
async fn upstream_silent_past_first_token_after_the_200_ends_with_timeout_event() {
    // Keep-alives are due before the first-token deadline, so the 200 goes out first.
    let mock = MockUpstream::start(|_| {
        MockReply::Delay(
            Duration::from_secs(3),
            Box::new(MockReply::sse(vec![chunk("late")], Duration::ZERO)),
        )
    })
    .await;
    let gw = Gateway::with_openai_upstream(
        &mock,
        "[tiers.fast]\nfirst_token_timeout_ms = 500\nkeepalive_interval_ms = 100\n",
    )
    .await;
    let started = Instant::now();
    let response = gw.chat(hi(true)).await;
    assert_eq!(response.status(), 200);
    let text = read_text(response).await;
    let elapsed = started.elapsed();
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
    let error = final_error_event(&text);
    assert_eq!(error["code"], "upstream_timeout");
    assert!(
        error["message"].as_str().unwrap().contains("first-token"),
        "{error}"
    );
    assert_outcome(&gw, "upstream_timeout").await;
}

#[tokio::test]
async fn stalled_stream_ends_with_idle_timeout_event() {
    let events = vec![(Duration::ZERO, format!("data: {}\n\n", chunk("one")))];
    let mock = MockUpstream::start(move |_| MockReply::Stream {
        events: events.clone(),
        end: StreamEnd::Hang,
    })
    .await;
    let gw = Gateway::with_openai_upstream(
        &mock,
        "[tiers.fast]\nidle_timeout_ms = 300\nkeepalive_interval_ms = 5000\n",
    )
    .await;
    let started = Instant::now();
    let response = gw.chat(hi(true)).await;
    assert_eq!(response.status(), 200);
    let text = read_text(response).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(250),
        "not before the idle deadline: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    let events = sse_data(&text);
    assert_eq!(events.len(), 2, "one chunk and one error event: {text:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&events[0]).unwrap(),
        chunk("one")
    );
    let error = final_error_event(&text);
    assert_eq!(error["code"], "upstream_timeout");
    assert!(
        error["message"].as_str().unwrap().contains("idle"),
        "{error}"
    );
    assert_outcome(&gw, "upstream_timeout").await;
    wait_for_cancelled(&mock, 1).await;
}

#[tokio::test]
async fn stream_past_total_deadline_ends_with_timeout_event() {
    let events: Vec<(Duration, String)> = (0..40)
        .map(|i| {
            (
                Duration::from_millis(50),
                format!("data: {}\n\n", chunk(&format!("t{i}"))),
            )
        })
        .collect();
    let mock = MockUpstream::start(move |_| MockReply::Stream {
        events: events.clone(),
        end: StreamEnd::Close,
    })
    .await;
    let gw = Gateway::with_openai_upstream(
        &mock,
        "[tiers.fast]\nfirst_token_timeout_ms = 300\ntotal_timeout_ms = 600\n",
    )
    .await;
    let started = Instant::now();
    let response = gw.chat(hi(true)).await;
    assert_eq!(response.status(), 200);
    let text = read_text(response).await;
    let elapsed = started.elapsed();
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
        assert_eq!(
            serde_json::from_str::<Value>(event).unwrap(),
            chunk(&format!("t{i}"))
        );
    }
    let error = final_error_event(&text);
    assert_eq!(error["code"], "upstream_timeout");
    assert!(
        error["message"].as_str().unwrap().contains("total"),
        "{error}"
    );
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
    events.push((Duration::ZERO, format!("data: {}\n\n", chunk("too late"))));
    events.push((Duration::ZERO, "data: [DONE]\n\n".to_string()));
    let mock = MockUpstream::start(move |_| MockReply::Stream {
        events: events.clone(),
        end: StreamEnd::Close,
    })
    .await;
    let gw = Gateway::with_openai_upstream(&mock, SHORT_FIRST_TOKEN).await;
    let started = Instant::now();
    let response = gw.chat(hi(true)).await;
    assert_eq!(response.status(), 200);
    let text = read_text(response).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(1500),
        "cut at the first-token deadline, not after 3 s: {elapsed:?}"
    );
    assert_eq!(sse_data(&text).len(), 1, "only the error event: {text:?}");
    let error = final_error_event(&text);
    assert_eq!(error["code"], "upstream_timeout");
    assert!(
        error["message"].as_str().unwrap().contains("first-token"),
        "{error}"
    );
    assert_outcome(&gw, "upstream_timeout").await;
    // Nor was a comment recorded as the time to first token.
    let metrics = gw.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "deliberate_time_to_first_token_seconds_count",
            &[]
        ),
        0.0
    );
}
