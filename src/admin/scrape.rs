//! `/metrics`: what is set at each scrape, then the registry rendered.
//!
//! Some state changes with time alone, with no request to notice: a breaker's open period
//! ends, a day or a month ends and a tenant's spend window starts again at zero. Gauges of
//! such state are set here when Prometheus asks, from the live config and the state the
//! request path keeps, instead of staying at whatever the last request left:
//! - `deliberate_deployment_breaker_state` of every configured deployment (an open breaker
//!   past its period reads half-open, 2), and `..._breaker_opened_total`;
//! - `deliberate_tenant_spend_usd` of every configured tenant, in the current windows.

use crate::metrics::Metrics;
use crate::state::AppState;
use crate::upstream::deployments::Breaker;

/// Sets the scrape-time gauges (see the module docs) and renders the registry.
pub fn render(state: &AppState) -> Vec<u8> {
    state.metrics.update(|m| refresh(m, state));
    state.metrics.render()
}

fn refresh(m: &Metrics, state: &AppState) {
    let live = state.live.load();
    // Only the deployments of the live config: one a reload removed disappears.
    m.breaker_state.reset();
    for model in live.models.values() {
        for d in &model.deployments {
            let (breaker, opened) = state
                .upstream
                .deployment_health(&d.id, live.generation)
                .unwrap_or((Breaker::Closed, 0));
            let labels = [&*model.name, &*d.id];
            m.breaker_state
                .with_label_values(&labels)
                .set(breaker.gauge());
            let counter = m.breaker_opened.with_label_values(&labels);
            counter.inc_by(opened.saturating_sub(counter.get()));
        }
    }
    for tenant in &live.tenants {
        state.policy.limits.for_tenant(tenant).publish();
    }
}
