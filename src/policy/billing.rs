//! What a finished request owes, settled once when its response body ends.
//!
//! The cost comes from the usage the provider reported for the answer, priced at the model
//! that served it (after any fallback); without a report, from an estimate if anything was
//! produced. The budget reservation made at admission is settled with that amount (or, with
//! no reservation, the spend is recorded), the cost is counted per tenant, tier and model,
//! and a clean answer's latency feeds the model's observed p90.

use std::sync::Arc;

use tokio::time::Instant;

use crate::body::observed::{BodyEnd, Ended};
use crate::cost::{cost, usd, Usage};
use crate::facts::{Bill, Billed, Served};
use crate::layers::rate_limit::TokenEstimate;
use crate::limits::{Reservation, TenantLimits};
use crate::metrics::Metrics;
use crate::policy::latency::LatencyBook;

/// Nano-dollars as the `x-deliberate-cost-usd` header value.
pub fn cost_header(cost: u64) -> String {
    format!("{:.6}", usd(cost))
}

pub struct Settlement {
    /// Where the bill is left for the access log.
    pub billed: Billed,
    pub metrics: Arc<Metrics>,
    pub latency: Arc<LatencyBook>,
    pub tenant: Arc<str>,
    pub started: Instant,
    /// Who answered; `None` if nothing did (the reservation is then released unused).
    pub served: Option<Served>,
    pub estimate: TokenEstimate,
    pub succeeded: bool,
    /// A stream's 200 says nothing about output: only relayed data events do.
    pub is_stream: bool,
    pub cache_hit: bool,
    pub reservation: Option<Reservation>,
    pub limits: Arc<TenantLimits>,
}

impl Settlement {
    pub fn run(self, ended: &Ended) {
        let Some(served) = &self.served else {
            return;
        };
        let call = &served.call;
        let streamed = call.data_events();
        let billed = match call.usage() {
            _ if self.cache_hit => None,
            Some(u) => Some(u),
            // No usage from the provider: bill an estimate if anything was produced. A stream
            // that failed before its first data event (a first-token timeout after the 200)
            // produced nothing: it owes only what the provider reported, here nothing.
            None if (self.succeeded && !self.is_stream) || streamed > 0 => {
                self.metrics
                    .cost_estimated
                    .with_label_values(&[&self.tenant, &served.model.name])
                    .inc();
                Some(Usage {
                    prompt: self.estimate.prompt,
                    completion: self.estimate.output_from_events(streamed),
                    ..Usage::default()
                })
            }
            None => None,
        };
        let amount = billed.map_or(0, |u| cost(&served.model.price, &u));
        let _ = self.billed.0.set(Bill {
            usage: billed,
            estimated: billed.is_some() && call.usage().is_none(),
            cost: amount,
        });
        let now = self.limits.ledger.now();
        match self.reservation {
            Some(r) => {
                r.settle_at(amount, now);
                self.limits.publish();
            }
            None => self.limits.record(amount, now),
        }
        if amount > 0 {
            self.metrics
                .cost_usd
                .with_label_values(&[&self.tenant, served.tier().as_str(), &served.model.name])
                .inc_by(usd(amount));
        }
        let clean = ended.end == BodyEnd::Complete
            && self.succeeded
            && !self.cache_hit
            && call.failure().is_none();
        if clean {
            self.latency.record(
                &served.model.name,
                call.first_token_after(),
                self.started.elapsed(),
            );
        }
    }
}
