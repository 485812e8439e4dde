//! The tenant's policies applied to a routing decision, in a fixed order:
//!
//! 1. stickiness: an `auto` conversation keeps the tier it started on;
//! 2. budget lean: past the soft limit, `auto` needs a higher score for reasoning;
//! 3. deadline: `auto` does not pick a reasoning model whose observed p90 misses the
//!    deadline (client header or tenant target); an explicit tier gets a warning instead;
//! 4. shadow: the result is recorded, the request goes to the tenant's fixed tier;
//! 5. budget reservation: the worst case of the chosen model is reserved; at the limit the
//!    tenant's action applies (downgrade to fast, or 429), for explicit tiers too.
//!
//! Only 1-3 touch decisions the classifier made; explicit signals (a named model or tier,
//! the tier header, `reasoning_effort`) are never overridden by them.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;

use crate::api::ChatRequest;
use crate::classify::Tier;
use crate::config::{OnLimit, Tenant};
use crate::cost::{usd, worst_case};
use crate::error::GatewayError;
use crate::layers::rate_limit::TokenEstimate;
use crate::limits::{Clock, LimitState, Period, Refusal, Reservation, TenantLimits};
use crate::metrics::Metrics;
use crate::policy::latency::LatencyBook;
use crate::policy::sticky::{session_key, Sessions, SESSION_HEADER};
use crate::policy::{Decision, DecisionSource};

pub const DEADLINE_HEADER: &str = "x-deliberate-deadline-ms";

/// Live state the policies read and update; outlives config reloads.
#[derive(Default)]
pub struct PolicyState {
    /// The Redis tier, when configured (shared by `limits` and the response cache).
    pub shared: Option<Arc<crate::redis::Shared>>,
    pub limits: Arc<LimitState>,
    pub latency: Arc<LatencyBook>,
    pub sessions: Arc<Sessions>,
}

/// A decision that passed the tenant's policies.
pub struct Admitted {
    pub decision: Decision,
    pub reservation: Option<Reservation>,
    pub limits: Arc<TenantLimits>,
    /// The client's deadline: the request's own total timeout.
    pub deadline: Option<Duration>,
    /// Said in `x-deliberate-warning` (e.g. an explicit tier that will likely miss the deadline).
    pub warning: Option<String>,
    /// Shadow mode: the tier the policy chose but did not use.
    pub shadow_would: Option<Tier>,
}

/// The client's deadline, for the chat service to clamp its timeouts with.
#[derive(Debug, Clone, Copy)]
pub struct RequestDeadline(pub Duration);

fn retarget(
    decision: &mut Decision,
    tenant: &Tenant,
    tier: Tier,
    reason: String,
    source: DecisionSource,
) {
    decision.tier = tier;
    decision.model = tenant.tier_model(tier).clone();
    decision.fallbacks = crate::policy::fallbacks_for(tenant, tier, &decision.model);
    decision.reason = reason;
    decision.source = source;
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn client_deadline(headers: &HeaderMap) -> Result<Option<Duration>, GatewayError> {
    let Some(v) = headers.get(DEADLINE_HEADER) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(|ms| Some(Duration::from_millis(ms)))
        .ok_or_else(|| {
            GatewayError::invalid(
                format!("Invalid `{DEADLINE_HEADER}` header: expected a positive number of milliseconds."),
                None,
            )
        })
}

/// Seconds until the window of `refusal` resets (next UTC day or month).
fn retry_after(refusal: Refusal, clock: &Clock) -> u64 {
    let now = clock.period();
    let to_next_day = clock.seconds_to_next_day();
    if refusal != Refusal::Monthly {
        return to_next_day;
    }
    let days = (1..=31)
        .find(|d| Period::of_day(now.day + d).month != now.month)
        .unwrap_or(31);
    to_next_day + (days - 1) * 86_400
}

/// What `admit` needs besides the request.
pub struct AdmitInput<'a> {
    pub tenant: &'a Tenant,
    pub request: &'a ChatRequest,
    pub headers: &'a HeaderMap,
    pub estimate: TokenEstimate,
    /// The longest a request may live: bounds its budget hold in Redis.
    pub hold_ttl: Duration,
}

