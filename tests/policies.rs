//! Tenant policies seen from the client: cost headers and metrics, budget reservation,
//! settlement, soft-limit leaning, downgrade and reject, per-request caps, rate limits
//! with `Retry-After` and `x-ratelimit-*`, deadline-driven downgrade from observed latency,
//! stickiness and shadow mode. Real gateway, mock OpenAI-compatible upstream.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const MATH: &str = "Prove that there are infinitely many primes of the form 4k+3, and then determine how many such primes are below 200, showing each step.";
const CHAT: &str = "What's a good name for a golden retriever puppy?";

/// A completion whose usage is `prompt`/`completion` tokens.
fn completion_with_usage(model: &str, prompt: u64, completion: u64) -> Value {
    let mut c = common::completion(model, "ok");
    c["usage"] = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
    c
}

/// Mock answering every request with this usage, after `delay` for the reasoning model.
async fn mock(prompt: u64, completion: u64, reasoning_delay: Duration) -> MockUpstream {
    MockUpstream::start(move |r| {
        let model = r.body["model"].as_str().unwrap_or_default().to_string();
        let reply = MockReply::json(completion_with_usage(&model, prompt, completion));
        if model.starts_with("think") && !reasoning_delay.is_zero() {
            MockReply::Delay(reasoning_delay, Box::new(reply))
        } else {
            reply
        }
    })
    .await
}

async fn gateway(upstream: &MockUpstream, policy: &str) -> Gateway {
    let config = openai_config(upstream.addr, "");
    Gateway::start(
        &config,
        &[(
            "acme",
            tenant_toml("acme", KEY, "chat-model", "think-model", policy),
        )],
    )
    .await
}

fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": text}]})
}

#[tokio::test]
async fn cost_is_reported_in_a_header_and_in_metrics() {
    let upstream = mock(1000, 500, Duration::ZERO).await;
    let gw = gateway(&upstream, "").await;
    let r = gw.chat(ask("fast", CHAT)).await;
    assert_eq!(r.status(), 200);
    // 1000 * 0.15 / 1M + 500 * 0.6 / 1M = 0.00045 USD
    assert_eq!(header(&r, "x-deliberate-cost-usd"), "0.000450");
    read_text(r).await;
    let cost = metrics_value(
        &gw,
        "deliberate_cost_usd_total",
        &["tenant=\"acme\"", "model=\"chat-model\"", "tier=\"fast\""],
    )
    .await;
    assert!((cost - 0.00045).abs() < 1e-9, "{cost}");
    let spend = metrics_value(
        &gw,
        "deliberate_tenant_spend_usd",
        &["tenant=\"acme\"", "window=\"day\""],
    )
    .await;
    assert!((spend - 0.00045).abs() < 1e-9, "{spend}");
}

#[tokio::test]
async fn streams_ask_for_usage_bill_it_and_hide_it_from_clients_that_did_not_ask() {
    let usage_chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [], "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}});
    let upstream = MockUpstream::start(move |r| {
        let mut chunks = vec![chunk("Hel"), chunk("lo")];
        if r.body["stream_options"]["include_usage"] == true {
            chunks.push(usage_chunk.clone());
        }
        MockReply::sse(chunks, Duration::from_millis(5))
    })
    .await;
    let gw = gateway(&upstream, "").await;

    let text = read_text(gw.chat(stream_request("fast")).await).await;
    assert_eq!(
        upstream.requests()[0].body["stream_options"]["include_usage"],
        true
    );
    let events = sse_data(&text);
    assert_eq!(
        events.len(),
        3,
        "two chunks and [DONE], no usage chunk: {text}"
    );
    assert_eq!(events[2], "[DONE]");
    let cost = metrics_value(&gw, "deliberate_cost_usd_total", &["model=\"chat-model\""]).await;
    assert!(
        (cost - 0.00045).abs() < 1e-9,
        "billed from the stream's usage: {cost}"
    );

    // A client that asked for usage gets it.
    let mut asked = stream_request("fast");
    asked["stream_options"] = json!({"include_usage": true});
    let text = read_text(gw.chat(asked).await).await;
    let events = sse_data(&text);
    assert_eq!(events.len(), 4, "{text}");
    assert!(events[2].contains("\"usage\""));
}

