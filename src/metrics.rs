//! Every Prometheus metric of the gateway, in one place, on the gateway's own registry.
//!
//! Label values come only from config (tenant names, model names, provider names) or from
//! small enums (tier, outcome = error kind, token kind, decision source): never request ids,
//! prompts, keys or raw error strings, so cardinality stays bounded by the config.
//!
//! Who records what: the metrics layer counts requests from the typed facts on each response
//! (`facts.rs`); `record::CallRecorder` counts what happens upstream (time to first token,
//! tokens, upstream duration) for the model that served.

use std::sync::Arc;

use prometheus::{
    exponential_buckets, CounterVec, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub time_to_first_token: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub tokens: IntCounterVec,
    pub in_flight: IntGauge,
    pub classifier_decisions: IntCounterVec,
    // Spend, budgets, rate limits and routing policies.
    pub cost_usd: CounterVec,
    pub cost_estimated: IntCounterVec,
    pub spend_usd: GaugeVec,
    pub budget_actions: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub shadow_decisions: IntCounterVec,
    // --- Resilience (upstream/deployments.rs, upstream/route.rs, endpoints.rs) ---
    /// 0 closed, 1 open, 2 half-open.
    pub breaker_state: IntGaugeVec,
    pub upstream_retries: IntCounterVec,
    pub fallbacks: IntCounterVec,
    // --- config reload (src/reload.rs) ---
    /// Reloads by result: `success` or `failure` (the old config stayed live).
    pub config_reloads: IntCounterVec,
    /// Generation of the live config: 1 at startup, +1 per successful reload.
    pub config_generation: IntGauge,
    // --- response cache (src/layers/cache.rs) ---
    /// Cacheable-tenant requests by result: `hit`, `miss` or `bypass`.
    pub cache_requests: IntCounterVec,
    /// What the hits would have cost upstream.
    pub cache_saved_usd: CounterVec,
    /// Hits found in the shared (Redis) tier, a subset of `cache_requests{result="hit"}`.
    pub cache_shared_hits: IntCounterVec,
    // --- Redis tier (src/shared/) ---
    /// 1 while the last Redis operation succeeded, 0 after one failed.
    pub redis_up: IntGauge,
    /// Operations Redis did not answer (in time) and that were done locally instead.
    pub redis_fallbacks: IntCounterVec,
}

