//! The response cache seen from the client: canonical keys, tenant isolation, TTL, size
//! bound, `Cache-Control` bypass, sampled requests, the streaming tee and its replay,
//! broken streams, single flight and what a hit costs. Real gateway, mock upstream.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// A tenant file with the cache on and `extra` lines in its `[cache]` section.
fn cached_tenant(name: &str, key: &str, extra: &str) -> String {
    tenant_toml(
        name,
        key,
        "chat-model",
        "think-model",
        &format!("[cache]\nenabled = true\n{extra}"),
    )
}

async fn gateway(upstream: &MockUpstream, extra: &str) -> Gateway {
    Gateway::start(
        &openai_config(upstream.addr, ""),
        &[("acme", cached_tenant("acme", KEY, extra))],
    )
    .await
}

/// POSTs `body` verbatim (field order and whitespace as written) with `key`.
async fn post(gw: &Gateway, key: &str, body: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    gw.post_chat(key, body.to_string(), headers).await
}

fn cache_header(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-deliberate-cache")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

const BODY: &str =
    r#"{"model":"chat-model","temperature":0,"messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test]
async fn the_same_request_in_another_field_order_and_spacing_is_a_hit_that_costs_nothing() {
    let upstream = MockUpstream::ok("cached answer").await;
    let gw = gateway(&upstream, "").await;
    let first = post(&gw, KEY, BODY, &[]).await;
    assert_eq!(first.status(), 200);
    assert_eq!(cache_header(&first), "miss");
    assert!(first.headers().contains_key("x-deliberate-cost-usd"));
    let first_body = read_text(first).await;
    let cost_before = metrics_value(&gw, "deliberate_cost_usd_total", &["tenant=\"acme\""]).await;
    assert!(cost_before > 0.0);

    let reordered = "{ \"messages\" : [ { \"content\" : \"hi\", \"role\" : \"user\" } ],\n  \"user\": \"end-user-7\", \"temperature\": 0, \"model\": \"chat-model\" }";
    let second = post(&gw, KEY, reordered, &[]).await;
    assert_eq!(second.status(), 200);
    assert_eq!(cache_header(&second), "hit");
    let age: u64 = second.headers()["age"].to_str().unwrap().parse().unwrap();
    assert!(age <= 1, "age {age}");
    assert_eq!(second.headers()["x-deliberate-model"], "chat-model");
    assert!(!second.headers().contains_key("x-deliberate-cost-usd"));
    assert_eq!(read_text(second).await, first_body);
    assert_eq!(upstream.count(), 1, "the hit never reached the upstream");

    // A hit is billed nothing, and what it saved is counted.
    let cost_after = metrics_value(&gw, "deliberate_cost_usd_total", &["tenant=\"acme\""]).await;
    assert_eq!(cost_after, cost_before);
    let saved = metrics_value(
        &gw,
        "deliberate_cache_saved_usd_total",
        &["tenant=\"acme\""],
    )
    .await;
    assert!(
        (saved - cost_before).abs() < 1e-12,
        "saved {saved} vs {cost_before}"
    );
    for (result, n) in [("hit", 1.0), ("miss", 1.0)] {
        let v = metrics_value(
            &gw,
            "deliberate_cache_requests_total",
            &["tenant=\"acme\"", &format!("result=\"{result}\"")],
        )
        .await;
        assert_eq!(v, n, "{result}");
    }
}

#[tokio::test]
async fn tenants_never_share_entries() {
    let upstream = MockUpstream::ok("answer").await;
    let gw = Gateway::start(
        &openai_config(upstream.addr, ""),
        &[
            ("acme", cached_tenant("acme", KEY, "")),
            ("other", cached_tenant("other", OTHER_KEY, "")),
        ],
    )
    .await;
    assert_eq!(cache_header(&post(&gw, KEY, BODY, &[]).await), "miss");
    assert_eq!(cache_header(&post(&gw, KEY, BODY, &[]).await), "hit");
    assert_eq!(cache_header(&post(&gw, OTHER_KEY, BODY, &[]).await), "miss");
    assert_eq!(cache_header(&post(&gw, OTHER_KEY, BODY, &[]).await), "hit");
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn a_tenant_without_the_cache_is_not_cached() {
    let upstream = MockUpstream::ok("answer").await;
    let gw = Gateway::start(
        &openai_config(upstream.addr, ""),
        &[(
            "acme",
            tenant_toml("acme", KEY, "chat-model", "think-model", ""),
        )],
    )
    .await;
    for _ in 0..2 {
        let r = post(&gw, KEY, BODY, &[]).await;
        assert_eq!(r.status(), 200);
        assert!(!r.headers().contains_key("x-deliberate-cache"));
    }
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn entries_expire_after_the_tenants_ttl() {
    let upstream = MockUpstream::ok("answer").await;
    let gw = gateway(&upstream, "ttl_seconds = 1\n").await;
    assert_eq!(cache_header(&post(&gw, KEY, BODY, &[]).await), "miss");
    assert_eq!(cache_header(&post(&gw, KEY, BODY, &[]).await), "hit");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(cache_header(&post(&gw, KEY, BODY, &[]).await), "miss");
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn an_answer_bigger_than_max_entry_bytes_is_not_stored() {
    let upstream = MockUpstream::ok(
        "a long answer that certainly does not fit into one hundred bytes of cache entry, together with its JSON envelope",
    )
    .await;
    let gw = gateway(&upstream, "max_entry_bytes = 100\n").await;
    for _ in 0..2 {
        let r = post(&gw, KEY, BODY, &[]).await;
        assert_eq!(cache_header(&r), "miss");
        assert!(read_text(r).await.contains("one hundred bytes"));
    }
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn cache_control_no_store_bypasses_and_no_cache_refreshes() {
    let upstream = MockUpstream::ok("answer").await;
    let gw = gateway(&upstream, "").await;
    let r = post(&gw, KEY, BODY, &[("cache-control", "no-store")]).await;
    assert_eq!(cache_header(&r), "bypass");
    // no-store stored nothing.
    assert_eq!(cache_header(&post(&gw, KEY, BODY, &[]).await), "miss");
    assert_eq!(cache_header(&post(&gw, KEY, BODY, &[]).await), "hit");
    // no-cache does not read the entry...
    let r = post(&gw, KEY, BODY, &[("cache-control", "max-age=0, no-cache")]).await;
    assert_eq!(cache_header(&r), "miss");
    assert_eq!(upstream.count(), 3);
    // ...but stores its fresh answer.
    let other = BODY.replace("hi", "hello");
    assert_eq!(
        cache_header(&post(&gw, KEY, &other, &[("cache-control", "no-cache")]).await),
        "miss"
    );
    assert_eq!(cache_header(&post(&gw, KEY, &other, &[]).await), "hit");
    assert_eq!(upstream.count(), 4);
    let bypass = metrics_value(
        &gw,
        "deliberate_cache_requests_total",
        &["tenant=\"acme\"", "result=\"bypass\""],
    )
    .await;
    assert_eq!(bypass, 1.0);
}

#[tokio::test]
async fn sampled_requests_are_not_cached_unless_the_tenant_allows_it() {
    let sampled =
        r#"{"model":"chat-model","temperature":0.7,"messages":[{"role":"user","content":"hi"}]}"#;
    let no_temperature = r#"{"model":"chat-model","messages":[{"role":"user","content":"hi"}]}"#;
    let seeded = r#"{"model":"chat-model","seed":42,"messages":[{"role":"user","content":"hi"}]}"#;
    let upstream = MockUpstream::ok("answer").await;
    let gw = gateway(&upstream, "").await;
    for body in [sampled, sampled, no_temperature, no_temperature] {
        assert_eq!(cache_header(&post(&gw, KEY, body, &[]).await), "bypass");
    }
    assert_eq!(upstream.count(), 4);
    assert_eq!(cache_header(&post(&gw, KEY, seeded, &[]).await), "miss");
    assert_eq!(cache_header(&post(&gw, KEY, seeded, &[]).await), "hit");

    let upstream = MockUpstream::ok("answer").await;
    let gw = gateway(&upstream, "cache_nondeterministic = true\n").await;
    assert_eq!(cache_header(&post(&gw, KEY, sampled, &[]).await), "miss");
    assert_eq!(cache_header(&post(&gw, KEY, sampled, &[]).await), "hit");
    assert_eq!(upstream.count(), 1);
}

const STREAM_BODY: &str = r#"{"model":"chat-model","stream":true,"temperature":0,"messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test]
async fn a_stream_reaches_the_client_at_full_speed_and_is_replayed_identically() {
    let gap = Duration::from_millis(1500);
    let upstream = MockUpstream::stream(
        vec![
            (Duration::ZERO, data_event(&chunk("Hel"))),
            (gap, data_event(&chunk("lo"))),
            (Duration::ZERO, "data: [DONE]\n\n".to_string()),
        ],
        StreamEnd::Close,
    )
    .await;
    let gw = gateway(&upstream, "").await;
    let started = tokio::time::Instant::now();
    let mut first = post(&gw, KEY, STREAM_BODY, &[]).await;
    assert_eq!(cache_header(&first), "miss");
    let mut text = read_until_data(&mut first).await;
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "the first event came only after {:?}",
        started.elapsed()
    );
    text.push_str(&read_text(first).await);
    let events = sse_data(&text);
    assert_eq!(events.len(), 3, "{text}");
    assert_eq!(events.last().unwrap(), "[DONE]");

    let second = post(&gw, KEY, STREAM_BODY, &[]).await;
    assert_eq!(second.status(), 200);
    assert_eq!(cache_header(&second), "hit");
    assert_eq!(second.headers()["content-type"], "text/event-stream");
    let replay = read_text(second).await;
    assert_eq!(sse_data(&replay), events);
    assert_eq!(upstream.count(), 1);

    // The stored stream answers a non-streaming request too: the deltas concatenated.
    let json = post(&gw, KEY, BODY, &[]).await;
    assert_eq!(cache_header(&json), "hit");
    assert!(json.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: serde_json::Value = serde_json::from_str(&read_text(json).await).unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], "Hello");
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn a_stored_json_answer_is_replayed_as_a_valid_stream() {
    let upstream = MockUpstream::ok("from json").await;
    let gw = gateway(&upstream, "").await;
    assert_eq!(cache_header(&post(&gw, KEY, BODY, &[]).await), "miss");
    let with_usage = r#"{"model":"chat-model","stream":true,"stream_options":{"include_usage":true},"temperature":0,"messages":[{"role":"user","content":"hi"}]}"#;
    let r = post(&gw, KEY, with_usage, &[]).await;
    assert_eq!(cache_header(&r), "hit");
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let events = sse_data(&read_text(r).await);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<serde_json::Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "from json");
    assert_eq!(chunks.last().unwrap()["usage"]["total_tokens"], 15);
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn a_broken_stream_is_never_stored() {
    let upstream = MockUpstream::stream(
        vec![(Duration::ZERO, data_event(&chunk("partial")))],
        StreamEnd::Abort,
    )
    .await;
    let gw = gateway(&upstream, "").await;
    for _ in 0..2 {
        let r = post(&gw, KEY, STREAM_BODY, &[]).await;
        assert_eq!(cache_header(&r), "miss");
        let text = read_text(r).await;
        assert!(text.contains("\"error\""), "{text}");
    }
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn identical_concurrent_misses_send_one_upstream_request() {
    let upstream = MockUpstream::start(|r| {
        let model = r.body["model"].as_str().unwrap_or("m").to_string();
        MockReply::Delay(
            Duration::from_millis(300),
            Box::new(MockReply::json(completion(&model, "shared"))),
        )
    })
    .await;
    let gw = gateway(&upstream, "").await;
    let requests = (0..10).map(|_| async {
        let r = post(&gw, KEY, BODY, &[]).await;
        assert_eq!(r.status(), 200);
        let header = cache_header(&r);
        (header, read_text(r).await)
    });
    let answers = futures_util::future::join_all(requests).await;
    assert_eq!(upstream.count(), 1, "one upstream call for ten requests");
    let misses = answers.iter().filter(|(h, _)| h == "miss").count();
    assert_eq!(misses, 1, "{answers:?}");
    assert!(answers.iter().all(|(_, body)| body == &answers[0].1));
    let body: serde_json::Value = serde_json::from_str(&answers[0].1).unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], json!("shared"));
}

#[tokio::test]
async fn hits_use_no_rate_limit_tokens() {
    let upstream = MockUpstream::ok("answer").await;
    let gw = Gateway::start(
        &openai_config(upstream.addr, ""),
        &[(
            "acme",
            tenant_toml(
                "acme",
                KEY,
                "chat-model",
                "think-model",
                "[rate_limits]\ntokens_per_minute = 100\n\n[cache]\nenabled = true\n",
            ),
        )],
    )
    .await;
    let body = r#"{"model":"chat-model","temperature":0,"max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(cache_header(&post(&gw, KEY, body, &[]).await), "miss");
    // Were hits billed the prompt estimate, these would run out of the 100 tokens.
    for i in 0..30 {
        let r = post(&gw, KEY, body, &[]).await;
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(cache_header(&r), "hit");
        read_text(r).await;
    }
    assert_eq!(upstream.count(), 1);
}
