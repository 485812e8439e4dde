//! The Redis tier seen from clients of two replicas: two gateways with the same config and a
//! real `redis-server` share cache hits, one budget and one rate limit; killing Redis leaves
//! both serving (local fallback, `deliberate_redis_up` 0), and they use it again once it is
//! back. Real gateways, real Redis, mock upstream; all on 127.0.0.1 with free ports.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const PROMPT: &str = "What's a good name for a golden retriever puppy?";

fn completion_with_usage(model: &str, prompt: u64, completion: u64) -> Value {
    let mut c = common::completion(model, "ok");
    c["usage"] = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
    c
}

/// An upstream that answers every request with usage (10 prompt, `completion` output
/// tokens) after `delay`.
async fn upstream_with_usage(completion: u64, delay: Duration) -> MockUpstream {
    MockUpstream::start(move |r| {
        let model = r.body["model"].as_str().unwrap_or_default().to_string();
        let reply = MockReply::json(completion_with_usage(&model, 10, completion));
        MockReply::Delay(delay, Box::new(reply))
    })
    .await
}

/// Two replicas: same config (with `[redis]`), same tenant files. The per-operation
/// timeout is generous: on a loaded 2-core CI machine a 200 ms one can pass, and the
/// replicas would then (rightly) fall back to local budgets and fail the sharing tests.
/// A killed Redis refuses connections at once, so it does not slow the fallback test.
async fn replicas(
    upstream: &MockUpstream,
    redis: &RedisServer,
    tenants: &[(&str, String)],
) -> (Gateway, Gateway) {
    let config = openai_config(
        upstream.addr,
        &format!("[redis]\nurl = \"{}\"\ntimeout_ms = 1000\n", redis.url()),
    );
    let a = Gateway::start(&config, tenants).await;
    let b = Gateway::start(&config, tenants).await;
    (a, b)
}

fn acme(policy: &str) -> Vec<(&'static str, String)> {
    vec![(
        "acme",
        tenant_toml("acme", KEY, "chat-model", "think-model", policy),
    )]
}

fn deterministic(prompt: &str, stream: bool) -> Value {
    json!({"model": "chat-model", "temperature": 0, "stream": stream,
           "messages": [{"role": "user", "content": prompt}]})
}

/// Asks `a` (a miss, which `a` writes to Redis just after its response), waits until Redis
/// holds the entry, then asks `b`. Returns `a`'s body and `b`'s response.
async fn miss_on_a_then_ask_b(
    a: &Gateway,
    b: &Gateway,
    redis: &RedisServer,
    body: Value,
) -> (String, reqwest::Response) {
    let before = redis.cache_entries();
    let first = a.chat(body.clone()).await;
    assert_eq!(header(&first, "x-deliberate-cache"), "miss");
    let first_body = read_text(first).await;
    redis.wait_for_cache_entries(before + 1).await;
    (first_body, b.chat(body).await)
}

async fn shared_hits(gw: &Gateway) -> f64 {
    metrics_value(
        gw,
        "deliberate_cache_shared_hits_total",
        &["tenant=\"acme\""],
    )
    .await
}

#[tokio::test]
async fn an_answer_stored_by_one_replica_is_a_hit_on_the_other() {
    let redis = RedisServer::start();
    let upstream = MockUpstream::ok("Biscuit").await;
    let (a, b) = replicas(&upstream, &redis, &acme("[cache]\nenabled = true\n")).await;

    let (first_body, second) =
        miss_on_a_then_ask_b(&a, &b, &redis, deterministic(PROMPT, false)).await;
    assert_eq!(second.status(), 200);
    assert_eq!(header(&second, "x-deliberate-cache"), "hit");
    assert!(second.headers().contains_key("age"));
    assert_eq!(read_text(second).await, first_body, "same bytes");
    assert_eq!(upstream.count(), 1, "one upstream call for both replicas");
    assert_eq!(shared_hits(&b).await, 1.0);
    // Now kept on B too: the next hit does not need Redis.
    let third = b.chat(deterministic(PROMPT, false)).await;
    assert_eq!(header(&third, "x-deliberate-cache"), "hit");
    read_text(third).await;
    assert_eq!(shared_hits(&b).await, 1.0);
}

