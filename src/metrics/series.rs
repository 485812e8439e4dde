//! Series that exist because the config names them, declared when a config goes live
//! (startup and every successful reload).
//!
//! Counters are created at zero for every configured tenant, model and deployment, so that
//! the first upstream 502 of a tenant is an increase of a series Prometheus already holds:
//! `rate()` sees it and an error ratio says 0 before, and more than 0 after, instead of
//! nothing (a new series' first sample is its baseline, not an increase). Only the outcomes
//! an error ratio is made of are declared (`ok` and the upstream failures), so the count
//! stays tenants x models x 5; refusals (4xx) appear when they happen. Counters of a tenant
//! or model a reload removed stay until restart (a counter must not go back in time).
//!
//! Gauges of config values (each tenant's budget, the in-flight limit) are refilled from
//! the live config: a tenant removed by a reload loses its budget series.

use std::sync::Arc;

use super::{Metrics, OutcomeClass};
use crate::config::{Model, Snapshot, Tenant};

/// Outcomes declared at zero: `ok` and what a provider incident produces (all server-side).
const DECLARED_OUTCOMES: [(&str, OutcomeClass); 5] = [
    ("ok", OutcomeClass::Ok),
    ("upstream_status", OutcomeClass::ServerError),
    ("upstream_unavailable", OutcomeClass::ServerError),
    ("upstream_invalid", OutcomeClass::ServerError),
    ("upstream_timeout", OutcomeClass::ServerError),
];

/// Declares the series of `snapshot` (see the module docs). Idempotent; call it whenever a
/// config goes live.
pub fn declare_config(metrics: &Metrics, snapshot: &Snapshot) {
    metrics.update(|m| {
        m.max_in_flight
            .set(i64::try_from(snapshot.server.max_in_flight_requests).unwrap_or(i64::MAX));
        m.budget_limit_usd.reset();
        for tenant in &snapshot.tenants {
            declare_tenant(m, tenant);
        }
        for model in snapshot.models.values() {
            for d in &model.deployments {
                m.upstream_retries.with_label_values(&[&model.name, &d.id]);
                m.breaker_opened.with_label_values(&[&model.name, &d.id]);
            }
        }
    });
}

fn declare_tenant(m: &Metrics, tenant: &Tenant) {
    let name = &*tenant.name;
    for model in served_models(tenant) {
        let tier = model.tier.as_str();
        for (outcome, class) in DECLARED_OUTCOMES {
            m.requests
                .with_label_values(&[name, tier, &model.name, outcome, class.as_str()]);
        }
        m.cost_usd.with_label_values(&[name, tier, &model.name]);
    }
    let policy = &tenant.policy;
    if let Some(budget) = &policy.budget {
        for (window, limit) in [("day", budget.daily_usd), ("month", budget.monthly_usd)] {
            if let Some(usd) = limit {
                m.budget_limit_usd
                    .with_label_values(&[name, window])
                    .set(usd);
            }
        }
        for action in ["lean", "downgrade", "reject"] {
            m.budget_actions.with_label_values(&[name, action]);
        }
    }
    let limits = &policy.rate_limits;
    for (limit, set) in [
        ("requests", limits.requests_per_minute.is_some()),
        ("tokens", limits.tokens_per_minute.is_some()),
    ] {
        if set {
            m.rate_limited.with_label_values(&[name, limit]);
        }
    }
    if policy.cache.is_some() {
        for result in ["hit", "miss", "bypass"] {
            m.cache_requests.with_label_values(&[name, result]);
        }
        m.cache_saved_usd.with_label_values(&[name]);
    }
}

