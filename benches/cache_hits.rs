//! Cache hit latency through the whole gateway (HTTP in, HTTP out, on loopback):
//! - `in_process`: the answer is in this replica's moka cache;
//! - `redis`: another replica stored the answer; this one finds it in Redis (each measured
//!   request is a new prompt, so it is never in the local cache yet);
//! - `miss`: no cache entry: the gateway asks the mock upstream (for scale).
//!
//! Needs `redis-server` (on PATH or in `REDIS_SERVER`); starts its own on a free port, two
//! gateways and a mock upstream on 127.0.0.1:0, and stops them all at the end.
//!
//!     cargo bench -j2 --bench cache_hits

#![allow(clippy::disallowed_methods)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;

struct Setup {
    a: Gateway,
    b: Gateway,
    redis: RedisServer,
    _upstream: MockUpstream,
}

fn body(prompt: &str) -> serde_json::Value {
    json!({"model": "chat-model", "temperature": 0, "messages": [{"role": "user", "content": prompt}]})
}

/// One keep-alive client for every measured request (the harness's `chat` builds a client,
/// and so a connection, per request: that would be most of what is measured).
fn shared_client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(client)
}

async fn ask(gw: &Gateway, prompt: &str, expect: &str) {
    let r = shared_client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(body(prompt).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = r.headers()["x-deliberate-cache"]
        .to_str()
        .unwrap()
        .to_string();
    r.bytes().await.unwrap();
    assert_eq!(got, expect, "{prompt}");
}

async fn setup() -> Setup {
    let redis = RedisServer::start();
    let upstream = MockUpstream::ok("The capital of France is Paris.").await;
    let config = openai_config(
        upstream.addr,
        &format!("[redis]\nurl = \"{}\"\n", redis.url()),
    );
    let tenant = tenant_toml(
        "acme",
        KEY,
        "chat-model",
        "think-model",
        "[cache]\nenabled = true\n",
    );
    let a = Gateway::start(&config, &[("acme", tenant.clone())]).await;
    let b = Gateway::start(&config, &[("acme", tenant)]).await;
    Setup {
        a,
        b,
        redis,
        _upstream: upstream,
    }
}

/// Waits until Redis holds `n` keys (the stores run after the response).
async fn wait_for_keys(conn: &mut redis::aio::MultiplexedConnection, n: u64) {
    for _ in 0..2000 {
        let size: u64 = redis::cmd("DBSIZE").query_async(conn).await.unwrap();
        if size >= n {
            return;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    panic!("redis never reached {n} keys");
}

fn cache_hits(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let s = rt.block_on(setup());
    let mut conn = rt.block_on(async {
        redis::Client::open(s.redis.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    });
    let mut group = c.benchmark_group("cache_hit");
    group.measurement_time(Duration::from_secs(8));

    rt.block_on(ask(&s.a, "warm", "miss"));
    group.bench_function("in_process", |bench| {
        bench.iter(|| rt.block_on(ask(&s.a, "warm", "hit")));
    });

    let mut prompt_no = 0u64;
    group.bench_function("redis", |bench| {
        bench.iter_custom(|iters| {
            rt.block_on(async {
                let mut measured = Duration::ZERO;
                for _ in 0..iters {
                    prompt_no += 1;
                    let prompt = format!("question {prompt_no}");
                    ask(&s.a, &prompt, "miss").await;
                    wait_for_keys(&mut conn, prompt_no + 1).await;
                    let t0 = tokio::time::Instant::now();
                    ask(&s.b, &prompt, "hit").await;
                    measured += t0.elapsed();
                }
                measured
            })
        });
    });

    let mut miss_no = 0u64;
    group.bench_function("miss", |bench| {
        bench.iter_custom(|iters| {
            rt.block_on(async {
                let t0 = tokio::time::Instant::now();
                for _ in 0..iters {
                    miss_no += 1;
                    ask(&s.b, &format!("fresh {miss_no}"), "miss").await;
                }
                t0.elapsed()
            })
        });
    });
    group.finish();
    rt.block_on(async {
        for gw in [&s.a, &s.b] {
            gw.shutdown.cancel();
        }
    });
    drop(s);
}

criterion_group!(benches, cache_hits);
criterion_main!(benches);
