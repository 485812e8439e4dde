//! README claims that had no test of their own, each checked as a client sees it: the 502
//! codes for a missing provider key and an invalid upstream answer, every `x-ratelimit-*`
//! header, `reasoning_effort` none/minimal routing `auto` to fast, `auto.default_tier`
//! without user text, the 0.000/1.000 score of explicit choices, an insane caller
//! `x-request-id` replaced, `cache.max_bytes` eviction, and spend surviving a reload.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const MATH: &str = "Prove that there are infinitely many primes of the form 4k+3, and then determine how many such primes are below 200, showing each step.";
const CHAT: &str = "What's a good name for a golden retriever puppy?";

fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

async fn acme(upstream: &MockUpstream, config_extra: &str, policy: &str) -> Gateway {
    Gateway::start(
        &openai_config(upstream.addr, config_extra),
        &[(
            "acme",
            tenant_toml("acme", KEY, "chat-model", "think-model", policy),
        )],
    )
    .await
}

#[tokio::test]
async fn a_provider_key_variable_that_is_unset_is_a_502_provider_key_missing() {
    let upstream = MockUpstream::ok("never").await;
    let config = openai_config(upstream.addr, "").replacen(
        "base_url = ",
        "api_key_env = \"DELIBERATE_TEST_KEY_THAT_IS_NEVER_SET\"\nbase_url = ",
        1,
    );
    let gw = Gateway::start(
        &config,
        &[(
            "acme",
            tenant_toml("acme", KEY, "chat-model", "think-model", ""),
        )],
    )
    .await;
    let error = expect_error(
        gw.chat(ask("fast", CHAT)).await,
        502,
        "upstream_error",
        "provider_key_missing",
    )
    .await;
    assert_message_contains(&error, "DELIBERATE_TEST_KEY_THAT_IS_NEVER_SET");
    assert_eq!(upstream.count(), 0, "nothing is sent without the key");
}

#[tokio::test]
async fn an_upstream_answer_that_is_not_a_completion_is_a_502_upstream_invalid() {
    let upstream = MockUpstream::start(|_| MockReply::Json {
        status: 200,
        body: "<html>gateway of some proxy</html>".into(),
    })
    .await;
    let gw = acme(&upstream, "", "").await;
    expect_error(
        gw.chat(ask("fast", CHAT)).await,
        502,
        "upstream_error",
        "upstream_invalid",
    )
    .await;
}

#[tokio::test]
async fn rate_limit_headers_report_limit_remaining_and_reset_for_both_buckets() {
    let upstream = MockUpstream::ok("ok").await;
    let gw = acme(
        &upstream,
        "",
        "[rate_limits]\nrequests_per_minute = 10\ntokens_per_minute = 10000\n",
    )
    .await;
    let mut body = ask("fast", CHAT);
    body["max_tokens"] = json!(100);
    let r = gw.chat(body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-ratelimit-limit-requests"), "10");
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "9");
    assert_eq!(header(&r, "x-ratelimit-limit-tokens"), "10000");
    // Prompt estimate (~30) + 100 output tokens reserved from 10,000.
    let remaining: u64 = header(&r, "x-ratelimit-remaining-tokens").parse().unwrap();
    assert!((9_800..9_900).contains(&remaining), "{remaining}");
    // One request of 10 per minute refills in 6 s; ~130 tokens of 10,000 in under 1 s.
    let reset_requests = header(&r, "x-ratelimit-reset-requests");
    assert!(
        ["5s", "6s"].contains(&reset_requests.as_str()),
        "{reset_requests}"
    );
    let reset_tokens = header(&r, "x-ratelimit-reset-tokens");
    let ms: u64 = reset_tokens
        .strip_suffix("ms")
        .unwrap_or_else(|| panic!("{reset_tokens}"))
        .parse()
        .unwrap();
    assert!((600..1_000).contains(&ms), "{reset_tokens}");
    read_text(r).await;
}

#[tokio::test]
async fn reasoning_effort_none_or_minimal_sends_auto_to_fast_and_others_to_reasoning() {
    let upstream = MockUpstream::ok("ok").await;
    let gw = acme(&upstream, "", "").await;
    for (effort, text, tier) in [
        ("none", MATH, "fast"),
        ("minimal", MATH, "fast"),
        ("low", CHAT, "reasoning"),
        ("high", CHAT, "reasoning"),
    ] {
        let mut body = ask("auto", text);
        body["reasoning_effort"] = json!(effort);
        let r = gw.chat(body).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-deliberate-tier"), tier, "{effort}");
        assert_eq!(
            header(&r, "x-deliberate-reason"),
            format!("reasoning_effort={effort}")
        );
        read_text(r).await;
    }
}