/// Every model that may answer a tenant's request: the models it may name (its tier models
/// included) and its fallback chains.
fn served_models(tenant: &Tenant) -> Vec<&Arc<Model>> {
    let fallbacks = &tenant.policy.fallbacks;
    let mut models: Vec<&Arc<Model>> = Vec::new();
    for model in tenant
        .allowed_models
        .iter()
        .chain([&tenant.fast_model, &tenant.reasoning_model])
        .chain(&fallbacks.fast)
        .chain(&fallbacks.reasoning)
    {
        if !models.iter().any(|m| m.name == model.name) {
            models.push(model);
        }
    }
    models
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[providers.s]
kind = "simulated"
[models.f]
provider = "s"
tier = "fast"
[models.r]
provider = "s"
tier = "reasoning"
[models.backup]
provider = "s"
tier = "fast"
"#;

    fn text(metrics: &Metrics) -> String {
        String::from_utf8(metrics.render()).unwrap()
    }

    #[test]
    fn a_config_declares_its_tenants_series_at_zero_and_a_reload_refills_the_budgets() {
        let tenant = |name: &str, extra: &str| {
            format!("name = \"{name}\"\nfast_model = \"f\"\nreasoning_model = \"r\"\n{extra}\n")
        };
        let first = crate::config::load_texts(
            CONFIG,
            &[
                (
                    "a.toml",
                    &tenant(
                        "a",
                        "allowed_models = [\"backup\"]\n\
                         [budget]\ndaily_usd = 5.0\nmonthly_usd = 100.0\n\
                         [rate_limits]\nrequests_per_minute = 10\n\
                         [fallbacks]\nreasoning = [\"backup\"]\n[cache]\nenabled = true\n",
                    ),
                ),
                ("b.toml", &tenant("b", "")),
            ],
        )
        .unwrap()
        .snapshot;
        let metrics = Metrics::new();
        declare_config(&metrics, &first);
        let m = text(&metrics);
        for line in [
            r#"deliberate_requests_total{class="server_error",model="r",outcome="upstream_status",tenant="a",tier="reasoning"} 0"#,
            r#"deliberate_requests_total{class="ok",model="f",outcome="ok",tenant="b",tier="fast"} 0"#,
            r#"deliberate_requests_total{class="server_error",model="backup",outcome="upstream_timeout",tenant="a",tier="fast"} 0"#,
            r#"deliberate_cost_usd_total{model="f",tenant="b",tier="fast"} 0"#,
            r#"deliberate_tenant_budget_limit_usd{tenant="a",window="day"} 5"#,
            r#"deliberate_tenant_budget_limit_usd{tenant="a",window="month"} 100"#,
            r#"deliberate_budget_actions_total{action="reject",tenant="a"} 0"#,
            r#"deliberate_rate_limited_total{limit="requests",tenant="a"} 0"#,
            r#"deliberate_cache_requests_total{result="hit",tenant="a"} 0"#,
            r#"deliberate_cache_saved_usd_total{tenant="a"} 0"#,
            r#"deliberate_upstream_retries_total{deployment="f@s",model="f"} 0"#,
            r#"deliberate_max_in_flight_requests 4096"#,
        ] {
            assert!(m.lines().any(|l| l == line), "missing {line}:\n{m}");
        }
        // Only what a tenant's config names: b has no budget, no limits, no cache, and
        // nobody may be served `backup` except a.
        for absent in [
            r#"tenant="b",window="#,
            r#"deliberate_rate_limited_total{limit="tokens""#,
            r#"deliberate_cache_requests_total{result="hit",tenant="b"}"#,
            r#"model="backup",outcome="ok",tenant="b""#,
        ] {
            assert!(!m.contains(absent), "unexpected {absent}:\n{m}");
        }

        // A reload: a's budget changes, b gets one, a tenant c appears.
        let second = crate::config::load_texts(
            CONFIG,
            &[
                ("a.toml", &tenant("a", "[budget]\ndaily_usd = 7.0\n")),
                ("b.toml", &tenant("b", "[budget]\nmonthly_usd = 3.0\n")),
                ("c.toml", &tenant("c", "")),
            ],
        )
        .unwrap()
        .snapshot;
        declare_config(&metrics, &second);
        let m = text(&metrics);
        for line in [
            r#"deliberate_tenant_budget_limit_usd{tenant="a",window="day"} 7"#,
            r#"deliberate_tenant_budget_limit_usd{tenant="b",window="month"} 3"#,
            r#"deliberate_requests_total{class="ok",model="f",outcome="ok",tenant="c",tier="fast"} 0"#,
        ] {
            assert!(m.lines().any(|l| l == line), "missing {line}:\n{m}");
        }
        assert!(
            !m.contains(r#"deliberate_tenant_budget_limit_usd{tenant="a",window="month"}"#),
            "a's monthly budget was removed: {m}"
        );
    }
}