#[tokio::test]
async fn a_client_that_disconnects_is_billed_from_an_estimate() {
    let mut events: Vec<(Duration, String)> = (0..3)
        .map(|i| {
            (
                Duration::from_millis(5),
                data_event(&chunk(&format!("t{i}"))),
            )
        })
        .collect();
    events.push((Duration::from_secs(30), data_event(&chunk("never"))));
    let upstream = MockUpstream::stream(events, StreamEnd::Close).await;
    let gw = gateway(&upstream, "").await;
    let mut r = gw.chat(stream_request("fast")).await;
    read_until_data(&mut r).await;
    drop(r);
    upstream
        .wait_for_cancelled(1, Duration::from_secs(5), "gateway cancels the upstream")
        .await;
    let mut estimated = 0.0;
    for _ in 0..100 {
        estimated =
            metrics_value(&gw, "deliberate_cost_estimated_total", &["tenant=\"acme\""]).await;
        if estimated > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(estimated, 1.0);
    assert!(metrics_value(&gw, "deliberate_cost_usd_total", &["tenant=\"acme\""]).await > 0.0);
}

#[tokio::test]
async fn budget_reserves_settles_and_rejects_with_retry_after() {
    // Each answer really costs 0.00045; the daily budget is 0.0005.
    let upstream = mock(1000, 500, Duration::ZERO).await;
    let gw = gateway(
        &upstream,
        "[budget]\ndaily_usd = 0.0005\non_limit = \"reject\"\n",
    )
    .await;
    let first = gw.chat(ask("fast", CHAT)).await;
    assert_eq!(first.status(), 200);
    read_text(first).await;
    // Settled at the real cost (0.00045): the next reservation (~0.00006) no longer fits.
    let second = gw.chat(ask("fast", CHAT)).await;
    let retry_after: u64 = header(&second, "retry-after").parse().unwrap();
    assert!((1..=86_400).contains(&retry_after));
    let body = expect_error_body(second, 429, "insufficient_quota", "budget_exceeded").await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("daily budget"));
    assert_eq!(
        upstream.requests().len(),
        1,
        "a refused request is never sent"
    );
    assert_eq!(
        metrics_value(
            &gw,
            "deliberate_budget_actions_total",
            &["action=\"reject\""]
        )
        .await,
        1.0
    );
    // The refusal keeps the route it was refused on, and is the client's error (no page).
    let refused = [
        "tenant=\"acme\"",
        "tier=\"fast\"",
        "model=\"chat-model\"",
        "outcome=\"budget_exceeded\"",
    ];
    let m = gw.metrics().await;
    let class = |c: &str| {
        let class = format!("class=\"{c}\"");
        metric_value(
            &m,
            "deliberate_requests_total",
            &[&refused[..], &[&class]].concat(),
        )
    };
    assert_eq!((class("client_error"), class("server_error")), (1.0, 0.0));
}

