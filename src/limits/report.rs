//! A tenant's live limit state as the admin API shows it: spend, reservations, remaining
//! budget and rate-limit buckets. Names and numbers only; never a key or a key hash.

use serde_json::{json, Value};
use tokio::time::Instant;

use super::LimitState;
use crate::config::{OnLimit, Tenant};
use crate::cost::usd;

fn bucket(b: Option<&super::Bucket>, now: Instant) -> Value {
    match b {
        None => Value::Null,
        Some(b) => {
            let s = b.status(now);
            json!({"limit": s.limit, "remaining": s.remaining, "reset_ms": u64::try_from(s.reset.as_millis()).unwrap_or(u64::MAX)})
        }
    }
}

pub fn tenant_report(limits: &LimitState, tenant: &Tenant) -> Value {
    let state = limits.for_tenant(tenant);
    let now = state.ledger.now();
    let ledger = state.ledger.snapshot(now);
    // With Redis the spend is every replica's as Redis last reported it, and holds include
    // the other replicas' requests in flight.
    let held = ledger.reserved + ledger.shared_reserved;
    let budget = tenant.policy.budget.as_ref().map(|b| {
        let remaining = |limit: Option<f64>, spent: u64| {
            limit.map(|l| (l - usd(spent) - usd(held)).max(0.0))
        };
        json!({
            "daily_usd": b.daily_usd,
            "monthly_usd": b.monthly_usd,
            "per_request_usd": b.per_request_usd,
            "remaining_today_usd": remaining(b.daily_usd, ledger.spent_day),
            "remaining_month_usd": remaining(b.monthly_usd, ledger.spent_month),
            "soft_limit": b.soft_limit,
            "past_soft_limit": state.ledger.past_soft_limit(b, now),
            "on_limit": match b.on_limit { OnLimit::Downgrade => "downgrade", OnLimit::Reject => "reject" },
        })
    });
    let instant = Instant::now();
    let shared = state.shared.is_some();
    // Shared buckets live in Redis; the local ones shown are the fallback's.
    let buckets = |b| {
        if shared {
            Value::Null
        } else {
            bucket(b, instant)
        }
    };
    json!({
        "tenant": &*tenant.name,
        "state": if shared { "redis (shared by all replicas)" } else { "this replica" },
        "spend": {
            "today_usd": usd(ledger.spent_day),
            "month_usd": usd(ledger.spent_month),
            "reserved_usd": usd(held),
            "requests_in_flight": ledger.requests_in_flight,
        },
        "budget": budget,
        "rate_limits": {
            "requests_per_minute": buckets(state.rate.requests.as_ref()),
            "tokens_per_minute": buckets(state.rate.tokens.as_ref()),
        },
    })
}