pub async fn admit(
    state: &PolicyState,
    metrics: &Metrics,
    input: AdmitInput<'_>,
    mut decision: Decision,
) -> Result<Admitted, GatewayError> {
    let AdmitInput {
        tenant,
        request,
        headers,
        estimate,
        hold_ttl,
    } = input;
    let policy = &tenant.policy;
    let limits = state.limits.for_tenant(tenant);
    let now = limits.ledger.now();
    let deadline = client_deadline(headers)?;
    let by_classifier = matches!(
        decision.source,
        DecisionSource::Classifier | DecisionSource::TenantDefault
    );
    let name = &*tenant.name;

    // 1. Stickiness.
    let session = policy.stickiness.and_then(|s| {
        by_classifier
            .then(|| {
                session_key(
                    name,
                    headers.get(SESSION_HEADER).map(|v| v.as_bytes()),
                    request,
                )
            })
            .flatten()
            .map(|key| (key, s.ttl))
    });
    if let Some((key, _)) = session {
        if let Some(tier) = state.sessions.get(key).filter(|t| *t != decision.tier) {
            let reason = format!("sticky: conversation started on {}", tier.as_str());
            retarget(&mut decision, tenant, tier, reason, DecisionSource::Sticky);
        }
    }

    // 2. Budget lean past the soft limit.
    if let Some(budget) = &policy.budget {
        let adjustable = by_classifier || decision.source == DecisionSource::Sticky;
        if adjustable
            && decision.tier == Tier::Reasoning
            && limits.ledger.past_soft_limit(budget, now)
        {
            let score = decision.score.unwrap_or(0.0);
            if score < budget.soft_reasoning_threshold {
                metrics
                    .budget_actions
                    .with_label_values(&[name, "lean"])
                    .inc();
                let reason = format!(
                    "budget: past {:.0}% of budget, reasoning needs score {:.2} (had {score:.2})",
                    budget.soft_limit * 100.0,
                    budget.soft_reasoning_threshold
                );
                retarget(
                    &mut decision,
                    tenant,
                    Tier::Fast,
                    reason,
                    DecisionSource::Budget,
                );
            }
        }
    }

    // 3. Deadline against observed latency.
    let mut warning = None;
    if decision.tier == Tier::Reasoning {
        let target = policy.latency.tier(Tier::Reasoning);
        let total_limit = match (deadline, target.total) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let observed = state.latency.observed(&decision.model.name);
        let miss = match (observed.total_p90, total_limit) {
            (Some(p90), Some(limit)) if p90 > limit => Some(format!(
                "reasoning p90 {} > deadline {}",
                secs(p90),
                secs(limit)
            )),
            _ => match (
                observed.first_token_p90,
                target.first_token,
                request.is_stream(),
            ) {
                (Some(p90), Some(limit), true) if p90 > limit => Some(format!(
                    "reasoning first-token p90 {} > target {}",
                    secs(p90),
                    secs(limit)
                )),
                _ => None,
            },
        };
        if let Some(miss) = miss {
            let adjustable = by_classifier || decision.source == DecisionSource::Sticky;
            if adjustable {
                retarget(
                    &mut decision,
                    tenant,
                    Tier::Fast,
                    format!("deadline: {miss}"),
                    DecisionSource::Deadline,
                );
            } else {
                warning = Some(format!(
                    "{miss}; sent anyway because the tier was requested"
                ));
            }
        }
    }

    if let Some((key, ttl)) = session {
        state.sessions.remember(key, decision.tier, ttl);
    }

    // 4. Shadow mode: record, then route as before.
    let mut shadow_would = None;
    let shadowed = request.model() == "auto" && decision.source != DecisionSource::Embedding;
    if let Some(shadow) = policy.shadow.filter(|_| shadowed) {
        let would = decision.tier;
        metrics
            .shadow_decisions
            .with_label_values(&[name, would.as_str(), shadow.route_to.as_str()])
            .inc();
        shadow_would = Some(would);
        let reason = format!(
            "shadow: policy would route {} ({})",
            would.as_str(),
            decision.reason
        );
        retarget(
            &mut decision,
            tenant,
            shadow.route_to,
            reason,
            DecisionSource::Shadow,
        );
        decision.score = decision.score.or(Some(0.0));
    }

    // 5. Budget reservation.
    let mut reservation = None;
    if let Some(budget) = &policy.budget {
        let worst = |d: &Decision| {
            worst_case(
                &d.model.price,
                estimate.prompt,
                estimate.max_output_on(&d.model),
            )
        };
        match limits
            .reserve(budget, worst(&decision), now, hold_ttl)
            .await
        {
            Ok(r) => reservation = Some(r),
            Err(refusal) => {
                let mut downgraded = None;
                if budget.on_limit == OnLimit::Downgrade && decision.tier == Tier::Reasoning {
                    let mut fast = decision.clone();
                    let reason =
                        format!("budget: {} reached, downgraded to fast", refusal.describe());
                    retarget(
                        &mut fast,
                        tenant,
                        Tier::Fast,
                        reason,
                        DecisionSource::Budget,
                    );
                    let fits = limits.reserve(budget, worst(&fast), now, hold_ttl).await;
                    if let Ok(r) = fits {
                        downgraded = Some((fast, r));
                    }
                }
                match downgraded {
                    Some((fast, r)) => {
                        metrics
                            .budget_actions
                            .with_label_values(&[name, "downgrade"])
                            .inc();
                        decision = fast;
                        reservation = Some(r);
                    }
                    None => {
                        metrics
                            .budget_actions
                            .with_label_values(&[name, "reject"])
                            .inc();
                        return Err(match refusal {
                            Refusal::PerRequestCap => GatewayError::RequestCostCap {
                                worst_usd: usd(worst(&decision)),
                                cap_usd: budget.per_request_usd.unwrap_or(0.0),
                            },
                            _ => GatewayError::BudgetExceeded {
                                which: refusal.describe(),
                                detail: budget_detail(budget, refusal),
                                retry_after_secs: retry_after(refusal, limits.ledger.clock()),
                            },
                        });
                    }
                }
            }
        }
    }
    // A fallback never escapes the budget: only models whose worst case fits the amount
    // reserved for this request stay in the chain.
    if let Some(r) = &reservation {
        decision.fallbacks.retain(|m| {
            worst_case(&m.price, estimate.prompt, estimate.max_output_on(m)) <= r.amount()
        });
    }
    Ok(Admitted {
        decision,
        reservation,
        limits,
        deadline,
        warning,
        shadow_would,
    })
}