#[tokio::test]
async fn auto_without_user_text_takes_the_tenants_default_tier() {
    let upstream = MockUpstream::ok("ok").await;
    let no_user_text = json!({"model": "auto", "messages": [{"role": "system", "content": MATH}]});
    let gw = acme(&upstream, "", "[auto]\ndefault_tier = \"reasoning\"\n").await;
    let r = gw.chat(no_user_text.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-deliberate-tier"), "reasoning");
    read_text(r).await;
    // The default default is fast, even with a maths problem in the system prompt.
    let gw = acme(&upstream, "", "").await;
    let r = gw.chat(no_user_text).await;
    assert_eq!(header(&r, "x-deliberate-tier"), "fast");
    read_text(r).await;
}

#[tokio::test]
async fn explicit_choices_score_one_or_zero() {
    let upstream = MockUpstream::ok("ok").await;
    let gw = acme(&upstream, "", "").await;
    for (model, extra_header, score) in [
        ("reasoning", None, "1.000"),
        ("fast", None, "0.000"),
        ("think-model", None, "1.000"),
        ("chat-model", None, "0.000"),
        ("auto", Some(("x-deliberate-tier", "reasoning")), "1.000"),
        ("auto", Some(("x-deliberate-tier", "fast")), "0.000"),
    ] {
        let headers: Vec<(&str, &str)> = extra_header.into_iter().collect();
        let r = gw.chat_with(ask(model, CHAT), &headers).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            header(&r, "x-deliberate-score"),
            score,
            "{model} {headers:?}"
        );
        read_text(r).await;
    }
}

#[tokio::test]
async fn an_insane_caller_request_id_is_replaced_by_a_fresh_one() {
    let upstream = MockUpstream::ok("ok").await;
    let gw = acme(&upstream, "", "").await;
    let too_long = "a".repeat(300);
    for insane in [too_long.as_str(), "has spaces in it", "semi;colon", ""] {
        let r = gw
            .chat_with(ask("fast", CHAT), &[("x-request-id", insane)])
            .await;
        assert_eq!(r.status(), 200);
        let id = header(&r, "x-request-id");
        assert!(!id.is_empty() && id != insane, "{insane:?} -> {id:?}");
        assert!(id.len() <= 128, "{id}");
        read_text(r).await;
    }
}

#[tokio::test]
async fn past_cache_max_bytes_older_answers_are_evicted() {
    // Each answer is ~2.5 KB; the whole cache holds 16 KiB, so 40 distinct answers cannot
    // all stay.
    let upstream = MockUpstream::start(|r| {
        let question = r.body["messages"][0]["content"]
            .as_str()
            .unwrap_or("")
            .to_string();
        MockReply::json(completion(
            "chat-model",
            &format!("{question} {}", "x".repeat(2500)),
        ))
    })
    .await;
    let gw = acme(
        &upstream,
        "[cache]\nmax_bytes = 16384\n",
        "[cache]\nenabled = true\ncache_nondeterministic = true\n",
    )
    .await;
    let question = |i: usize| ask("fast", &format!("question number {i}"));
    for i in 0..40 {
        let r = gw.chat(question(i)).await;
        assert_eq!(header(&r, "x-deliberate-cache"), "miss", "{i}");
        read_text(r).await;
    }
    let mut hits = 0;
    for i in 0..40 {
        let r = gw.chat(question(i)).await;
        if header(&r, "x-deliberate-cache") == "hit" {
            hits += 1;
        }
        read_text(r).await;
    }
    // At most 16 KiB / 2.5 KB answers can be held; some are (the cache is not just off).
    assert!((1..=7).contains(&hits), "{hits} hits");
}

#[tokio::test]
async fn spend_survives_a_config_reload() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let upstream = MockUpstream::start(|_| {
            let mut c = completion("chat-model", "ok");
            c["usage"] =
                json!({"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500});
            MockReply::json(c)
        })
        .await;
        let (var, token) = admin_token("spend_reload");
        let server = format!("[server]\nadmin_token_env = \"{var}\"\nreload_poll_ms = 0\n");
        let budget = "[budget]\ndaily_usd = 5.0\n";
        let gw = Gateway::start_reloadable(
            &openai_config(upstream.addr, &server),
            &[(
                "acme",
                tenant_toml("acme", KEY, "chat-model", "think-model", budget),
            )],
        )
        .await;
        read_text(gw.chat(ask("fast", CHAT)).await).await;
        let spend = || async {
            metrics_value(
                &gw,
                "deliberate_tenant_spend_usd",
                &["tenant=\"acme\"", "window=\"day\""],
            )
            .await
        };
        let before = spend().await;
        assert!((before - 0.00045).abs() < 1e-9, "{before}");
        // A reload that changes the tenant's budget keeps what it spent.
        gw.write_policy(
            "acme",
            &tenant_toml(
                "acme",
                KEY,
                "chat-model",
                "think-model",
                "[budget]\ndaily_usd = 6.0\n",
            ),
        );
        let (status, body) = gw.admin_reload(&token).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(spend().await, before);
        read_text(gw.chat(ask("fast", CHAT)).await).await;
        let after = spend().await;
        assert!((after - 0.0009).abs() < 1e-9, "{after}");
    })
    .await
    .expect("test finished in time");
}
