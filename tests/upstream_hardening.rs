//! A misbehaving provider cannot take a model out or corrupt what the client sees: a
//! `Retry-After` is capped (and cleared by a reload), an oversize event or a stream answered
//! with something that is not `text/event-stream` ends in one error (never a clean `[DONE]`,
//! never counted `ok`), and a stream that failed before its first token is not billed.
//! Plus the numbers the operator reads: small budget limits and f32 settings.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::time::Instant;

/// Every test is bounded as a whole, not only per request.
async fn bounded<F: std::future::Future<Output = ()>>(test: F) {
    tokio::time::timeout(Duration::from_secs(30), test)
        .await
        .expect("test finished in time");
}

fn hi(stream: bool) -> Value {
    json!({"model": "fast", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

/// `deliberate_requests_total` of `chat-model` with this outcome.
async fn outcome_count(gw: &Gateway, outcome: &str) -> f64 {
    let labels = [
        "model=\"chat-model\"".to_string(),
        format!("outcome=\"{outcome}\""),
    ];
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    metrics_value(gw, "deliberate_requests_total", &labels).await
}

/// The stream ended with exactly one error event with `code`, last, and no `[DONE]`; no
/// event is larger than `max_event` (nothing half-framed was relayed).
fn ends_with_one_error(text: &str, code: &str, max_event: usize) -> Value {
    let events = sse_data(text);
    assert!(
        !events.iter().any(|e| e == "[DONE]"),
        "no [DONE]: {:.300}",
        text
    );
    assert!(
        events.iter().all(|e| e.len() <= max_event),
        "an oversize or corrupted event was relayed ({} bytes)",
        text.len()
    );
    let errors: Vec<&String> = events.iter().filter(|e| e.contains("\"error\"")).collect();
    assert_eq!(errors.len(), 1, "one error event: {:.300}", text);
    assert_eq!(events.last(), errors.last().copied(), "the error is last");
    let error: Value = serde_json::from_str(errors[0]).expect("the error event is JSON");
    assert_eq!(error["error"]["code"], code, "{error}");
    error
}

// --- Retry-After -------------------------------------------------------------------------

#[tokio::test]
async fn a_huge_retry_after_is_capped_so_later_requests_still_reach_the_provider() {
    bounded(async {
        let mock = MockUpstream::failing_first(
            1,
            || MockReply::retry_after(1_000_000_000, MockReply::error(429, "slow down")),
            || MockReply::json(completion("chat-model", "back again")),
        )
        .await;
        let extra = "[resilience]\nmax_retries = 0\nmax_retry_after_ms = 300\n";
        let gw = Gateway::with_openai_upstream(&mock, extra).await;
        let first = gw.chat(hi(false)).await;
        assert_eq!(first.status(), 429);
        assert_eq!(
            first.headers()["retry-after"],
            "1",
            "the client is told the capped wait, not a billion seconds"
        );
        let started = Instant::now();
        let second = gw.chat(hi(false)).await;
        assert_eq!(second.status(), 200, "{}", read_text(second).await);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(mock.count(), 2, "the second request reached the provider");
    })
    .await;
}

#[tokio::test]
async fn retry_after_u64_max_does_not_panic_and_is_held_no_longer_than_an_open_breaker() {
    bounded(async {
        let mock = MockUpstream::failing_first(
            1,
            || {
                MockReply::WithHeaders(
                    vec![("retry-after", u64::MAX.to_string())],
                    Box::new(MockReply::error(429, "slow down")),
                )
            },
            || MockReply::json(completion("chat-model", "back again")),
        )
        .await;
        // max_retry_after_ms stays at its default (60 s); the breaker's 300 ms decide.
        let extra = "[resilience]\nmax_retries = 0\nbreaker_open_ms = 300\n";
        let gw = Gateway::with_openai_upstream(&mock, extra).await;
        let error = expect_error(
            gw.chat(hi(false)).await,
            429,
            "rate_limit_error",
            "upstream_status",
        )
        .await;
        assert_message_contains(&error, "slow down");
        let second = gw.chat(hi(false)).await;
        assert_eq!(second.status(), 200);
        assert_eq!(mock.count(), 2);
        assert_eq!(outcome_count(&gw, "internal_error").await, 0.0);
        assert_eq!(outcome_count(&gw, "ok").await, 1.0, "the family exists");
    })
    .await;
}

#[tokio::test]
async fn a_reload_clears_a_deployment_held_by_retry_after() {
    bounded(async {
        let mock = MockUpstream::failing_first(
            1,
            || MockReply::retry_after(3600, MockReply::error(429, "come back in an hour")),
            || MockReply::json(completion("chat-model", "after the reload")),
        )
        .await;
        let (var, token) = admin_token("retry_after_reload");
        let extra = format!(
            "[resilience]\nmax_retries = 0\nbreaker_open_ms = 3600000\n\
             [tiers.fast]\nfirst_token_timeout_ms = 3000\ntotal_timeout_ms = 3000\n\
             [server]\nadmin_token_env = \"{var}\"\nreload_poll_ms = 0\n"
        );
        let config = openai_config(mock.addr, &extra);
        let tenant = tenant_toml("acme", KEY, "chat-model", "think-model", "");
        let gw = Gateway::start_reloadable(&config, &[("acme", tenant)]).await;
        assert_eq!(gw.chat(hi(false)).await.status(), 429);
        // Held (capped at the default 60 s), past this request's deadline: refused
        // without a call.
        let held = gw.chat(hi(false)).await;
        assert_eq!(held.status(), 502);
        assert_eq!(mock.count(), 1);
        let (status, _) = gw.admin_reload(&token).await;
        assert_eq!(status, 200);
        let after = gw.chat(hi(false)).await;
        assert_eq!(after.status(), 200, "the reload cleared the hold");
        assert_eq!(mock.count(), 2);
    })
    .await;
}

// --- Stream framing and content type ------------------------------------------------------

/// Fast-tier timing: keep-alives every `keepalive_ms`, deadlines far away.
fn timing(keepalive_ms: u64) -> String {
    format!("[tiers.fast]\nkeepalive_interval_ms = {keepalive_ms}\n")
}

#[tokio::test]
async fn an_oversize_data_line_ends_the_stream_with_one_error_event() {
    bounded(async {
        let huge = format!("data: {}\n\n", "a".repeat(5 * 1024 * 1024));
        let events = vec![
            (Duration::ZERO, data_event(&chunk("before"))),
            (Duration::from_millis(20), huge),
            (Duration::ZERO, "data: [DONE]\n\n".to_string()),
        ];
        let mock = MockUpstream::stream(events, StreamEnd::Close).await;
        let gw = Gateway::with_openai_upstream(&mock, &timing(5000)).await;
        let response = gw.chat(hi(true)).await;
        assert_eq!(response.status(), 200);
        let text = read_text(response).await;
        let error = ends_with_one_error(&text, "upstream_invalid", 64 * 1024);
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("size limit"),
            "{error}"
        );
        assert!(
            sse_data(&text)[0].contains("before"),
            "complete events before it pass"
        );
        assert_eq!(outcome_count(&gw, "upstream_invalid").await, 1.0);
        assert_eq!(outcome_count(&gw, "ok").await, 0.0);
    })
    .await;
}

/// A provider that answers a stream request with `bytes` of JSON spaces, after `delay`.
async fn json_spaces_upstream(bytes: usize, delay: Duration) -> MockUpstream {
    MockUpstream::start(move |_| {
        MockReply::Delay(
            delay,
            Box::new(MockReply::Json {
                status: 200,
                body: " ".repeat(bytes),
            }),
        )
    })
    .await
}

#[tokio::test]
async fn a_stream_answered_with_json_is_an_error_not_relayed() {
    bounded(async {
        let mock = json_spaces_upstream(8 * 1024 * 1024, Duration::ZERO).await;
        let gw = Gateway::with_openai_upstream(&mock, &timing(5000)).await;
        let response = gw.chat(hi(true)).await;
        // The head had not gone out: the status can still say what happened.
        let error = expect_error(response, 502, "upstream_error", "upstream_invalid").await;
        assert_message_contains(&error, "application/json");
        assert_eq!(outcome_count(&gw, "upstream_invalid").await, 1.0);
        assert_eq!(outcome_count(&gw, "ok").await, 0.0);
    })
    .await;
}

#[tokio::test]
async fn a_late_json_answer_to_a_stream_after_the_200_ends_with_one_error_event() {
    bounded(async {
        // The head comes after the first keep-alive: the 200 is already out.
        let mock = json_spaces_upstream(8 * 1024 * 1024, Duration::from_millis(400)).await;
        let gw = Gateway::with_openai_upstream(&mock, &timing(100)).await;
        let response = gw.chat(hi(true)).await;
        assert_eq!(response.status(), 200);
        let text = read_text(response).await;
        assert!(
            text.len() < 64 * 1024,
            "the JSON body was not relayed ({} bytes)",
            text.len()
        );
        let error = ends_with_one_error(&text, "upstream_invalid", 4096);
        assert!(error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("text/event-stream"));
        assert_eq!(outcome_count(&gw, "upstream_invalid").await, 1.0);
        assert_eq!(outcome_count(&gw, "ok").await, 0.0);
    })
    .await;
}

// --- Billing -------------------------------------------------------------------------------

#[tokio::test]
async fn a_stream_that_failed_before_its_first_token_is_not_billed() {
    bounded(async {
        // First request: a stream without usage (billed from an estimate, as before);
        // second: the 200 goes out, then nothing until the first-token deadline.
        let seen = std::sync::atomic::AtomicUsize::new(0);
        let mock = MockUpstream::start(move |_| {
            if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                MockReply::sse(vec![chunk("Hello")], Duration::ZERO)
            } else {
                MockReply::Stream {
                    events: vec![],
                    end: StreamEnd::Hang,
                }
            }
        })
        .await;
        let extra = "[tiers.fast]\nfirst_token_timeout_ms = 300\nkeepalive_interval_ms = 5000\n";
        let gw = Gateway::with_openai_upstream(&mock, extra).await;
        let ok = gw.chat(hi(true)).await;
        assert!(read_text(ok).await.contains("Hello"));
        let estimated =
            |m: &str| metric_value(m, "deliberate_cost_estimated_total", &["tenant=\"acme\""]);
        let cost = |m: &str| metric_value(m, "deliberate_cost_usd_total", &["tenant=\"acme\""]);
        let before = gw.metrics().await;
        assert_eq!(
            estimated(&before),
            1.0,
            "the answered stream was billed an estimate"
        );
        let spent = cost(&before);
        assert!(spent > 0.0);
        let failed = gw.chat(hi(true)).await;
        assert_eq!(failed.status(), 200);
        let text = read_text(failed).await;
        ends_with_one_error(&text, "upstream_timeout", 4096);
        let after = gw.metrics().await;
        assert_eq!(outcome_count(&gw, "upstream_timeout").await, 1.0);
        assert_eq!(
            estimated(&after),
            1.0,
            "no estimate billed for a stream with no output"
        );
        assert_eq!(cost(&after), spent, "nothing billed");
    })
    .await;
}

// --- Numbers the operator reads -------------------------------------------------------------

#[tokio::test]
async fn a_small_budget_limit_is_printed_with_its_digits() {
    bounded(async {
        let mock = MockUpstream::ok("hi").await;
        let policy = "[budget]\ndaily_usd = 0.00005\non_limit = \"reject\"\n";
        let tenant = tenant_toml("acme", KEY, "chat-model", "think-model", policy);
        let gw = Gateway::start(&openai_config(mock.addr, ""), &[("acme", tenant)]).await;
        let mut request = hi(false);
        request["max_tokens"] = json!(1000);
        let error = expect_error(
            gw.chat(request).await,
            429,
            "insufficient_quota",
            "budget_exceeded",
        )
        .await;
        assert_message_contains(&error, "limit 0.00005 USD");
        assert_eq!(mock.count(), 0);
    })
    .await;
}

#[tokio::test]
async fn the_admin_report_shows_thresholds_as_written() {
    bounded(async {
        let mock = MockUpstream::ok("hi").await;
        let (var, token) = admin_token("thresholds");
        let server = format!("[server]\nadmin_token_env = \"{var}\"\n");
        let policy = "[auto]\nreasoning_threshold = 0.7\n[budget]\ndaily_usd = 1.0\nsoft_reasoning_threshold = 0.95\n";
        let tenant = tenant_toml("acme", KEY, "chat-model", "think-model", policy);
        let gw = Gateway::start(&openai_config(mock.addr, &server), &[("acme", tenant)]).await;
        let r = gw
            .admin_request(http::Method::GET, "/admin/tenants/acme", Some(&token))
            .await;
        assert_eq!(r.status(), 200);
        let text = read_text(r).await;
        assert!(text.contains("\"soft_reasoning_threshold\":0.95"), "{text}");
        assert!(text.contains("\"reasoning_threshold\":0.7"), "{text}");
    })
    .await;
}
