//! A tenant's spending, rate, latency, fallback, stickiness and shadow policy: the
//! validated types and the checks that build them from `policies/<tenant>.toml`.
//!
//! Each section is optional; an absent section means "no limit" (budget, rate limits,
//! latency targets), "no fallback", "not sticky" and "not in shadow mode".

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::problem::FileProblems;
use super::raw::{
    RawBudget, RawFallbacks, RawLatency, RawRateLimits, RawTenant, RawTenantCache, RawTierLatency,
};
use super::Model;
use crate::classify::Tier;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLimit {
    /// Serve on the fast tier while the budget allows it, then reject.
    Downgrade,
    /// Reject with 429.
    Reject,
}

#[derive(Debug, Clone)]
pub struct Budget {
    pub daily_usd: Option<f64>,
    pub monthly_usd: Option<f64>,
    pub per_request_usd: Option<f64>,
    /// Fraction (0-1] of the daily or monthly limit past which `auto` leans to fast.
    pub soft_limit: f64,
    pub soft_reasoning_threshold: f32,
    pub on_limit: OnLimit,
    pub default_max_tokens: u32,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RateLimits {
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct TierLatency {
    pub first_token: Option<Duration>,
    pub total: Option<Duration>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct LatencyTargets {
    pub fast: TierLatency,
    pub reasoning: TierLatency,
}

impl LatencyTargets {
    pub fn tier(&self, tier: Tier) -> &TierLatency {
        match tier {
            Tier::Fast => &self.fast,
            Tier::Reasoning => &self.reasoning,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Fallbacks {
    pub fast: Vec<Arc<Model>>,
    pub reasoning: Vec<Arc<Model>>,
}

impl Fallbacks {
    pub fn tier(&self, tier: Tier) -> &[Arc<Model>] {
        match tier {
            Tier::Fast => &self.fast,
            Tier::Reasoning => &self.reasoning,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Stickiness {
    pub ttl: Duration,
}

/// The tenant's response cache policy (`[cache]`); only built when `enabled = true`.
#[derive(Debug, Clone, Copy)]
pub struct CachePolicy {
    pub ttl: Duration,
    pub max_entry_bytes: usize,
    /// Cache sampled answers too (default: only `temperature = 0` or a `seed`).
    pub nondeterministic: bool,
}

pub const MAX_CACHE_TTL_SECONDS: u64 = 30 * 24 * 3600;
pub const MAX_CACHE_ENTRY_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone, Copy)]
pub struct Shadow {
    pub route_to: Tier,
}

/// Everything in a tenant file besides keys, models and `auto`.
#[derive(Debug, Clone, Default)]
pub struct TenantPolicy {
    pub budget: Option<Budget>,
    pub rate_limits: RateLimits,
    pub latency: LatencyTargets,
    pub fallbacks: Fallbacks,
    pub stickiness: Option<Stickiness>,
    pub shadow: Option<Shadow>,
    /// `None`: the tenant's answers are never cached.
    pub cache: Option<CachePolicy>,
}

/// Validates the policy sections; `allowed` resolves a model name the tenant may use.
pub(super) fn tenant_policy(
    raw: &RawTenant,
    allowed: &dyn Fn(&str) -> Option<Arc<Model>>,
    models: &HashMap<String, Arc<Model>>,
    p: &mut FileProblems,
) -> TenantPolicy {
    TenantPolicy {
        budget: raw.budget.as_ref().map(|b| budget(b, p)),
        rate_limits: rate_limits(&raw.rate_limits, p),
        latency: latency(&raw.latency, p),
        fallbacks: fallbacks(&raw.fallbacks, allowed, models, p),
        stickiness: raw.stickiness.as_ref().map(|s| Stickiness {
            ttl: Duration::from_secs(positive(&s.ttl_seconds, "stickiness.ttl_seconds", p)),
        }),
        shadow: raw.shadow.as_ref().and_then(|s| {
            let tier = Tier::parse(s.route_to.get_ref());
            if tier.is_none() {
                p.at(
                    s.route_to.span(),
                    "shadow.route_to must be `fast` or `reasoning`",
                );
            }
            tier.map(|route_to| Shadow { route_to })
        }),
        cache: raw.cache.as_ref().and_then(|c| cache(c, p)),
    }
}

fn cache(raw: &RawTenantCache, p: &mut FileProblems) -> Option<CachePolicy> {
    let bounded =
        |v: &Option<Spanned<u64>>, key: &str, default: u64, max: u64, p: &mut FileProblems| match v
        {
            None => default,
            Some(v) if (1..=max).contains(v.get_ref()) => *v.get_ref(),
            Some(v) => {
                p.at(v.span(), format!("cache.{key} must be between 1 and {max}"));
                default
            }
        };
    let ttl = bounded(
        &raw.ttl_seconds,
        "ttl_seconds",
        300,
        MAX_CACHE_TTL_SECONDS,
        p,
    );
    let max_entry_bytes = bounded(
        &raw.max_entry_bytes,
        "max_entry_bytes",
        1024 * 1024,
        MAX_CACHE_ENTRY_BYTES,
        p,
    );
    raw.enabled.unwrap_or(false).then_some(CachePolicy {
        ttl: Duration::from_secs(ttl),
        max_entry_bytes: max_entry_bytes as usize,
        nondeterministic: raw.cache_nondeterministic.unwrap_or(false),
    })
}

fn positive(v: &Spanned<u64>, key: &str, p: &mut FileProblems) -> u64 {
    if *v.get_ref() == 0 {
        p.at(v.span(), format!("{key} must be greater than 0"));
    }
    *v.get_ref()
}

fn usd(v: &Option<Spanned<f64>>, key: &str, p: &mut FileProblems) -> Option<f64> {
    let v = v.as_ref()?;
    let x = *v.get_ref();
    if !(x.is_finite() && x > 0.0) {
        p.at(
            v.span(),
            format!("budget.{key} must be a positive amount in USD"),
        );
        return None;
    }
    Some(x)
}

fn fraction(v: &Option<Spanned<f64>>, key: &str, default: f64, p: &mut FileProblems) -> f64 {
    match v {
        None => default,
        Some(v) if *v.get_ref() > 0.0 && *v.get_ref() <= 1.0 => *v.get_ref(),
        Some(v) => {
            p.at(
                v.span(),
                format!("budget.{key} must be a fraction in (0, 1]"),
            );
            default
        }
    }
}

fn budget(raw: &RawBudget, p: &mut FileProblems) -> Budget {
    let on_limit = match raw
        .on_limit
        .as_ref()
        .map(|v| (v.get_ref().as_str(), v.span()))
    {
        None | Some(("reject", _)) => OnLimit::Reject,
        Some(("downgrade", _)) => OnLimit::Downgrade,
        Some((_, span)) => {
            p.at(span, "budget.on_limit must be `downgrade` or `reject`");
            OnLimit::Reject
        }
    };
    let default_max_tokens = match &raw.default_max_tokens {
        None => 4096,
        Some(v) if (1..=10_000_000).contains(v.get_ref()) => *v.get_ref() as u32,
        Some(v) => {
            p.at(
                v.span(),
                "budget.default_max_tokens must be between 1 and 10000000",
            );
            4096
        }
    };
    Budget {
        daily_usd: usd(&raw.daily_usd, "daily_usd", p),
        monthly_usd: usd(&raw.monthly_usd, "monthly_usd", p),
        per_request_usd: usd(&raw.per_request_usd, "per_request_usd", p),
        soft_limit: fraction(&raw.soft_limit, "soft_limit", 0.8, p),
        soft_reasoning_threshold: fraction(
            &raw.soft_reasoning_threshold,
            "soft_reasoning_threshold",
            0.95,
            p,
        ) as f32,
        on_limit,
        default_max_tokens,
    }
}

fn per_minute(v: &Option<Spanned<u64>>, key: &str, p: &mut FileProblems) -> Option<u32> {
    let v = v.as_ref()?;
    match u32::try_from(*v.get_ref()) {
        Ok(n) if n > 0 => Some(n),
        _ => {
            p.at(
                v.span(),
                format!("rate_limits.{key} must be between 1 and 4294967295"),
            );
            None
        }
    }
}

fn rate_limits(raw: &RawRateLimits, p: &mut FileProblems) -> RateLimits {
    RateLimits {
        requests_per_minute: per_minute(&raw.requests_per_minute, "requests_per_minute", p),
        tokens_per_minute: per_minute(&raw.tokens_per_minute, "tokens_per_minute", p),
    }
}

fn tier_latency(raw: Option<&RawTierLatency>, tier: &str, p: &mut FileProblems) -> TierLatency {
    let Some(raw) = raw else {
        return TierLatency::default();
    };
    let ms = |v: &Option<Spanned<u64>>, key: &str, p: &mut FileProblems| {
        v.as_ref()
            .map(|v| Duration::from_millis(positive(v, &format!("latency.{tier}.{key}"), p)))
    };
    let t = TierLatency {
        first_token: ms(&raw.first_token_ms, "first_token_ms", p),
        total: ms(&raw.total_ms, "total_ms", p),
    };
    if let (Some(first), Some(total), Some(v)) = (t.first_token, t.total, &raw.first_token_ms) {
        if first > total {
            p.at(
                v.span(),
                format!("latency.{tier}.first_token_ms must not exceed total_ms"),
            );
        }
    }
    t
}

fn latency(raw: &RawLatency, p: &mut FileProblems) -> LatencyTargets {
    LatencyTargets {
        fast: tier_latency(raw.fast.as_ref(), "fast", p),
        reasoning: tier_latency(raw.reasoning.as_ref(), "reasoning", p),
    }
}

fn fallbacks(
    raw: &RawFallbacks,
    allowed: &dyn Fn(&str) -> Option<Arc<Model>>,
    models: &HashMap<String, Arc<Model>>,
    p: &mut FileProblems,
) -> Fallbacks {
    let mut chain = |names: &[Spanned<String>], tier: &str| {
        let mut out = Vec::new();
        for name in names {
            match allowed(name.get_ref()) {
                Some(m) => out.push(m),
                None if models.contains_key(name.get_ref()) => p.at(
                    name.span(),
                    format!(
                        "fallbacks.{tier}: model `{}` is not one of this tenant's models (add it to allowed_models)",
                        name.get_ref()
                    ),
                ),
                None => p.at(
                    name.span(),
                    format!(
                        "fallbacks.{tier}: model `{}` is not declared in the config file",
                        name.get_ref()
                    ),
                ),
            }
        }
        out
    };
    Fallbacks {
        fast: chain(&raw.fast, "fast"),
        reasoning: chain(&raw.reasoning, "reasoning"),
    }
}
