//! A tenant's spend ledger in Redis, shared by every replica (see `limits::budget` for the
//! rule). Reservation and settlement are Lua scripts, so "spent + reserved + worst <= limit,
//! then reserve" is one atomic step across replicas, with no read-modify-write race.
//!
//! Keys (all under the tenant's hash tag, so one script touches one cluster slot):
//! - `P:budget:{T}:day:D` / `:month:M`: nano-USD spent in that UTC day / month (expire after
//!   the window);
//! - `:reserved`: the sum of the holds in flight;
//! - `:holds` (sorted set, score = expiry in ms) and `:amounts` (hash): one entry per hold.
//!   A replica that dies holding money does not leak it: a hold expires after the request's
//!   longest possible life and the next reservation releases it.
//!
//! Time comes from Redis (`TIME`), so replicas with skewed clocks agree on expiry.
#![deny(clippy::arithmetic_side_effects)]

use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::cost::Nanos;
use crate::limits::{Period, Refusal};
use crate::redis::{Op, Shared};

/// The Lua scripts, hashed once (sent by `EVALSHA`, loaded on first use).
static RESERVE_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(RESERVE));
static SETTLE_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(SETTLE));

/// KEYS: day, month, reserved, holds, amounts.
/// ARGV: worst, daily limit (-1: none), monthly limit (-1: none), hold id, hold ttl (ms),
/// carried day spend, carried month spend, day key ttl (s), month key ttl (s).
/// Returns {status (0 granted, 1 daily, 2 monthly), day, month, reserved}.
const RESERVE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)) do
  local held = redis.call('HGET', KEYS[5], id)
  if held then redis.call('DECRBY', KEYS[3], held) end
  redis.call('HDEL', KEYS[5], id)
  redis.call('ZREM', KEYS[4], id)
end
if tonumber(ARGV[6]) > 0 then
  redis.call('INCRBY', KEYS[1], ARGV[6])
  redis.call('EXPIRE', KEYS[1], ARGV[8])
end
if tonumber(ARGV[7]) > 0 then
  redis.call('INCRBY', KEYS[2], ARGV[7])
  redis.call('EXPIRE', KEYS[2], ARGV[9])
end
local day = tonumber(redis.call('GET', KEYS[1]) or '0')
local month = tonumber(redis.call('GET', KEYS[2]) or '0')
local reserved = math.max(0, tonumber(redis.call('GET', KEYS[3]) or '0'))
local worst = tonumber(ARGV[1])
local daily = tonumber(ARGV[2])
local monthly = tonumber(ARGV[3])
if daily >= 0 and day + reserved + worst > daily then
  return {1, day, month, reserved}
end
if monthly >= 0 and month + reserved + worst > monthly then
  return {2, day, month, reserved}
end
redis.call('INCRBY', KEYS[3], worst)
redis.call('HSET', KEYS[5], ARGV[4], worst)
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[5]), ARGV[4])
return {0, day, month, reserved + worst}
"#;

/// KEYS: day, month, reserved, holds, amounts.
/// ARGV: hold id ("" for spend without a hold), actual cost, day key ttl (s), month key ttl (s).
/// Returns {day, month, reserved}.
const SETTLE: &str = r#"
if ARGV[1] ~= '' then
  local held = redis.call('HGET', KEYS[5], ARGV[1])
  if held then
    redis.call('DECRBY', KEYS[3], held)
    redis.call('HDEL', KEYS[5], ARGV[1])
    redis.call('ZREM', KEYS[4], ARGV[1])
  end
end
local day = redis.call('INCRBY', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
local month = redis.call('INCRBY', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[4])
local reserved = math.max(0, tonumber(redis.call('GET', KEYS[3]) or '0'))
return {day, month, reserved}
"#;

/// Day keys outlive their day, month keys their month (then Redis forgets them).
const DAY_KEY_TTL_SECS: u64 = 3 * 86_400;
const MONTH_KEY_TTL_SECS: u64 = 40 * 86_400;

/// The tenant's spend as Redis last reported it (nano-USD).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SharedView {
    pub day: Nanos,
    pub month: Nanos,
    /// Held by requests in flight on every replica.
    pub reserved: Nanos,
}

/// A reservation request to the shared ledger.
pub struct Hold<'a> {
    pub tenant: &'a str,
    pub id: &'a str,
    pub worst: Nanos,
    pub daily: Option<Nanos>,
    pub monthly: Option<Nanos>,
    /// Bounds the hold if the replica dies before settling it.
    pub ttl: Duration,
    /// Spend settled locally while Redis was away, added now: (day, month).
    pub carry: (Nanos, Nanos),
}

fn keys(shared: &Shared, tenant: &str, now: Period) -> [String; 5] {
    let base = |rest: &str| shared.key(format_args!("budget:{{{tenant}}}:{rest}"));
    [
        base(&format!("day:{}", now.day)),
        base(&format!("month:{}", now.month)),
        base("reserved"),
        base("holds"),
        base("amounts"),
    ]
}

fn limit_arg(limit: Option<Nanos>) -> i64 {
    limit.map_or(-1, |l| l.min(i64::MAX as u64) as i64)
}

/// Reserves `hold.worst` in the shared ledger: `Some(Ok)` granted, `Some(Err)` refused by
/// the shared budget, `None` Redis did not answer (the caller enforces locally).
pub async fn reserve(
    shared: &Shared,
    hold: Hold<'_>,
    now: Period,
) -> Option<Result<SharedView, (Refusal, SharedView)>> {
    let keys = keys(shared, hold.tenant, now);
    let mut invocation = RESERVE_SCRIPT.prepare_invoke();
    for k in &keys {
        invocation.key(k);
    }
    invocation
        .arg(hold.worst)
        .arg(limit_arg(hold.daily))
        .arg(limit_arg(hold.monthly))
        .arg(hold.id)
        .arg(hold.ttl.as_millis() as u64)
        .arg(hold.carry.0)
        .arg(hold.carry.1)
        .arg(DAY_KEY_TTL_SECS)
        .arg(MONTH_KEY_TTL_SECS);
    let reply: (u8, i64, i64, i64) = shared
        .run(Op::Budget, |mut c: ConnectionManager| async move {
            invocation.invoke_async(&mut c).await
        })
        .await?;
    let view = SharedView {
        day: reply.1.max(0) as u64,
        month: reply.2.max(0) as u64,
        reserved: reply.3.max(0) as u64,
    };
    Some(match reply.0 {
        0 => Ok(view),
        1 => Err((Refusal::Daily, view)),
        _ => Err((Refusal::Monthly, view)),
    })
}

/// Releases the hold `id` (if any) and adds `actual` to the spend; `None` if Redis did not
/// answer (the caller keeps the spend locally and carries it over later).
pub async fn settle(
    shared: &Shared,
    tenant: &str,
    id: Option<&str>,
    actual: Nanos,
    now: Period,
) -> Option<SharedView> {
    let keys = keys(shared, tenant, now);
    let mut invocation = SETTLE_SCRIPT.prepare_invoke();
    for k in &keys {
        invocation.key(k);
    }
    invocation
        .arg(id.unwrap_or(""))
        .arg(actual)
        .arg(DAY_KEY_TTL_SECS)
        .arg(MONTH_KEY_TTL_SECS);
    let reply: (i64, i64, i64) = shared
        .run(Op::Budget, |mut c: ConnectionManager| async move {
            invocation.invoke_async(&mut c).await
        })
        .await?;
    Some(SharedView {
        day: reply.0.max(0) as u64,
        month: reply.1.max(0) as u64,
        reserved: reply.2.max(0) as u64,
    })
}
