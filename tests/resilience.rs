//! Resilience as the client sees it: retries to another deployment before the first byte,
//! none after it, `Retry-After`, circuit breakers (open, half-open probe, close), fallback
//! chains across models, and the retry budget. Real gateway, mock upstreams on 127.0.0.1:0.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::time::Instant;

/// Every test is bounded as a whole, not only per request.
async fn bounded<F: Future<Output = ()>>(test: F) {
    tokio::time::timeout(Duration::from_secs(30), test)
        .await
        .expect("test finished in time");
}

fn hi(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

/// `chat-model` (fast) served by deployments on `a` and `b` (b names it `chat-eu`);
/// `think-model` (reasoning) on `a` alone; then `extra` (e.g. `[resilience]`).
fn two_deployments(a: SocketAddr, b: SocketAddr, extra: &str) -> String {
    format!(
        r#"
[providers.a]
kind = "openai"
base_url = "http://{a}/v1"

[providers.b]
kind = "openai"
base_url = "http://{b}/v1"

[models.chat-model]
tier = "fast"
deployments = [{{ provider = "a" }}, {{ provider = "b", upstream_model = "chat-eu" }}]

[models.think-model]
provider = "a"
tier = "reasoning"
capabilities = {{ max_tokens_param = "max_completion_tokens", system_role = "developer", reasoning_effort = true, unsupported_params = ["temperature"], on_unsupported = "drop" }}

{extra}
"#
    )
}

async fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers()[name].to_str().unwrap().to_string()
}

#[tokio::test]
async fn a_503_is_retried_on_the_other_deployment_before_the_first_byte() {
    bounded(async {
        let a = MockUpstream::always(503).await;
        let b = MockUpstream::ok("from b").await;
        let config = two_deployments(a.addr, b.addr, "[resilience]\nmax_retries = 1\n");
        let gw = Gateway::start_acme(&config, "chat-model", "think-model").await;
        // Until `a` has been picked once; after its failure it is the slow one and avoided.
        for _ in 0..10 {
            let response = gw.chat(hi("fast")).await;
            assert_eq!(response.status(), 200);
            assert_eq!(header(&response, "x-deliberate-model").await, "chat-model");
            let body: Value = serde_json::from_str(&read_text(response).await).unwrap();
            assert_eq!(body["choices"][0]["message"]["content"], "from b");
            if a.count() > 0 {
                break;
            }
        }
        assert_eq!(a.count(), 1, "a was tried once and failed");
        assert!(
            b.requests().iter().all(|r| r.body["model"] == "chat-eu"),
            "b gets its own upstream model name"
        );
        let retries = metrics_value(
            &gw,
            "deliberate_upstream_retries_total",
            &["model=\"chat-model\"", "deployment=\"chat-model@b\""],
        )
        .await;
        assert_eq!(retries, 1.0);
        let ok = metrics_value(&gw, "deliberate_requests_total", &["outcome=\"ok\""]).await;
        assert_eq!(ok as usize, b.count(), "retried requests count as ok");
    })
    .await;
}

#[tokio::test]
async fn a_stream_that_breaks_after_the_first_byte_is_not_retried() {
    bounded(async {
        let events = vec![(Duration::ZERO, data_event(&chunk("partial")))];
        let a = MockUpstream::stream(events.clone(), StreamEnd::Abort).await;
        let b = MockUpstream::stream(events, StreamEnd::Abort).await;
        let gw = Gateway::start_acme(
            &two_deployments(a.addr, b.addr, ""),
            "chat-model",
            "think-model",
        )
        .await;
        let response = gw.chat(stream_request("fast")).await;
        assert_eq!(response.status(), 200);
        let text = read_text(response).await;
        assert!(text.contains("partial"), "{text}");
        assert!(
            text.contains("\"error\""),
            "the break ends in an error event: {text}"
        );
        assert_eq!(a.count() + b.count(), 1, "exactly one upstream request");
    })
    .await;
}

#[tokio::test]
async fn retry_after_is_honoured_before_retrying_the_same_deployment() {
    bounded(async {
        let mock = MockUpstream::failing_first(
            1,
            || MockReply::retry_after(1, MockReply::error(429, "slow down")),
            || MockReply::json(completion("chat-model", "after waiting")),
        )
        .await;
        let gw = Gateway::with_openai_upstream(&mock, "").await;
        let started = Instant::now();
        let response = gw.chat(hi("fast")).await;
        assert_eq!(response.status(), 200);
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "waited for Retry-After: {:?}",
            started.elapsed()
        );
        assert_eq!(mock.count(), 2);
    })
    .await;
}