#[tokio::test]
async fn at_the_limit_reasoning_downgrades_to_fast_even_when_named() {
    // Worst case with max_tokens 100: reasoning ~0.00046, fast ~0.00007. Budget 0.0003.
    let upstream = mock(10, 5, Duration::ZERO).await;
    let gw = gateway(
        &upstream,
        "[budget]\ndaily_usd = 0.0003\non_limit = \"downgrade\"\n",
    )
    .await;
    let r = gw.chat(ask("reasoning", MATH)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-deliberate-tier"), "fast");
    assert!(
        header(&r, "x-deliberate-reason").contains("budget"),
        "{}",
        header(&r, "x-deliberate-reason")
    );
    read_text(r).await;
    assert_eq!(upstream.requests()[0].body["model"], "chat-model");
    assert_eq!(
        metrics_value(
            &gw,
            "deliberate_budget_actions_total",
            &["action=\"downgrade\""]
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn past_the_soft_limit_auto_leans_to_fast() {
    let upstream = mock(1000, 500, Duration::ZERO).await;
    let control = gateway(&upstream, "").await;
    let before = control.chat(ask("auto", MATH)).await;
    assert_eq!(
        header(&before, "x-deliberate-tier"),
        "reasoning",
        "control: the prompt is reasoning"
    );
    let policy = "[budget]\ndaily_usd = 0.002\nsoft_limit = 0.2\nsoft_reasoning_threshold = 1.0\n";
    let gw = gateway(&upstream, policy).await;
    read_text(gw.chat(ask("fast", CHAT)).await).await; // spends 0.00045 > 20% of 0.002
    let after = gw.chat(ask("auto", MATH)).await;
    assert_eq!(after.status(), 200);
    assert_eq!(header(&after, "x-deliberate-tier"), "fast");
    assert!(header(&after, "x-deliberate-reason").starts_with("budget: past 20%"));
    assert_eq!(
        metrics_value(&gw, "deliberate_budget_actions_total", &["action=\"lean\""]).await,
        1.0
    );
}

#[tokio::test]
async fn a_request_above_the_per_request_cap_is_refused() {
    let upstream = mock(10, 5, Duration::ZERO).await;
    let gw = gateway(&upstream, "[budget]\nper_request_usd = 0.0001\n").await;
    let mut big = ask("fast", CHAT);
    big["max_tokens"] = json!(100_000);
    let body = expect_error_body(
        gw.chat(big).await,
        400,
        "invalid_request_error",
        "request_cost_cap",
    )
    .await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_tokens"));
    assert_eq!(gw.chat(ask("fast", CHAT)).await.status(), 200);
}

#[tokio::test]
async fn requests_per_minute_limit_answers_429_with_headers() {
    let upstream = mock(10, 5, Duration::ZERO).await;
    let gw = gateway(&upstream, "[rate_limits]\nrequests_per_minute = 2\n").await;
    let first = gw.chat(ask("fast", CHAT)).await;
    assert_eq!(header(&first, "x-ratelimit-limit-requests"), "2");
    assert_eq!(header(&first, "x-ratelimit-remaining-requests"), "1");
    gw.chat(ask("fast", CHAT)).await;
    let third = gw.chat(ask("fast", CHAT)).await;
    assert_eq!(
        header(&third, "retry-after"),
        "30",
        "one request refills in 30 s"
    );
    assert_eq!(header(&third, "x-ratelimit-remaining-requests"), "0");
    expect_error_body(third, 429, "rate_limit_error", "rate_limit_exceeded").await;
    assert_eq!(upstream.requests().len(), 2);
    assert_eq!(
        metrics_value(
            &gw,
            "deliberate_rate_limited_total",
            &["limit=\"requests\""]
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn tokens_per_minute_reserve_at_admission_and_give_back_what_was_unused() {
    // Each request reserves ~100 output + ~20 prompt tokens of a 300/minute allowance and
    // uses 15: two fit at once, a third does not until the first two are reconciled.
    let upstream = MockUpstream::start(|r| {
        let reply = MockReply::json(completion_with_usage(
            r.body["model"].as_str().unwrap(),
            10,
            5,
        ));
        MockReply::Delay(Duration::from_millis(300), Box::new(reply))
    })
    .await;
    let gw = gateway(&upstream, "[rate_limits]\ntokens_per_minute = 300\n").await;
    let (a, b, c) = tokio::join!(
        gw.chat(ask("fast", CHAT)),
        gw.chat(ask("fast", CHAT)),
        async {
            // Sent once the first two hold their tokens (both reached the upstream).
            upstream.wait_for_requests(2).await;
            gw.chat(ask("fast", CHAT)).await
        }
    );
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    assert_eq!(c.status(), 429, "third reservation exceeds the allowance");
    assert!(header(&c, "x-ratelimit-limit-tokens") == "300");
    read_text(a).await;
    read_text(b).await;
    // Reconciled: only 30 tokens used, so another reservation fits at once.
    assert_eq!(gw.chat(ask("fast", CHAT)).await.status(), 200);
}

#[tokio::test]
async fn token_limit_holds_under_concurrent_requests() {
    let upstream = MockUpstream::start(|r| {
        let reply = MockReply::json(completion_with_usage(
            r.body["model"].as_str().unwrap(),
            10,
            100,
        ));
        MockReply::Delay(Duration::from_millis(200), Box::new(reply))
    })
    .await;
    let gw = gateway(&upstream, "[rate_limits]\ntokens_per_minute = 1000\n").await;
    let requests = (0..40).map(|_| gw.chat(ask("fast", CHAT)));
    let responses = futures_util::future::join_all(requests).await;
    let ok = responses.iter().filter(|r| r.status() == 200).count();
    // Each reserves ~128 tokens (prompt estimate ~28 + 100): 7 of 1000 fit at once; an 8th
    // or 9th only if it arrives after the first ones gave back their unused 18 tokens.
    assert!((7..=9).contains(&ok), "{ok} admitted");
    assert_eq!(upstream.requests().len(), ok);
}

#[tokio::test]
async fn two_hundred_concurrent_requests_never_overspend_the_budget() {
    // Real cost per answer: 10 * 0.15/1M + 100 * 0.6/1M = 0.0000615 USD; the worst case
    // reserved (max_tokens 100, prompt estimate >= 10) is at least that. Budget: 20 answers.
    let upstream = MockUpstream::start(|r| {
        let reply = MockReply::json(completion_with_usage(
            r.body["model"].as_str().unwrap(),
            10,
            100,
        ));
        MockReply::Delay(Duration::from_millis(50), Box::new(reply))
    })
    .await;
    let budget = 20.0 * 0.0000615;
    let gw = gateway(&upstream, &format!("[budget]\ndaily_usd = {budget}\n")).await;
    let requests = (0..200).map(|_| gw.chat(ask("fast", CHAT)));
    let responses = futures_util::future::join_all(requests).await;
    let ok = responses.iter().filter(|r| r.status() == 200).count();
    let refused = responses.iter().filter(|r| r.status() == 429).count();
    assert_eq!(ok + refused, 200);
    for r in responses {
        read_text(r).await;
    }
    let spent = metrics_value(&gw, "deliberate_tenant_spend_usd", &["window=\"day\""]).await;
    assert!(spent <= budget + 1e-12, "spent {spent} of {budget}");
    // The first 19 worst cases (~0.0000642 each) fill the budget; a 20th fits only if it
    // arrives after some answers settled at their real cost.
    assert!((19..=20).contains(&ok), "{ok} served");
    assert!((spent - ok as f64 * 0.0000615).abs() < 1e-9);
}

#[tokio::test]
async fn auto_avoids_a_reasoning_model_too_slow_for_the_deadline() {
    let upstream = mock(10, 5, Duration::from_millis(300)).await;
    let gw = gateway(&upstream, "[latency.reasoning]\ntotal_ms = 100\n").await;
    // Without observations there is nothing to judge by: auto picks reasoning.
    for _ in 0..5 {
        let r = gw.chat(ask("auto", MATH)).await;
        assert_eq!(header(&r, "x-deliberate-tier"), "reasoning");
        read_text(r).await;
    }
    // Observed p90 ~300 ms > the tenant's 100 ms target: auto goes fast and says why.
    let r = gw.chat(ask("auto", MATH)).await;
    assert_eq!(header(&r, "x-deliberate-tier"), "fast");
    assert!(
        header(&r, "x-deliberate-reason").starts_with("deadline: reasoning p90"),
        "{}",
        header(&r, "x-deliberate-reason")
    );
    // An explicit tier is sent anyway, with a warning.
    let r = gw.chat(ask("reasoning", MATH)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-deliberate-tier"), "reasoning");
    assert!(header(&r, "x-deliberate-warning").contains("sent anyway"));
    // A client deadline alone does the same, and is that request's own timeout.
    let gw2 = gateway(&upstream, "").await;
    for _ in 0..5 {
        read_text(gw2.chat(ask("reasoning", MATH)).await).await;
    }
    let r = gw2
        .chat_with(ask("auto", MATH), &[("x-deliberate-deadline-ms", "150")])
        .await;
    assert_eq!(header(&r, "x-deliberate-tier"), "fast");
    let r = gw2
        .chat_with(
            ask("reasoning", MATH),
            &[("x-deliberate-deadline-ms", "150")],
        )
        .await;
    expect_error_body(r, 504, "timeout_error", "upstream_timeout").await;
    let bad = gw2
        .chat_with(ask("auto", MATH), &[("x-deliberate-deadline-ms", "soon")])
        .await;
    expect_error_body(bad, 400, "invalid_request_error", "invalid_request").await;
}

#[tokio::test]
async fn a_conversation_keeps_its_tier_while_sticky() {
    let upstream = mock(10, 5, Duration::ZERO).await;
    let first_turn = json!({"model": "auto", "messages": [{"role": "user", "content": MATH}]});
    let later_turn = json!({"model": "auto", "messages": [
        {"role": "user", "content": MATH},
        {"role": "assistant", "content": "There are 21 such primes below 200."},
        {"role": "user", "content": CHAT}]});
    // Control: without stickiness the later turn (small talk) goes fast.
    let plain = gateway(&upstream, "").await;
    assert_eq!(
        header(&plain.chat(later_turn.clone()).await, "x-deliberate-tier"),
        "fast"
    );

    let gw = gateway(&upstream, "[stickiness]\nttl_seconds = 60\n").await;
    assert_eq!(
        header(&gw.chat(first_turn).await, "x-deliberate-tier"),
        "reasoning"
    );
    let r = gw.chat(later_turn).await;
    assert_eq!(header(&r, "x-deliberate-tier"), "reasoning");
    assert!(header(&r, "x-deliberate-reason").starts_with("sticky"));
    // A session id groups requests the same way; explicit tiers still win.
    let with_id =
        |text: &str| json!({"model": "auto", "messages": [{"role": "user", "content": text}]});
    gw.chat_with(with_id(CHAT), &[("x-session-id", "s-1")])
        .await;
    let r = gw
        .chat_with(with_id(MATH), &[("x-session-id", "s-1")])
        .await;
    assert_eq!(
        header(&r, "x-deliberate-tier"),
        "fast",
        "session s-1 started fast"
    );
    let r = gw
        .chat_with(ask("reasoning", CHAT), &[("x-session-id", "s-1")])
        .await;
    assert_eq!(header(&r, "x-deliberate-tier"), "reasoning");
}

#[tokio::test]
async fn shadow_mode_records_the_decision_and_routes_as_before() {
    let upstream = mock(10, 5, Duration::ZERO).await;
    let gw = gateway(&upstream, "[shadow]\nroute_to = \"fast\"\n").await;
    let r = gw
        .chat(json!({"model": "auto", "messages": [{"role": "user", "content": MATH}]}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-deliberate-tier"), "fast");
    assert_eq!(header(&r, "x-deliberate-shadow-tier"), "reasoning");
    assert!(header(&r, "x-deliberate-reason").starts_with("shadow: policy would route reasoning"));
    read_text(r).await;
    assert_eq!(upstream.requests()[0].body["model"], "chat-model");
    let shadow = metrics_value(
        &gw,
        "deliberate_shadow_decisions_total",
        &[
            "tenant=\"acme\"",
            "would_tier=\"reasoning\"",
            "routed_tier=\"fast\"",
        ],
    )
    .await;
    assert_eq!(shadow, 1.0);
    // Named tiers are not affected by shadow mode.
    let r = gw.chat(ask("reasoning", CHAT)).await;
    assert_eq!(header(&r, "x-deliberate-tier"), "reasoning");
}

#[tokio::test]
async fn a_fallback_never_escapes_the_budget_reservation() {
    let upstream = MockUpstream::start(|r| {
        let model = r.body["model"].as_str().unwrap_or_default().to_string();
        if model.starts_with("think") {
            MockReply::error(503, "overloaded")
        } else {
            MockReply::json(completion_with_usage(&model, 10, 5))
        }
    })
    .await;
    let extra = "[models.pricey]\nprovider = \"mock\"\ntier = \"reasoning\"\nprice = { input_per_1m = 100.0, output_per_1m = 400.0 }\n\n[models.cheap]\nprovider = \"mock\"\ntier = \"fast\"\nprice = { input_per_1m = 0.1, output_per_1m = 0.1 }\n";
    let config = openai_config(upstream.addr, extra);
    let policy = "allowed_models = [\"pricey\", \"cheap\"]\n[fallbacks]\nreasoning = [\"pricey\", \"cheap\"]\n[budget]\ndaily_usd = 10.0\n";
    let gw = Gateway::start(
        &config,
        &[(
            "acme",
            tenant_toml("acme", KEY, "chat-model", "think-model", policy),
        )],
    )
    .await;
    let r = gw.chat(ask("reasoning", MATH)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-deliberate-model"), "cheap");
    assert!(header(&r, "x-deliberate-reason").starts_with("fallback: think-model failed"));
    read_text(r).await;
    let models: Vec<String> = upstream
        .requests()
        .iter()
        .map(|r| r.body["model"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !models.contains(&"pricey".to_string()),
        "pricey costs more than the reservation: {models:?}"
    );
    // Billed at the model that served it: 10 * 0.1/1M + 5 * 0.1/1M.
    let cost = metrics_value(&gw, "deliberate_cost_usd_total", &["model=\"cheap\""]).await;
    assert!((cost - 0.0000015).abs() < 1e-12, "{cost}");
}

#[tokio::test]
async fn a_providers_429_reaches_the_client_with_its_retry_after() {
    let upstream = MockUpstream::start(|_| {
        MockReply::WithHeaders(
            vec![("retry-after", "7".to_string())],
            Box::new(MockReply::error(429, "slow down")),
        )
    })
    .await;
    let config = openai_config(upstream.addr, "[resilience]\nmax_retries = 0\n");
    let gw = Gateway::start(
        &config,
        &[(
            "acme",
            tenant_toml("acme", KEY, "chat-model", "think-model", ""),
        )],
    )
    .await;
    let r = gw.chat(ask("fast", CHAT)).await;
    assert_eq!(header(&r, "retry-after"), "7");
    expect_error_body(r, 429, "rate_limit_error", "upstream_status").await;
}
