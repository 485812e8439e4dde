//! Output limits from hostile or careless clients, seen from the client: a `max_tokens` so
//! large that its worst case overflows must be refused by a budget (never wrap into a small
//! reservation), reserve the whole minute of a token limit, be clamped to the model's
//! declared output limit, and a request without one is sent the limit its budget hold was
//! sized for. Real gateway, mock OpenAI-compatible upstream.

mod common;

use common::*;
use serde_json::{json, Value};

const CHAT: &str = "What's a good name for a golden retriever puppy?";

/// Every answer: 20 prompt tokens, 5 completion tokens.
async fn mock() -> MockUpstream {
    MockUpstream::start(|r| {
        let model = r.body["model"].as_str().unwrap_or_default().to_string();
        let mut c = completion(&model, "ok");
        c["usage"] = json!({"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25});
        MockReply::json(c)
    })
    .await
}

async fn gateway_with(upstream: &MockUpstream, model_caps: &str, policy: &str) -> Gateway {
    let config = openai_config(upstream.addr, "").replacen(
        "tier = \"fast\"\n",
        &format!("tier = \"fast\"\n{model_caps}\n"),
        1,
    );
    Gateway::start(
        &config,
        &[(
            "acme",
            tenant_toml("acme", KEY, "chat-model", "think-model", policy),
        )],
    )
    .await
}

fn ask(max_tokens: Value) -> Value {
    json!({"model": "fast", "max_tokens": max_tokens, "messages": [{"role": "user", "content": CHAT}]})
}

#[tokio::test]
async fn an_enormous_max_tokens_is_refused_by_the_budget_and_never_sent() {
    let upstream = mock().await;
    let gw = gateway_with(
        &upstream,
        "",
        "[budget]\ndaily_usd = 0.01\non_limit = \"reject\"\n",
    )
    .await;
    let small = gw.chat(ask(json!(10))).await;
    assert_eq!(small.status(), 200);
    read_text(small).await;
    // Worst cases of 60 billion USD and more: past u64 nano-dollars, where sums used to wrap
    // into a reservation small enough to pass.
    for huge in [json!(100_000_000_000_000_000u64), json!(u64::MAX)] {
        let r = gw.chat(ask(huge.clone())).await;
        let error = expect_error(r, 429, "insufficient_quota", "budget_exceeded").await;
        assert_message_contains(&error, "daily budget");
    }
    assert_eq!(upstream.requests().len(), 1, "no refused request was sent");
    let spend = metrics_value(
        &gw,
        "deliberate_tenant_spend_usd",
        &["tenant=\"acme\"", "window=\"day\""],
    )
    .await;
    assert!(spend > 0.0 && spend <= 0.01, "{spend}");
}

#[tokio::test]
async fn an_enormous_max_tokens_reserves_the_whole_minute_of_tokens() {
    let upstream = mock().await;
    let gw = gateway_with(&upstream, "", "[rate_limits]\ntokens_per_minute = 600\n").await;
    // The headers report the bucket right after this request's reservation: all of it.
    let r = gw.chat(ask(json!(u64::MAX))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-ratelimit-remaining-tokens"), "0");
    read_text(r).await;
    // Reconciled with the 25 tokens really used: the rest came back.
    let next = gw.chat(ask(json!(10))).await;
    assert_eq!(next.status(), 200);
    let remaining: u64 = header(&next, "x-ratelimit-remaining-tokens")
        .parse()
        .unwrap();
    assert!((500..600).contains(&remaining), "{remaining}");
}

#[tokio::test]
async fn an_output_limit_that_is_not_a_token_count_is_a_400_naming_the_field() {
    let upstream = mock().await;
    let gw = gateway_with(&upstream, "", "").await;
    for bad in [
        json!(-1),
        json!(12.5),
        json!(1e17),
        json!("100"),
        json!({"n": 1}),
    ] {
        let r = gw.chat(ask(bad.clone())).await;
        let error = expect_error(r, 400, "invalid_request_error", "invalid_request").await;
        assert_eq!(error["param"], "max_tokens", "{bad}");
    }
    let mut body = ask(json!(null));
    body["max_completion_tokens"] = json!(-5);
    let error = expect_error(
        gw.chat(body).await,
        400,
        "invalid_request_error",
        "invalid_request",
    )
    .await;
    assert_eq!(error["param"], "max_completion_tokens");
    assert_eq!(upstream.requests().len(), 0);
}

#[tokio::test]
async fn above_the_models_declared_limit_max_tokens_is_clamped_and_only_that_is_reserved() {
    let upstream = mock().await;
    // Output at 0.6 USD / 1M: 1000 tokens are 0.0006 USD, a billion are 600 USD.
    let gw = gateway_with(
        &upstream,
        "capabilities = { max_output_tokens = 1000 }",
        "[budget]\ndaily_usd = 0.001\non_limit = \"reject\"\n",
    )
    .await;
    let r = gw.chat(ask(json!(1_000_000_000u64))).await;
    assert_eq!(r.status(), 200);
    assert!(
        header(&r, "x-deliberate-adjusted").contains("max_tokens clamped to 1000"),
        "{:?}",
        r.headers()
    );
    read_text(r).await;
    assert_eq!(upstream.requests()[0].body["max_tokens"], 1000);
}

#[tokio::test]
async fn with_a_budget_a_request_without_an_output_limit_is_sent_the_one_its_hold_assumed() {
    let upstream = mock().await;
    let gw = gateway_with(
        &upstream,
        "",
        "[budget]\ndaily_usd = 1.0\ndefault_max_tokens = 777\n",
    )
    .await;
    let body = json!({"model": "fast", "messages": [{"role": "user", "content": CHAT}]});
    read_text(gw.chat(body.clone()).await).await;
    assert_eq!(upstream.requests()[0].body["max_tokens"], 777);
    // The reasoning model takes it under its own parameter name.
    let mut reasoning = body.clone();
    reasoning["model"] = json!("reasoning");
    read_text(gw.chat(reasoning).await).await;
    let sent = &upstream.requests()[1].body;
    assert_eq!(sent["max_completion_tokens"], 777, "{sent}");
    assert!(sent.get("max_tokens").is_none(), "{sent}");

    // Without a budget nothing is added.
    let free = mock().await;
    let gw = gateway_with(&free, "", "").await;
    read_text(gw.chat(body).await).await;
    assert!(free.requests()[0].body.get("max_tokens").is_none());
}
