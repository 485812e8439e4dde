//! `/metrics` on the admin listener, as a Prometheus scrape sees it: requests counted with
//! tenant, tier, model and outcome once they end; durations, time to first token, tokens,
//! classifier decisions; health and readiness endpoints.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// A chat request with a wrong key: a 401 that reaches no tenant and no upstream.
async fn send_with_wrong_key(gw: &Gateway) {
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("wrong")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn a_finished_request_shows_up_with_its_labels() {
    let upstream = MockUpstream::start(|r| {
        if r.body["stream"] == json!(true) {
            let mut last = chunk("");
            last["choices"] = json!([]);
            last["usage"] = json!({"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42,
                "prompt_tokens_details": {"cached_tokens": 2}, "completion_tokens_details": {"reasoning_tokens": 20}});
            MockReply::sse(vec![chunk("a"), last], Duration::from_millis(5))
        } else {
            MockReply::json(completion("x", "ok"))
        }
    })
    .await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;

    let r = gw
        .chat(json!({"model": "auto", "messages": [{"role": "user", "content": "hello!"}]}))
        .await;
    assert_eq!(r.status(), 200);
    read_text(r).await;
    let r = gw
        .chat(
            json!({"model": "reasoning", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    read_text(r).await;
    send_with_wrong_key(&gw).await;

    let m = gw.metrics().await;
    let fast = ["tenant=\"acme\"", "tier=\"fast\"", "model=\"chat-model\""];
    assert_eq!(
        metric_value(
            &m,
            "deliberate_requests_total",
            &[&fast[..], &["outcome=\"ok\""]].concat()
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric_value(&m, "deliberate_request_duration_seconds_count", &fast),
        1.0
    );
    let reasoning = [
        "tenant=\"acme\"",
        "tier=\"reasoning\"",
        "model=\"think-model\"",
    ];
    assert_eq!(
        metric_value(
            &m,
            "deliberate_requests_total",
            &[&reasoning[..], &["outcome=\"ok\""]].concat()
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &m,
            "deliberate_time_to_first_token_seconds_count",
            &reasoning
        ),
        1.0
    );
    let tokens = |kind: &str| {
        metric_value(
            &m,
            "deliberate_tokens_total",
            &[&reasoning[..], &[&format!("kind=\"{kind}\"")]].concat(),
        )
    };
    assert_eq!(
        (
            tokens("input"),
            tokens("cached_input"),
            tokens("output"),
            tokens("reasoning")
        ),
        (10.0, 2.0, 10.0, 20.0)
    );
    // Non-streaming usage from the fast model is counted too.
    assert_eq!(
        metric_value(
            &m,
            "deliberate_tokens_total",
            &[&fast[..], &["kind=\"input\""]].concat()
        ),
        10.0
    );
    assert_eq!(
        metric_value(
            &m,
            "deliberate_requests_total",
            &[
                "outcome=\"invalid_api_key\"",
                "tenant=\"none\"",
                "class=\"client_error\""
            ]
        ),
        1.0
    );
    // Declared at zero for the configured tenant and models, before any failure.
    assert_eq!(
        metric_value(
            &m,
            "deliberate_requests_total",
            &[
                &fast[..],
                &["outcome=\"upstream_status\"", "class=\"server_error\""]
            ]
            .concat()
        ),
        0.0
    );
    assert_eq!(
        metric_value(
            &m,
            "deliberate_classifier_decisions_total",
            &["tier=\"fast\"", "source=\"classifier\""]
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &m,
            "deliberate_classifier_decisions_total",
            &["tier=\"reasoning\"", "source=\"tier\""]
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &m,
            "deliberate_upstream_duration_seconds_count",
            &["provider=\"mock\""]
        ),
        2.0
    );
    assert_eq!(metric_value(&m, "deliberate_in_flight_requests", &[]), 0.0);
    // Nothing secret or per-request in label values.
    assert!(!m.contains("wrong") && !m.contains(KEY) && !m.contains(&request_id));
    // Without `[redis]` there is no Redis to be down (no false DeliberateRedisDown alert).
    assert!(!m.contains("deliberate_redis_up"));
}

#[tokio::test]
async fn a_stream_is_in_flight_until_it_ends_and_counted_after() {
    let upstream = MockUpstream::start(|_| {
        MockReply::sse(vec![chunk("a"), chunk("b")], Duration::from_millis(400))
    })
    .await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;
    let r = gw.chat(json!({"model": "fast", "stream": true, "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(r.status(), 200);
    // Headers are out, the stream is not over: in flight, not yet counted.
    let m = gw.metrics().await;
    assert_eq!(metric_value(&m, "deliberate_in_flight_requests", &[]), 1.0);
    // (The configured series exist from the start, at zero.)
    assert_eq!(
        metric_value(&m, "deliberate_requests_total", &[]),
        0.0,
        "not counted before it ends"
    );
    read_text(r).await;
    let m = gw.metrics().await;
    assert_eq!(metric_value(&m, "deliberate_in_flight_requests", &[]), 0.0);
    assert_eq!(
        metric_value(
            &m,
            "deliberate_requests_total",
            &["outcome=\"ok\"", "tier=\"fast\""]
        ),
        1.0
    );
    // The recorded duration covers the whole stream (3 gaps of 400 ms), not just the head.
    let sum = metric_value(
        &m,
        "deliberate_request_duration_seconds_sum",
        &["tier=\"fast\""],
    );
    assert!(sum >= 1.1, "duration {sum}");
}

#[tokio::test]
async fn health_and_readiness() {
    let upstream = MockUpstream::start(|_| MockReply::json(completion("x", "ok"))).await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;
    for path in ["/healthz", "/readyz"] {
        let r = client()
            .get(format!("http://{}{path}", gw.admin))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let r = client()
        .get(format!("http://{}/metrics", gw.admin))
        .send()
        .await
        .unwrap();
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
}

#[tokio::test]
async fn a_request_cancelled_before_the_response_head_is_counted_as_cancelled() {
    // The upstream is still thinking when the client hangs up (non-streaming).
    let (upstream, reached) = MockUpstream::thinking().await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;
    let request = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}).to_string())
        .send();
    tokio::select! {
        _ = request => panic!("the upstream never answers, so neither does the gateway"),
        _ = tokio::time::timeout(TEST_TIMEOUT, reached.notified()) => {}
    }
    // The client is gone (its request future dropped, its connection closed).

    let labels = [
        "tenant=\"acme\"",
        "tier=\"fast\"",
        "model=\"chat-model\"",
        "outcome=\"cancelled\"",
    ];
    let deadline = tokio::time::Instant::now() + TEST_TIMEOUT;
    loop {
        let m = gw.metrics().await;
        if metric_value(&m, "deliberate_requests_total", &labels) == 1.0 {
            let count = metric_value(
                &m,
                "deliberate_request_duration_seconds_count",
                &labels[..3],
            );
            assert_eq!(count, 1.0, "the duration is observed too: {m}");
            assert_eq!(metric_value(&m, "deliberate_in_flight_requests", &[]), 0.0);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cancelled request was never counted: {m}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_gateways_overhead_is_recorded_without_the_upstreams_time() {
    let upstream_time = Duration::from_millis(300);
    let upstream = MockUpstream::start(move |r| {
        if r.body["stream"] == json!(true) {
            // Three chunks 100 ms apart: the stream's upstream time is ~300 ms.
            MockReply::sse(vec![chunk("a"), chunk("b")], Duration::from_millis(100))
        } else {
            MockReply::Delay(
                upstream_time,
                Box::new(MockReply::json(completion("chat-model", "ok"))),
            )
        }
    })
    .await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, "deliberate_overhead_seconds_count", &[]),
        0.0,
        "series exist from the start, empty"
    );

    let r = gw
        .chat(json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(r.status(), 200);
    read_text(r).await;
    let r = gw.chat(stream_request("fast")).await;
    assert_eq!(r.status(), 200);
    read_text(r).await;
    // A 401 reaches no upstream: no overhead sample.
    send_with_wrong_key(&gw).await;

    let m = gw.metrics().await;
    for stage in ["before_upstream", "after_upstream", "total"] {
        let label = format!("stage=\"{stage}\"");
        assert_eq!(
            metric_value(&m, "deliberate_overhead_seconds_count", &[&label]),
            2.0,
            "{m}"
        );
    }
    let requests = metric_value(&m, "deliberate_request_duration_seconds_sum", &[]);
    let overhead = metric_value(&m, "deliberate_overhead_seconds_sum", &["stage=\"total\""]);
    let parts = metric_value(
        &m,
        "deliberate_overhead_seconds_sum",
        &["stage=\"before_upstream\""],
    ) + metric_value(
        &m,
        "deliberate_overhead_seconds_sum",
        &["stage=\"after_upstream\""],
    );
    // Both requests waited ~300 ms on the upstream, which is not overhead.
    assert!(requests >= 0.55, "request time {requests}");
    assert!(
        overhead > 0.0 && overhead < upstream_time.as_secs_f64(),
        "overhead {overhead} of {requests} s"
    );
    assert!((overhead - parts).abs() < 1e-6, "{overhead} != {parts}");
}

#[tokio::test]
async fn the_breaker_gauge_follows_time_without_traffic() {
    let mock = MockUpstream::always(503).await;
    let extra = "[resilience]\nmax_retries = 0\nbreaker_failures = 2\nbreaker_open_ms = 300\n";
    let gw = Gateway::with_openai_upstream(&mock, extra).await;
    let gauge = |m: &str, deployment: &str| {
        let label = format!("deployment=\"{deployment}\"");
        metric_value(m, "deliberate_deployment_breaker_state", &[&label])
    };
    // Every configured deployment has its gauge from the start.
    let m = gw.metrics().await;
    assert_eq!(
        (gauge(&m, "chat-model@mock"), gauge(&m, "think-model@mock")),
        (0.0, 0.0)
    );
    for _ in 0..2 {
        let r = gw
            .chat(json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}))
            .await;
        assert_eq!(r.status(), 502);
    }
    let m = gw.metrics().await;
    assert_eq!(gauge(&m, "chat-model@mock"), 1.0, "open");
    assert_eq!(
        metric_value(
            &m,
            "deliberate_deployment_breaker_opened_total",
            &["deployment=\"chat-model@mock\""]
        ),
        1.0
    );
    // No request comes; the open period ends and the next scrape says half-open.
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(gauge(&gw.metrics().await, "chat-model@mock"), 2.0);
}

#[tokio::test]
async fn build_process_and_config_gauges_are_exported() {
    let upstream = MockUpstream::ok("hi").await;
    let gw = Gateway::with_openai_upstream(&upstream, "").await;
    let m = gw.metrics().await;
    let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert_eq!(metric_value(&m, "deliberate_build_info", &[&version]), 1.0);
    assert!(metric_value(&m, "process_resident_memory_bytes", &[]) > 0.0);
    assert!(metric_value(&m, "process_start_time_seconds", &[]) > 0.0);
    assert_eq!(
        metric_value(&m, "deliberate_max_in_flight_requests", &[]),
        4096.0
    );
    assert_eq!(
        metric_value(&m, "deliberate_config_last_reload_successful", &[]),
        1.0
    );
    assert!(
        metric_value(
            &m,
            "deliberate_config_last_reload_success_timestamp_seconds",
            &[]
        ) > 1.7e9
    );
}