/// Latency buckets from 5 ms to ~11 min: a fast model answers in a second, a reasoning
/// model may think for minutes.
fn latency_buckets() -> Vec<f64> {
    exponential_buckets(0.005, 2.0, 18).expect("static bucket parameters are valid")
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "deliberate_requests_total",
                "Completed requests by tenant, tier, model and outcome (ok, an error kind, client_disconnected, or cancelled: the client left before the response head).",
            ),
            &["tenant", "tier", "model", "outcome"],
        )
        .expect("valid metric");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "deliberate_request_duration_seconds",
                "Time from request arrival to the end of the response body (end of stream).",
            )
            .buckets(latency_buckets()),
            &["tenant", "tier", "model"],
        )
        .expect("valid metric");
        let time_to_first_token = HistogramVec::new(
            HistogramOpts::new(
                "deliberate_time_to_first_token_seconds",
                "Streaming requests: time from request arrival to the first upstream data.",
            )
            .buckets(latency_buckets()),
            &["tenant", "tier", "model"],
        )
        .expect("valid metric");
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "deliberate_upstream_duration_seconds",
                "Time from sending the upstream request to the end of its response.",
            )
            .buckets(latency_buckets()),
            &["provider", "model"],
        )
        .expect("valid metric");
        let tokens = IntCounterVec::new(
            Opts::new(
                "deliberate_tokens_total",
                "Tokens reported by providers, by kind: input, cached_input, output, reasoning.",
            ),
            &["tenant", "tier", "model", "kind"],
        )
        .expect("valid metric");
        let in_flight = IntGauge::new(
            "deliberate_in_flight_requests",
            "Requests whose response has not ended yet (streams included).",
        )
        .expect("valid metric");
        let classifier_decisions = IntCounterVec::new(
            Opts::new(
                "deliberate_classifier_decisions_total",
                "Tier decisions for virtual models, by tier and by what decided it.",
            ),
            &["tier", "source"],
        )
        .expect("valid metric");
        let cost_usd = CounterVec::new(
            Opts::new(
                "deliberate_cost_usd_total",
                "Cost of completions in USD from the model's prices and the reported (or estimated) usage.",
            ),
            &["tenant", "tier", "model"],
        )
        .expect("valid metric");
        let cost_estimated = IntCounterVec::new(
            Opts::new(
                "deliberate_cost_estimated_total",
                "Completions billed from an estimate because the provider reported no usage (e.g. the client disconnected).",
            ),
            &["tenant", "model"],
        )
        .expect("valid metric");
        let spend_usd = GaugeVec::new(
            Opts::new(
                "deliberate_tenant_spend_usd",
                "Spend of the current UTC day or month per tenant (this replica).",
            ),
            &["tenant", "window"],
        )
        .expect("valid metric");
        let budget_actions = IntCounterVec::new(
            Opts::new(
                "deliberate_budget_actions_total",
                "Budget policy actions: lean (soft limit raised the threshold), downgrade, reject.",
            ),
            &["tenant", "action"],
        )
        .expect("valid metric");
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "deliberate_rate_limited_total",
                "Requests refused with 429 by a tenant rate limit, by limit (requests or tokens).",
            ),
            &["tenant", "limit"],
        )
        .expect("valid metric");
        let shadow_decisions = IntCounterVec::new(
            Opts::new(
                "deliberate_shadow_decisions_total",
                "Shadow mode: the tier the policy would have chosen and the tier actually used.",
            ),
            &["tenant", "would_tier", "routed_tier"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(cost_usd.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(cost_estimated.clone()),
            Box::new(spend_usd.clone()),
            Box::new(budget_actions.clone()),
            Box::new(rate_limited.clone()),
            Box::new(shadow_decisions.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_duration.clone()),
            Box::new(time_to_first_token.clone()),
            Box::new(upstream_duration.clone()),
            Box::new(tokens.clone()),
            Box::new(in_flight.clone()),
            Box::new(classifier_decisions.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        // --- Resilience ---
        let breaker_state = IntGaugeVec::new(
            Opts::new(
                "deliberate_deployment_breaker_state",
                "Circuit breaker of each deployment: 0 closed, 1 open, 2 half-open.",
            ),
            &["model", "deployment"],
        )
        .expect("valid metric");
        let upstream_retries = IntCounterVec::new(
            Opts::new(
                "deliberate_upstream_retries_total",
                "Retried upstream attempts (before the first response byte), by deployment tried.",
            ),
            &["model", "deployment"],
        )
        .expect("valid metric");
        let fallbacks = IntCounterVec::new(
            Opts::new(
                "deliberate_fallbacks_total",
                "Requests handed to a fallback model after the decided model failed.",
            ),
            &["tenant", "from_model", "to_model"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(breaker_state.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(upstream_retries.clone()),
            Box::new(fallbacks.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        // --- config reload (src/reload.rs) ---
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "deliberate_config_reloads_total",
                "Config reloads by result: success, or failure (the previous config stayed live).",
            ),
            &["result"],
        )
        .expect("valid metric");
        for result in ["success", "failure"] {
            config_reloads.with_label_values(&[result]);
        }
        let config_generation = IntGauge::new(
            "deliberate_config_generation",
            "Generation of the live config: 1 at startup, +1 per successful reload.",
        )
        .expect("valid metric");
        config_generation.set(1);
        registry
            .register(Box::new(config_reloads.clone()))
            .expect("metric names are unique");
        registry
            .register(Box::new(config_generation.clone()))
            .expect("metric names are unique");
        // --- response cache (src/layers/cache.rs) ---
        let cache_requests = IntCounterVec::new(
            Opts::new(
                "deliberate_cache_requests_total",
                "Requests of tenants with the response cache on, by result: hit, miss or bypass.",
            ),
            &["tenant", "result"],
        )
        .expect("valid metric");
        let cache_saved_usd = CounterVec::new(
            Opts::new(
                "deliberate_cache_saved_usd_total",
                "What the answers served from the cache cost when they were first produced.",
            ),
            &["tenant"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(cache_requests.clone()))
            .expect("metric names are unique");
        registry
            .register(Box::new(cache_saved_usd.clone()))
            .expect("metric names are unique");
        let cache_shared_hits = IntCounterVec::new(
            Opts::new(
                "deliberate_cache_shared_hits_total",
                "Cache hits found in the shared Redis tier (another replica stored the answer).",
            ),
            &["tenant"],
        )
        .expect("valid metric");
        let redis_up = IntGauge::new(
            "deliberate_redis_up",
            "1 while Redis answers, 0 after an operation failed (local fallback until it answers).",
        )
        .expect("valid metric");
        let redis_fallbacks = IntCounterVec::new(
            Opts::new(
                "deliberate_redis_fallbacks_total",
                "Operations done locally because Redis did not answer in time, by op: cache, budget or rate_limit.",
            ),
            &["op"],
        )
        .expect("valid metric");
        for m in [&cache_shared_hits, &redis_fallbacks] {
            registry
                .register(Box::new(m.clone()))
                .expect("metric names are unique");
        }
        Arc::new(Metrics {
            registry,
            requests,
            request_duration,
            time_to_first_token,
            upstream_duration,
            tokens,
            in_flight,
            classifier_decisions,
            cost_usd,
            cost_estimated,
            spend_usd,
            budget_actions,
            rate_limited,
            shadow_decisions,
            breaker_state,
            upstream_retries,
            fallbacks,
            config_reloads,
            config_generation,
            cache_requests,
            cache_saved_usd,
            cache_shared_hits,
            redis_up,
            redis_fallbacks,
        })
    }

    /// Adds `deliberate_redis_up`: only a gateway with `[redis]` reports it (a gateway
    /// without Redis is not "Redis down").
    pub fn register_redis(&self) {
        let _ = self.registry.register(Box::new(self.redis_up.clone()));
        // Every op's fallback count exists from the start at 0, so that "no fallback" is a
        // sample that says 0 and a first fallback is an increase a rate() can see.
        for op in ["cache", "budget", "rate_limit"] {
            self.redis_fallbacks.with_label_values(&[op]);
        }
    }

    /// The registry in Prometheus text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        out
    }
}

/// Label value for a fact a request does not have (e.g. a 401 has no tenant).
pub const UNKNOWN: &str = "none";