#[tokio::test]
async fn a_stream_stored_by_one_replica_replays_as_valid_sse_on_the_other() {
    let redis = RedisServer::start();
    let chunks = vec![chunk("Bis"), chunk("cuit")];
    let upstream =
        MockUpstream::start(move |_| MockReply::sse(chunks.clone(), Duration::ZERO)).await;
    let (a, b) = replicas(&upstream, &redis, &acme("[cache]\nenabled = true\n")).await;

    let (original, replay) =
        miss_on_a_then_ask_b(&a, &b, &redis, deterministic(PROMPT, true)).await;
    assert_eq!(header(&replay, "x-deliberate-cache"), "hit");
    assert_eq!(header(&replay, "content-type"), "text/event-stream");
    let replayed = read_text(replay).await;
    assert_eq!(replayed, original, "byte-for-byte the stream A relayed");
    let events = sse_data(&replayed);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    for e in &events[..events.len() - 1] {
        serde_json::from_str::<Value>(e).expect("every data event is JSON");
    }
    assert_eq!(upstream.count(), 1);

    // The JSON form of the same answer is served from the shared stream too.
    let converted = b.chat(deterministic(PROMPT, false)).await;
    assert_eq!(header(&converted, "x-deliberate-cache"), "hit");
    let json: Value = serde_json::from_str(&read_text(converted).await).unwrap();
    assert_eq!(json["choices"][0]["message"]["content"], "Biscuit");
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn replicas_never_share_one_tenants_answer_with_another() {
    let redis = RedisServer::start();
    let upstream = MockUpstream::ok("private answer").await;
    let cache = "[cache]\nenabled = true\n";
    let tenants = vec![
        (
            "acme",
            tenant_toml("acme", KEY, "chat-model", "think-model", cache),
        ),
        (
            "other",
            tenant_toml("other", OTHER_KEY, "chat-model", "think-model", cache),
        ),
    ];
    let (a, b) = replicas(&upstream, &redis, &tenants).await;
    // acme's entry is in Redis (B hits it) ...
    let (_, acme_on_b) = miss_on_a_then_ask_b(&a, &b, &redis, deterministic(PROMPT, false)).await;
    assert_eq!(header(&acme_on_b, "x-deliberate-cache"), "hit");
    read_text(acme_on_b).await;
    // ... but the other tenant's identical request is a miss there (and goes upstream).
    let r = b
        .post_chat(OTHER_KEY, deterministic(PROMPT, false).to_string(), &[])
        .await;
    assert_eq!(header(&r, "x-deliberate-cache"), "miss");
    read_text(r).await;
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn two_replicas_enforce_one_budget_together() {
    // One answer costs 10 * 0.15/1M + 100 * 0.6/1M = 0.0000615 USD; the budget holds 10.
    // Each replica alone would admit 10: together they must not admit more than 10.
    let redis = RedisServer::start();
    let upstream = upstream_with_usage(100, Duration::from_millis(20)).await;
    let budget = 10.0 * 0.0000615;
    let (a, b) = replicas(
        &upstream,
        &redis,
        &acme(&format!("[budget]\ndaily_usd = {budget}\n")),
    )
    .await;
    let ask = || json!({"model": "chat-model", "max_tokens": 100, "messages": [{"role": "user", "content": PROMPT}]});
    let mut ok = 0;
    let mut refused = 0;
    // Rounds of concurrent requests on both replicas, until both refuse.
    for _ in 0..15 {
        let (ra, rb) = tokio::join!(a.chat(ask()), b.chat(ask()));
        for r in [ra, rb] {
            match r.status().as_u16() {
                200 => ok += 1,
                429 => refused += 1,
                s => panic!("unexpected status {s}"),
            }
            read_text(r).await;
        }
    }
    assert_eq!(ok + refused, 30);
    // Nine worst cases (~0.0000642 each) fit in the budget of ten real answers; a tenth
    // only once some settled at their real cost.
    assert!(
        (9..=10).contains(&ok),
        "{ok} answers admitted for a budget of 10"
    );
    assert!(refused >= 20, "{refused} refused");
    // The shared spend each replica reports is every replica's spend, within the budget.
    // Settlements go to Redis just after each response: wait until the replicas report it.
    let expected = ok as f64 * 0.0000615;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let spent = loop {
        let spent_a = metrics_value(&a, "deliberate_tenant_spend_usd", &["window=\"day\""]).await;
        let spent_b = metrics_value(&b, "deliberate_tenant_spend_usd", &["window=\"day\""]).await;
        let spent = spent_a.max(spent_b);
        if (spent - expected).abs() < 1e-9 || tokio::time::Instant::now() > deadline {
            break spent;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(spent <= budget + 1e-12, "spent {spent} of {budget}");
    assert!(
        (spent - ok as f64 * 0.0000615).abs() < 1e-9,
        "spent {spent} for {ok} answers"
    );
    // Settled in Redis: neither replica counted a fallback.
    assert_eq!(
        metrics_value(&a, "deliberate_redis_fallbacks_total", &[]).await,
        0.0
    );
}

#[tokio::test]
async fn two_replicas_enforce_one_rate_limit_together() {
    let redis = RedisServer::start();
    let upstream = MockUpstream::ok("hi").await;
    let (a, b) = replicas(
        &upstream,
        &redis,
        &acme("[rate_limits]\nrequests_per_minute = 3\n"),
    )
    .await;
    let ask = || json!({"model": "chat-model", "messages": [{"role": "user", "content": PROMPT}]});
    for (gw, remaining) in [(&a, "2"), (&a, "1"), (&b, "0")] {
        let r = gw.chat(ask()).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-ratelimit-limit-requests"), "3");
        assert_eq!(header(&r, "x-ratelimit-remaining-requests"), remaining);
        read_text(r).await;
    }
    for gw in [&b, &a] {
        let r = gw.chat(ask()).await;
        assert_eq!(
            header(&r, "retry-after"),
            "20",
            "one request refills in 20 s"
        );
        expect_error_body(r, 429, "rate_limit_error", "rate_limit_exceeded").await;
    }
    assert_eq!(upstream.count(), 3);
}

#[tokio::test]
async fn killing_redis_leaves_both_replicas_serving_and_they_resume_when_it_returns() {
    let mut redis = RedisServer::start();
    let upstream = upstream_with_usage(5, Duration::from_millis(100)).await;
    let policy = "[cache]\nenabled = true\n\n[budget]\ndaily_usd = 10.0\n\n[rate_limits]\nrequests_per_minute = 1000\ntokens_per_minute = 1000000\n";
    let (a, b) = replicas(&upstream, &redis, &acme(policy)).await;
    let ask = |n: usize| json!({"model": "chat-model", "temperature": 0, "messages": [{"role": "user", "content": format!("{PROMPT} #{n}")}]});
    for gw in [&a, &b] {
        let r = gw.chat(ask(0)).await;
        assert_eq!(r.status(), 200);
        read_text(r).await;
    }
    assert_eq!(metrics_value(&a, "deliberate_redis_up", &[]).await, 1.0);

    // Killed while requests are in flight on both replicas: they were admitted through
    // Redis and settle without it.
    // Killed once all six were admitted (through Redis) and reached the upstream, which
    // holds each for 100 ms.
    let sent_before = upstream.count();
    let kill = async {
        upstream.wait_for_requests(sent_before + 6).await;
        redis.kill();
    };
    let (on_a, on_b, ()) = tokio::join!(
        futures_util::future::join_all((0..3).map(|i| a.chat(ask(1000 + i)))),
        futures_util::future::join_all((0..3).map(|i| b.chat(ask(2000 + i)))),
        kill
    );
    for r in on_a.into_iter().chain(on_b) {
        assert_eq!(r.status(), 200);
        read_text(r).await;
    }
    for n in 1..=5 {
        for gw in [&a, &b] {
            let started = tokio::time::Instant::now();
            let r = gw.chat(ask(n)).await;
            assert_eq!(r.status(), 200, "served without Redis");
            read_text(r).await;
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "took {:?} without Redis",
                started.elapsed()
            );
        }
    }
    for gw in [&a, &b] {
        assert_eq!(metrics_value(gw, "deliberate_redis_up", &[]).await, 0.0);
        for op in ["cache", "budget", "rate_limit"] {
            let label = format!("op=\"{op}\"");
            let n = metrics_value(gw, "deliberate_redis_fallbacks_total", &[&label]).await;
            assert!(n > 0.0, "{op} fell back locally");
        }
    }
    // A local cache still works meanwhile: a repeat on the same replica is a hit.
    let repeat = a.chat(ask(5)).await;
    assert_eq!(header(&repeat, "x-deliberate-cache"), "hit");
    read_text(repeat).await;

    redis.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    let mut n = 100;
    // Each replica leaves a failed Redis alone for a moment (B's own probe may have just
    // failed), so wait until both use it again, not only A.
    loop {
        let mut up = 0;
        for gw in [&a, &b] {
            n += 1;
            let r = gw.chat(ask(n)).await;
            assert_eq!(r.status(), 200);
            read_text(r).await;
            if metrics_value(gw, "deliberate_redis_up", &[]).await == 1.0 {
                up += 1;
            }
        }
        if up == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "redis never used again by both replicas"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Shared again: B hits what A stores now (once the loop's own cache writes, which
    // follow their responses, have landed and no longer count as A's entry).
    redis.wait_for_cache_entries_to_settle().await;
    let (_, hit) = miss_on_a_then_ask_b(&a, &b, &redis, ask(n + 1)).await;
    assert_eq!(header(&hit, "x-deliberate-cache"), "hit");
    read_text(hit).await;
}

#[tokio::test]
async fn replicas_share_through_a_tls_redis_and_verify_its_certificate() {
    let redis = RedisServer::start_tls();
    let ca = redis.ca_file().unwrap();
    let upstream = MockUpstream::ok("Biscuit").await;
    let tenants = acme("[cache]\nenabled = true\n\n[rate_limits]\nrequests_per_minute = 3\n");
    let config = |extra: &str| {
        openai_config(
            upstream.addr,
            &format!(
                "[redis]\nurl = \"{}\"\ntimeout_ms = 1000\n{extra}",
                redis.url()
            ),
        )
    };
    let trusting = config(&format!("tls_ca_file = \"{}\"\n", ca.display()));
    let a = Gateway::start(&trusting, &tenants).await;
    let b = Gateway::start(&trusting, &tenants).await;
    let (_, hit) = miss_on_a_then_ask_b(&a, &b, &redis, deterministic(PROMPT, false)).await;
    assert_eq!(header(&hit, "x-deliberate-cache"), "hit");
    read_text(hit).await;
    // Two of the three requests a minute are used, by two replicas: one more, then 429.
    let third = b.chat(deterministic("another", false)).await;
    assert_eq!(third.status(), 200);
    read_text(third).await;
    let fourth = a.chat(deterministic("yet another", false)).await;
    expect_error_body(fourth, 429, "rate_limit_error", "rate_limit_exceeded").await;
    for gw in [&a, &b] {
        assert_eq!(metrics_value(gw, "deliberate_redis_up", &[]).await, 1.0);
        assert_eq!(
            metrics_value(gw, "deliberate_redis_fallbacks_total", &[]).await,
            0.0
        );
    }

    // Without the private CA the server's certificate is not trusted: Redis is not used
    // (and the request is still served, locally).
    let untrusting = Gateway::start(&config(""), &tenants).await;
    let r = untrusting.chat(deterministic(PROMPT, false)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-deliberate-cache"), "miss");
    read_text(r).await;
    assert_eq!(
        metrics_value(&untrusting, "deliberate_redis_up", &[]).await,
        0.0
    );
}

#[tokio::test]
async fn spend_settled_while_redis_was_down_reaches_the_other_replica_when_it_returns() {
    // One answer costs 10 * 0.15/1M + 100 * 0.6/1M = 0.0000615 USD.
    let mut redis = RedisServer::start();
    let upstream = upstream_with_usage(100, Duration::ZERO).await;
    let (a, b) = replicas(&upstream, &redis, &acme("[budget]\ndaily_usd = 1.0\n")).await;
    let ask = || json!({"model": "chat-model", "max_tokens": 100, "messages": [{"role": "user", "content": PROMPT}]});
    // While Redis is away, A serves one answer and keeps its spend locally.
    redis.kill();
    let r = a.chat(ask()).await;
    assert_eq!(r.status(), 200);
    read_text(r).await;
    assert!(metrics_value(&a, "deliberate_redis_fallbacks_total", &["op=\"budget\""]).await > 0.0);
    redis.restart();
    // A's next reservation through Redis carries the earlier spend with it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    let mut served_by_a = 1;
    loop {
        let r = a.chat(ask()).await;
        assert_eq!(r.status(), 200);
        read_text(r).await;
        served_by_a += 1;
        if metrics_value(&a, "deliberate_redis_up", &[]).await == 1.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "A never used Redis again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // B, which never saw any of A's answers, reads every one of them from Redis with its
    // own, once its settlement has landed.
    let mut served_by_b = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    loop {
        let r = b.chat(ask()).await;
        assert_eq!(r.status(), 200);
        read_text(r).await;
        served_by_b += 1;
        let answers = (day_spend(&b).await / 0.0000615).round() as usize;
        if answers == served_by_a + served_by_b {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "B sees {answers} answers, {} were served",
            served_by_a + served_by_b
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(metrics_value(&b, "deliberate_redis_up", &[]).await == 1.0);
}

async fn day_spend(gw: &Gateway) -> f64 {
    metrics_value(gw, "deliberate_tenant_spend_usd", &["window=\"day\""]).await
}