#[tokio::test]
async fn retry_after_beyond_the_deadline_returns_the_error_at_once() {
    bounded(async {
        let mock = MockUpstream::start(|_| {
            MockReply::retry_after(60, MockReply::error(429, "come back in a minute"))
        })
        .await;
        let gw = Gateway::with_openai_upstream(
            &mock,
            "[tiers.fast]\nfirst_token_timeout_ms = 5000\ntotal_timeout_ms = 5000\n",
        )
        .await;
        let started = Instant::now();
        let error = expect_error(
            gw.chat(hi("fast")).await,
            429,
            "rate_limit_error",
            "upstream_status",
        )
        .await;
        assert_message_contains(&error, "come back in a minute");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(
            mock.count(),
            1,
            "no retry: Retry-After is past the deadline"
        );
    })
    .await;
}

/// Sends requests until the open breaker lets one through to the mock (its `n`th request):
/// each refused one is a fast 502 that never reaches the upstream.
async fn wait_for_probe(gw: &Gateway, mock: &MockUpstream, n: usize) {
    for _ in 0..1000 {
        let status = gw.chat(hi("fast")).await.status();
        if mock.count() >= n {
            return;
        }
        assert_eq!(status, 502, "refused while open");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the breaker never let a probe through");
}

#[tokio::test]
async fn breaker_opens_after_n_failures_probes_after_open_ms_and_closes() {
    bounded(async {
        let healthy = Arc::new(AtomicBool::new(false));
        let flag = healthy.clone();
        let mock = MockUpstream::start(move |_| {
            if flag.load(Ordering::SeqCst) {
                MockReply::json(completion("chat-model", "ok"))
            } else {
                MockReply::error(503, "down")
            }
        })
        .await;
        let extra = "[resilience]\nmax_retries = 0\nbreaker_failures = 3\nbreaker_open_ms = 1000\n";
        let gw = Gateway::with_openai_upstream(&mock, extra).await;
        let breaker = || async {
            metrics_value(
                &gw,
                "deliberate_deployment_breaker_state",
                &["deployment=\"chat-model@mock\""],
            )
            .await
        };
        for _ in 0..3 {
            assert_eq!(gw.chat(hi("fast")).await.status(), 502);
        }
        // Opened by the third failure, just before now.
        let opened = tokio::time::Instant::now();
        assert_eq!(mock.count(), 3);
        assert_eq!(breaker().await, 1.0, "open");
        // Open: the deployment is skipped, the client gets a fast 502.
        let error = expect_error(
            gw.chat(hi("fast")).await,
            502,
            "upstream_error",
            "upstream_unavailable",
        )
        .await;
        assert_message_contains(&error, "circuit breaker");
        assert_eq!(mock.count(), 3, "no request reached the open deployment");
        // After breaker_open_ms one probe goes through; it fails, so the breaker re-opens.
        wait_for_probe(&gw, &mock, 4).await;
        assert!(
            opened.elapsed() >= Duration::from_millis(900),
            "open for its period"
        );
        assert_eq!(mock.count(), 4, "the half-open probe");
        assert_eq!(gw.chat(hi("fast")).await.status(), 502);
        assert_eq!(mock.count(), 4, "re-opened after the failed probe");
        // The next probe succeeds and closes it.
        healthy.store(true, Ordering::SeqCst);
        wait_for_probe(&gw, &mock, 5).await;
        assert_eq!(breaker().await, 0.0, "closed");
        assert_eq!(gw.chat(hi("fast")).await.status(), 200);
        assert_eq!(mock.count(), 6);
    })
    .await;
}

#[tokio::test]
async fn a_failing_reasoning_model_falls_back_along_the_tenant_chain() {
    bounded(async {
        let a = MockUpstream::always(503).await;
        let b = MockUpstream::ok("fallback answer").await;
        // chat-model only on b here, so the fallback is served by the healthy mock.
        let config = two_deployments(a.addr, b.addr, "")
            .replace("{ provider = \"a\" }, ", "")
            .replace("[resilience]", "");
        let tenant = tenant_toml(
            "acme",
            KEY,
            "chat-model",
            "think-model",
            "[fallbacks]\nreasoning = [\"chat-model\"]\n",
        );
        let gw = Gateway::start(&config, &[("acme", tenant)]).await;
        let mut body = hi("reasoning");
        body["temperature"] = json!(0.5);
        body["max_tokens"] = json!(7);
        let response = gw.chat(body).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-deliberate-model").await, "chat-model");
        assert_eq!(header(&response, "x-deliberate-tier").await, "fast");
        assert_eq!(
            header(&response, "x-deliberate-reason").await,
            "fallback: think-model failed (upstream 503)"
        );
        assert_eq!(a.count(), 3, "think-model: first attempt + 2 retries");
        // Re-adapted from the client's body: the chat model keeps temperature and max_tokens.
        let sent = &b.requests()[0].body;
        assert_eq!(sent["model"], "chat-eu");
        assert_eq!(sent["temperature"], 0.5);
        assert_eq!(sent["max_tokens"], 7);
        assert!(sent.get("max_completion_tokens").is_none());
        let fallbacks = metrics_value(
            &gw,
            "deliberate_fallbacks_total",
            &[
                "tenant=\"acme\"",
                "from_model=\"think-model\"",
                "to_model=\"chat-model\"",
            ],
        )
        .await;
        assert_eq!(fallbacks, 1.0);
    })
    .await;
}

#[tokio::test]
async fn the_retry_budget_bounds_retries() {
    bounded(async {
        let mock = MockUpstream::always(503).await;
        // 2 retries per request would be 40 retries for 20 requests; the budget allows the
        // reserve (1/s over a 10 s window = 10) plus 10% of 20 requests = 2.
        let extra =
            "[resilience]\nmax_retries = 2\nretry_budget_ratio = 0.1\nbreaker_failures = 1000\n";
        let gw = Gateway::with_openai_upstream(&mock, extra).await;
        for _ in 0..20 {
            assert_eq!(gw.chat(hi("fast")).await.status(), 502);
        }
        let retries = mock.count() - 20;
        assert!((10..=12).contains(&retries), "{retries} retries");
        let counted = metrics_value(&gw, "deliberate_upstream_retries_total", &[]).await;
        assert_eq!(counted as usize, retries);
    })
    .await;
}

#[tokio::test]
async fn a_client_error_is_neither_retried_nor_handed_to_a_fallback() {
    bounded(async {
        let a = MockUpstream::always(400).await;
        let b = MockUpstream::ok("fallback answer").await;
        let config = two_deployments(a.addr, b.addr, "").replace("{ provider = \"a\" }, ", "");
        // The chain names the decided model too: it is skipped, never tried twice.
        let tenant = tenant_toml(
            "acme",
            KEY,
            "chat-model",
            "think-model",
            "[fallbacks]\nreasoning = [\"think-model\", \"chat-model\"]\n",
        );
        let gw = Gateway::start(&config, &[("acme", tenant)]).await;
        let response = gw.chat(hi("reasoning")).await;
        assert_eq!(response.status(), 400);
        assert_eq!(a.count(), 1, "a 400 is the request's fault: no retry");
        assert_eq!(b.count(), 0, "and no fallback");
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_deployment_is_retried_on_the_other_one() {
    bounded(async {
        // A port with nothing listening: connection refused, before any response byte.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = closed.local_addr().unwrap();
        drop(closed);
        let b = MockUpstream::ok("from b").await;
        let config = two_deployments(dead, b.addr, "[resilience]\nmax_retries = 1\n");
        let gw = Gateway::start_acme(&config, "chat-model", "think-model").await;
        // Until the dead deployment is picked once (P2C may prefer b): every answer is 200,
        // and the one that hit the dead port was retried on b.
        // (Each configured deployment's retry counter exists from the start, at 0.)
        let retried_on_b = || async {
            metrics_value(
                &gw,
                "deliberate_upstream_retries_total",
                &["deployment=\"chat-model@b\""],
            )
            .await
        };
        let mut sent = 0;
        while retried_on_b().await == 0.0 && sent < 50 {
            assert_eq!(gw.chat(hi("fast")).await.status(), 200);
            sent += 1;
        }
        assert_eq!(retried_on_b().await, 1.0, "the dead deployment was tried");
        assert_eq!(b.count(), sent);
    })
    .await;
}

#[tokio::test]
async fn a_503_before_a_stream_starts_is_retried_on_the_other_deployment() {
    bounded(async {
        let a = MockUpstream::always(503).await;
        let b = MockUpstream::stream(
            vec![
                (Duration::ZERO, data_event(&chunk("streamed"))),
                (Duration::ZERO, "data: [DONE]\n\n".into()),
            ],
            StreamEnd::Close,
        )
        .await;
        let config = two_deployments(a.addr, b.addr, "[resilience]\nmax_retries = 1\n");
        let gw = Gateway::start_acme(&config, "chat-model", "think-model").await;
        for _ in 0..10 {
            let response = gw.chat(stream_request("fast")).await;
            assert_eq!(response.status(), 200);
            let text = read_text(response).await;
            assert!(
                text.contains("streamed") && text.contains("[DONE]"),
                "{text}"
            );
            if a.count() > 0 {
                break;
            }
        }
        assert_eq!(a.count(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_fallback_is_counted_for_the_model_that_served_it() {
    bounded(async {
        let a = MockUpstream::always(503).await;
        // A stream with usage, so tokens, time to first token and cost are all recorded.
        let b = MockUpstream::start(|r| {
            let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
                json!({"id": "c", "object": "chat.completion.chunk", "created": 1,
                    "model": r.body["model"], "choices": [{"index": 0, "delta": delta,
                    "finish_reason": finish}]})
            };
            MockReply::sse(
                vec![
                    chunk(json!({"role": "assistant", "content": "hi"}), json!(null)),
                    chunk(json!({}), json!("stop")),
                    json!({"id": "c", "object": "chat.completion.chunk", "created": 1,
                        "model": r.body["model"], "choices": [],
                        "usage": {"prompt_tokens": 40, "completion_tokens": 2, "total_tokens": 42}}),
                ],
                Duration::ZERO,
            )
        })
        .await;
        let config = two_deployments(a.addr, b.addr, "[resilience]\nmax_retries = 0\n")
            .replace("{ provider = \"a\" }, ", "")
            .replace(
                "tier = \"fast\"\n",
                "tier = \"fast\"\nprice = { input_per_1m = 1.0, output_per_1m = 2.0 }\n",
            );
        let tenant = tenant_toml(
            "acme",
            KEY,
            "chat-model",
            "think-model",
            "[fallbacks]\nreasoning = [\"chat-model\"]\n",
        );
        let gw = Gateway::start(&config, &[("acme", tenant)]).await;
        let mut body = hi("reasoning");
        body["stream"] = json!(true);
        let response = gw.chat(body).await;
        assert_eq!(header(&response, "x-deliberate-model").await, "chat-model");
        assert!(read_text(response).await.ends_with("data: [DONE]\n\n"));

        let m = gw.metrics().await;
        let served = ["tenant=\"acme\"", "tier=\"fast\"", "model=\"chat-model\""];
        let with = |extra: &'static str| [&served[..], &[extra]].concat();
        assert_eq!(
            metric_value(&m, "deliberate_requests_total", &with("outcome=\"ok\"")),
            1.0,
            "{m}"
        );
        assert_eq!(
            metric_value(&m, "deliberate_tokens_total", &with("kind=\"input\"")),
            40.0
        );
        assert_eq!(
            metric_value(&m, "deliberate_time_to_first_token_seconds_count", &served),
            1.0
        );
        assert!(metric_value(&m, "deliberate_cost_usd_total", &served) > 0.0);
        assert_eq!(
            metric_value(
                &m,
                "deliberate_upstream_duration_seconds_count",
                &["provider=\"b\"", "model=\"chat-model\""]
            ),
            1.0
        );
        // Nothing of the answer is counted for the model that failed (its configured
        // series exist from the start, and stay at 0).
        for family in [
            "deliberate_tokens_total",
            "deliberate_time_to_first_token_seconds_count",
            "deliberate_cost_usd_total",
            "deliberate_requests_total",
        ] {
            assert_eq!(
                metric_value(&m, family, &["model=\"think-model\""]),
                0.0,
                "{family} has think-model: {m}"
            );
        }
    })
    .await;
}
