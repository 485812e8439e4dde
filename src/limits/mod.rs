//! Live per-tenant limit state: spend ledgers and rate-limit buckets.
//!
//! Config says what the limits are; this says how much of them is used. The state is keyed
//! by tenant name and outlives config reloads (a reload must not reset a tenant's spend);
//! a tenant's buckets are rebuilt only when its rate limits change. Lookups take a read
//! lock on a small map; the first request of a new tenant takes the write lock once.

pub mod budget;
pub mod rate;
pub mod report;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio::time::Instant;

use crate::config::{RateLimits, Tenant};
pub use budget::{Ledger, Period, Refusal, Reservation};
pub use rate::{Bucket, RateLimiter, TokenHold};

#[derive(Debug)]
pub struct TenantLimits {
    pub ledger: Arc<Ledger>,
    limits: RateLimits,
    pub rate: Arc<RateLimiter>,
}

#[derive(Debug, Default)]
pub struct LimitState {
    tenants: RwLock<HashMap<Arc<str>, Arc<TenantLimits>>>,
}

fn limiter(limits: &RateLimits) -> Arc<RateLimiter> {
    let now = Instant::now();
    Arc::new(RateLimiter {
        requests: limits
            .requests_per_minute
            .map(|n| Bucket::per_minute(n, now)),
        tokens: limits.tokens_per_minute.map(|n| Bucket::per_minute(n, now)),
    })
}

fn same(a: &RateLimits, b: &RateLimits) -> bool {
    a.requests_per_minute == b.requests_per_minute && a.tokens_per_minute == b.tokens_per_minute
}

impl LimitState {
    pub fn for_tenant(&self, tenant: &Tenant) -> Arc<TenantLimits> {
        let wanted = &tenant.policy.rate_limits;
        if let Some(t) = self
            .tenants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&tenant.name)
            .filter(|t| same(&t.limits, wanted))
        {
            return t.clone();
        }
        let mut map = self.tenants.write().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(tenant.name.clone());
        let current = match entry {
            std::collections::hash_map::Entry::Occupied(mut o) => {
                if !same(&o.get().limits, wanted) {
                    // Limits changed by a reload: new buckets, same ledger.
                    let ledger = o.get().ledger.clone();
                    o.insert(Arc::new(TenantLimits {
                        ledger,
                        limits: *wanted,
                        rate: limiter(wanted),
                    }));
                }
                o.get().clone()
            }
            std::collections::hash_map::Entry::Vacant(v) => v
                .insert(Arc::new(TenantLimits {
                    ledger: Arc::new(Ledger::default()),
                    limits: *wanted,
                    rate: limiter(wanted),
                }))
                .clone(),
        };
        current
    }
}
