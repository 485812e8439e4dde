//! A tenant's requests- and tokens-per-minute buckets in Redis, shared by every replica
//! (same rule as `limits::rate`: a minute's allowance that refills continuously; tokens
//! reserved at admission, the difference given back or taken at the end).
//!
//! One script takes the request slot and the tokens together, or neither, so a request
//! refused for tokens never spends a request slot. A bucket is a hash {tokens, ts} that
//! expires once it would be full again: a missing key is a full bucket.
#![deny(clippy::arithmetic_side_effects)]

use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::limits::rate::BucketStatus;
use crate::redis::{Op, Shared};

/// The Lua scripts, hashed once (sent by `EVALSHA`, loaded on first use).
static TAKE_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(TAKE));
static GIVE_BACK_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(GIVE_BACK));

/// KEYS: requests bucket, tokens bucket.
/// ARGV: requests per minute (-1: no limit), tokens per minute (-1: no limit), tokens wanted.
/// Returns {status (0 taken, 1 requests, 2 tokens), request level, token level, wait seconds}
/// with the levels and the wait as strings (Lua numbers would be truncated to integers).
const TAKE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function level(key, cap)
  local v = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens, ts = tonumber(v[1]), tonumber(v[2])
  if tokens == nil or ts == nil then return cap end
  return math.min(cap, tokens + math.max(0, now - ts) * cap / 60)
end
local function store(key, cap, value)
  redis.call('HSET', key, 'tokens', tostring(value), 'ts', tostring(now))
  redis.call('EXPIRE', key, math.ceil((cap - value) * 60 / cap) + 1)
end
local rcap, tcap, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local r, k = -1, -1
if rcap > 0 then r = level(KEYS[1], rcap) end
if tcap > 0 then k = level(KEYS[2], tcap) end
if rcap > 0 and r < 1 then
  return {1, tostring(r), tostring(k), tostring((1 - r) * 60 / rcap)}
end
if tcap > 0 and k < want then
  return {2, tostring(r), tostring(k), tostring((math.min(want, tcap) - k) * 60 / tcap)}
end
if rcap > 0 then r = r - 1; store(KEYS[1], rcap, r) end
if tcap > 0 then k = k - want; store(KEYS[2], tcap, k) end
return {0, tostring(r), tostring(k), '0'}
"#;

/// KEYS: tokens bucket. ARGV: tokens per minute, tokens to give back (negative: take).
const GIVE_BACK: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cap, delta = tonumber(ARGV[1]), tonumber(ARGV[2])
local v = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(v[1]), tonumber(v[2])
local level = cap
if tokens ~= nil and ts ~= nil then
  level = math.min(cap, tokens + math.max(0, now - ts) * cap / 60)
end
level = math.min(cap, level + delta)
redis.call('HSET', KEYS[1], 'tokens', tostring(level), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil((cap - level) * 60 / cap) + 1)
return 1
"#;

/// The shared answer to "may this request have one request slot and `tokens` tokens?".
#[derive(Debug, Clone, Copy)]
pub enum Taken {
    Granted {
        requests: Option<BucketStatus>,
        tokens: Option<BucketStatus>,
    },
    Refused {
        /// "requests" or "tokens".
        limit: &'static str,
        retry_after: Duration,
        requests: Option<BucketStatus>,
        tokens: Option<BucketStatus>,
    },
}

pub fn bucket_keys(shared: &Shared, tenant: &str) -> (String, String) {
    (
        shared.key(format_args!("rate:{{{tenant}}}:requests")),
        shared.key(format_args!("rate:{{{tenant}}}:tokens")),
    )
}

fn status(limit: Option<u32>, level: f64) -> Option<BucketStatus> {
    let limit = f64::from(limit?);
    let missing = (limit - level).max(0.0);
    Some(BucketStatus {
        limit: limit as u64,
        remaining: level.max(0.0) as u64,
        reset: Duration::from_secs_f64(missing * 60.0 / limit),
    })
}

fn limit_arg(limit: Option<u32>) -> i64 {
    limit.map_or(-1, i64::from)
}

/// Takes a request slot and `tokens` from the tenant's shared buckets; `None` if Redis did
/// not answer (the caller uses the local buckets).
pub async fn take(
    shared: &Shared,
    tenant: &str,
    requests_per_minute: Option<u32>,
    tokens_per_minute: Option<u32>,
    tokens: u64,
) -> Option<Taken> {
    let (requests_key, tokens_key) = bucket_keys(shared, tenant);
    let mut invocation = TAKE_SCRIPT.prepare_invoke();
    invocation
        .key(&requests_key)
        .key(&tokens_key)
        .arg(limit_arg(requests_per_minute))
        .arg(limit_arg(tokens_per_minute))
        .arg(tokens);
    let (code, r, k, wait): (u8, String, String, String) = shared
        .run(Op::RateLimit, |mut c: ConnectionManager| async move {
            invocation.invoke_async(&mut c).await
        })
        .await?;
    let number = |s: &str| s.parse::<f64>().unwrap_or(0.0);
    let requests = status(requests_per_minute, number(&r));
    let tokens = status(tokens_per_minute, number(&k));
    Some(match code {
        0 => Taken::Granted { requests, tokens },
        c => Taken::Refused {
            limit: if c == 1 { "requests" } else { "tokens" },
            retry_after: Duration::from_secs_f64(number(&wait).max(0.001)),
            requests,
            tokens,
        },
    })
}

/// Gives back `reserved - actual` tokens (takes the excess if negative). Returns false if
/// Redis did not answer.
pub async fn give_back(
    shared: &Shared,
    tenant: &str,
    tokens_per_minute: u32,
    reserved: u64,
    actual: u64,
) -> bool {
    let (_, tokens_key) = bucket_keys(shared, tenant);
    // Counts past i64 are clamped: a provider's absurd usage must not wrap into a refund.
    let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let delta = clamp(reserved).saturating_sub(clamp(actual));
    if delta == 0 {
        return true;
    }
    let mut invocation = GIVE_BACK_SCRIPT.prepare_invoke();
    invocation
        .key(&tokens_key)
        .arg(tokens_per_minute)
        .arg(delta);
    shared
        .run(Op::RateLimit, |mut c: ConnectionManager| async move {
            invocation.invoke_async::<i64>(&mut c).await
        })
        .await
        .is_some()
}