fn budget_detail(budget: &crate::config::Budget, refusal: Refusal) -> String {
    let limit = match refusal {
        Refusal::Daily => budget.daily_usd,
        Refusal::Monthly => budget.monthly_usd,
        Refusal::PerRequestCap => budget.per_request_usd,
    };
    format!("limit {} USD", crate::error::usd(limit.unwrap_or(0.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::nanos;

    #[test]
    fn refusals_wait_for_the_next_day_or_month_by_the_ledgers_clock() {
        // 2026-11-28 (day 20_785) at 12:00 UTC.
        let (nov_28_noon, _) = Clock::settable(20_785 * 86_400 + 43_200);
        // Half a day, then Nov 29 and Nov 30, until Dec 1 00:00.
        assert_eq!(
            retry_after(Refusal::Monthly, &nov_28_noon),
            43_200 + 2 * 86_400
        );
        assert_eq!(retry_after(Refusal::Daily, &nov_28_noon), 43_200);
        // 2026-12-31 at 23:59:59: one second to the next day, the next month and the next year.
        let (new_years_eve, _) = Clock::settable(20_818 * 86_400 + 86_399);
        assert_eq!(retry_after(Refusal::Monthly, &new_years_eve), 1);
        assert_eq!(nanos(0.5), 500_000_000);
    }

    #[test]
    fn deadline_header_must_be_positive_milliseconds() {
        let mut h = HeaderMap::new();
        assert_eq!(client_deadline(&h).unwrap(), None);
        h.insert(DEADLINE_HEADER, "2500".parse().unwrap());
        assert_eq!(
            client_deadline(&h).unwrap(),
            Some(Duration::from_millis(2500))
        );
        h.insert(DEADLINE_HEADER, "soon".parse().unwrap());
        assert!(client_deadline(&h).is_err());
        h.insert(DEADLINE_HEADER, "0".parse().unwrap());
        assert!(client_deadline(&h).is_err());
    }
}
