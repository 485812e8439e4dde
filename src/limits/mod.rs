//! Live per-tenant limit state: spend ledgers and rate-limit buckets.
//!
//! Config says what the limits are; this says how much of them is used. The state is keyed
//! by tenant name and outlives config reloads (a reload must not reset a tenant's spend);
//! a tenant's buckets are rebuilt only when its rate limits change. Lookups take a read
//! lock on a small map; the first request of a new tenant takes the write lock once.
//!
//! One entry point per concept, Redis or local decided behind it: `TenantLimits::reserve`
//! (budget hold) with `Reservation::settle_at`, `TenantLimits::record` (spend without a hold),
//! `TenantLimits::take` (rate limits) with `TokenHold::reconcile`. With `[redis]`, they go to
//! Redis first (shared by every replica; `redis_budget`, `redis_rate`); the local ledger
//! mirrors Redis's answers and the local buckets are the fallback while Redis does not answer.

pub mod budget;
pub mod rate;
mod redis_budget;
mod redis_rate;
pub mod report;
mod take;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio::time::Instant;

use crate::config::{Budget, RateLimits, Tenant};
use crate::cost::{nanos, Nanos};
use crate::metrics::Metrics;
use crate::redis::Shared;
pub use budget::{Clock, Ledger, Period, Refusal, Reservation, SharedHold};
pub use rate::{Bucket, RateLimiter, TokenHold};
pub use take::{Granted, Refused};

pub struct TenantLimits {
    pub name: Arc<str>,
    pub ledger: Arc<Ledger>,
    pub limits: RateLimits,
    pub rate: Arc<RateLimiter>,
    pub shared: Option<Arc<Shared>>,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for TenantLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantLimits")
            .field("name", &self.name)
            .field("limits", &self.limits)
            .field("shared", &self.shared.is_some())
            .finish()
    }
}

#[derive(Default)]
pub struct LimitState {
    tenants: RwLock<HashMap<Arc<str>, Arc<TenantLimits>>>,
    shared: Option<Arc<Shared>>,
    metrics: Option<Arc<Metrics>>,
    /// Every tenant's ledger reads the date here.
    clock: Clock,
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
    /// Limit state that publishes spend gauges to `metrics` and, with `shared`, enforces
    /// budgets and rate limits across replicas through Redis.
    pub fn new(shared: Option<Arc<Shared>>, metrics: Arc<Metrics>) -> LimitState {
        LimitState {
            tenants: RwLock::default(),
            shared,
            metrics: Some(metrics),
            clock: Clock::system(),
        }
    }

    /// The same state with budgets dated by `clock` (tests that cross a day or a month).
    pub fn with_clock(mut self, clock: Clock) -> LimitState {
        self.clock = clock;
        self
    }

    fn build(&self, name: &Arc<str>, ledger: Arc<Ledger>, limits: &RateLimits) -> TenantLimits {
        TenantLimits {
            name: name.clone(),
            ledger,
            limits: *limits,
            rate: limiter(limits),
            shared: self.shared.clone(),
            metrics: self.metrics.clone(),
        }
    }

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
                    o.insert(Arc::new(self.build(&tenant.name, ledger, wanted)));
                }
                o.get().clone()
            }
            std::collections::hash_map::Entry::Vacant(v) => v
                .insert(Arc::new(self.build(
                    &tenant.name,
                    Arc::new(Ledger::with_clock(self.clock.clone())),
                    wanted,
                )))
                .clone(),
        };
        current
    }
}

impl TenantLimits {
    /// Reserves `worst` against the tenant's budget: in Redis when it answers (one budget
    /// for every replica), otherwise in the local ledger. `hold_ttl` bounds a Redis hold
    /// whose replica dies before settling it.
    pub async fn reserve(
        &self,
        budget: &Budget,
        worst: Nanos,
        now: Period,
        hold_ttl: std::time::Duration,
    ) -> Result<Reservation, Refusal> {
        if budget.per_request_usd.is_some_and(|cap| worst > nanos(cap)) {
            return Err(Refusal::PerRequestCap);
        }
        if let Some(shared) = &self.shared {
            let id = uuid::Uuid::new_v4().simple().to_string();
            let carry = self.ledger.take_unsynced(now);
            let hold = crate::limits::redis_budget::Hold {
                tenant: &self.name,
                id: &id,
                worst,
                daily: budget.daily_usd.map(nanos),
                monthly: budget.monthly_usd.map(nanos),
                ttl: hold_ttl,
                carry,
            };
            match crate::limits::redis_budget::reserve(shared, hold, now).await {
                Some(Ok(view)) => {
                    self.ledger.mirror(view, now);
                    let metrics = self.metrics.clone();
                    let tenant = self.name.clone();
                    let hold = SharedHold {
                        shared: shared.clone(),
                        tenant: self.name.clone(),
                        id,
                        on_settled: Box::new(move |ledger| {
                            publish(metrics.as_deref(), &tenant, ledger);
                        }),
                    };
                    return Ok(Reservation::in_shared(self.ledger.clone(), worst, hold));
                }
                Some(Err((refusal, view))) => {
                    self.ledger.mirror(view, now);
                    return Err(refusal);
                }
                None => {
                    self.ledger.restore_unsynced(carry, now);
                    return self
                        .ledger
                        .reserve(budget, worst, now)
                        .map(Reservation::carried_to_shared);
                }
            }
        }
        self.ledger.reserve(budget, worst, now)
    }

    /// Spend without a reservation (a tenant without a budget is still accounted).
    pub fn record(self: &Arc<Self>, actual: Nanos, now: Period) {
        let Some(shared) = &self.shared else {
            self.ledger.record(actual, now);
            self.publish();
            return;
        };
        if actual == 0 {
            return;
        }
        let limits = self.clone();
        shared.spawn(async move {
            let shared = limits.shared.as_ref().expect("checked above");
            match crate::limits::redis_budget::settle(shared, &limits.name, None, actual, now).await
            {
                Some(view) => limits.ledger.mirror(view, now),
                None => limits.ledger.record_unsynced(actual, now),
            }
            limits.publish();
        });
    }

    /// Sets `deliberate_tenant_spend_usd` from the ledger.
    pub fn publish(&self) {
        publish(self.metrics.as_deref(), &self.name, &self.ledger);
    }
}

fn publish(metrics: Option<&Metrics>, tenant: &str, ledger: &Ledger) {
    let Some(metrics) = metrics else {
        return;
    };
    let state = ledger.snapshot(ledger.now());
    for (window, spent) in [("day", state.spent_day), ("month", state.spent_month)] {
        metrics
            .spend_usd
            .with_label_values(&[tenant, window])
            .set(crate::cost::usd(spent));
    }
}
