//! Every Prometheus metric of the gateway, in one place, on the gateway's own registry.
//!
//! Label values come only from config (tenant names, model names, provider names) or from
//! small enums (tier, outcome = error kind, class, token kind, decision source): never
//! request ids, prompts, keys or raw error strings, so cardinality stays bounded by the config.
//!
//! Who records what: the metrics layer counts requests from the typed facts on each response
//! (`facts.rs`); `record::CallRecorder` counts what happens upstream (time to first token,
//! tokens, upstream duration) for the model that served. `series.rs` creates at zero the
//! series the config names (so a first failure is an increase, not a new series) and sets
//! the gauges of config values; `admin::scrape` sets, at each scrape, the gauges that
//! describe state that changes with time alone (breakers, spend windows).
//!
//! A scrape renders under one lock, and the code that resets and refills a gauge family
//! takes the same lock (`update`), so no scrape sees a family half refilled.

mod outcome;
mod overhead;
mod series;

use std::sync::{Arc, Mutex};

use prometheus::{
    exponential_buckets, CounterVec, Encoder, Gauge, GaugeVec, Histogram, HistogramOpts,
    HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub use outcome::OutcomeClass;
pub use overhead::Overhead;
pub use series::declare_config;

pub struct Metrics {
    registry: Registry,
    /// Held while a scrape renders or a family is refilled (see the module docs).
    scrape: Mutex<()>,
    /// By tenant, tier, model, outcome and `class` (`OutcomeClass`).
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub time_to_first_token: HistogramVec,
    pub upstream_duration: HistogramVec,
    /// `deliberate_overhead_seconds` by stage (`overhead.rs`).
    pub overhead: Overhead,
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
    /// 0 closed, 1 open, 2 half-open; set at each scrape (`admin::scrape`).
    pub breaker_state: IntGaugeVec,
    /// Times each deployment's breaker opened (re-opened after a failed probe included);
    /// brought up to the registry's count at each scrape.
    pub breaker_opened: IntCounterVec,
    pub upstream_retries: IntCounterVec,
    pub fallbacks: IntCounterVec,
    // --- config reload (src/reload.rs) ---
    /// Reloads by result: `success` or `failure` (the old config stayed live).
    pub config_reloads: IntCounterVec,
    /// Generation of the live config: 1 at startup, +1 per successful reload.
    pub config_generation: IntGauge,
    /// 1 if the last reload (or the startup load) succeeded, 0 while the files on disk are
    /// rejected: stays 0 until a reload succeeds.
    pub config_last_reload_successful: IntGauge,
    /// Unix time the live config went live (startup or the last successful reload).
    pub config_last_reload_success_time: Gauge,
    // --- config values (series.rs) ---
    /// `server.max_in_flight_requests` in effect (startup only).
    pub max_in_flight: IntGauge,
    /// Each tenant's daily and monthly budget, by window: what `spend_usd` is measured against.
    pub budget_limit_usd: GaugeVec,
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
    // --- second stage (src/classify/stage2/) ---
    /// Requests whose first-stage score fell in the uncertain band, by outcome.
    pub second_stage: IntCounterVec,
    /// How long such a request waited on the second stage.
    pub second_stage_duration: Histogram,
}

/// Latency buckets from 5 ms to ~11 min: a fast model answers in a second, a reasoning
/// model may think for minutes.
fn latency_buckets() -> Vec<f64> {
    exponential_buckets(0.005, 2.0, 18).expect("static bucket parameters are valid")
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        let overhead = Overhead::register(&registry);
        let requests = IntCounterVec::new(
            Opts::new(
                "deliberate_requests_total",
                "Completed requests by tenant, tier, model, outcome (ok, an error kind, client_disconnected, or cancelled: the client left before the response head) and class (ok, client_error, server_error, client_gone).",
            ),
            &["tenant", "tier", "model", "outcome", "class"],
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
        let breaker_opened = IntCounterVec::new(
            Opts::new(
                "deliberate_deployment_breaker_opened_total",
                "Times a deployment's circuit breaker opened, re-opening after a failed half-open probe included.",
            ),
            &["model", "deployment"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(breaker_state.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(breaker_opened.clone()),
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
        let config_last_reload_successful = IntGauge::new(
            "deliberate_config_last_reload_successful",
            "1 if the last config load (startup or reload) succeeded, 0 while the files are rejected and an older config serves.",
        )
        .expect("valid metric");
        config_last_reload_successful.set(1);
        let config_last_reload_success_time = Gauge::new(
            "deliberate_config_last_reload_success_timestamp_seconds",
            "Unix time the live config went live (startup or the last successful reload).",
        )
        .expect("valid metric");
        config_last_reload_success_time.set(unix_now());
        let max_in_flight = IntGauge::new(
            "deliberate_max_in_flight_requests",
            "server.max_in_flight_requests in effect: past it requests are shed with 503.",
        )
        .expect("valid metric");
        let budget_limit_usd = GaugeVec::new(
            Opts::new(
                "deliberate_tenant_budget_limit_usd",
                "A tenant's budget per window (day, month), from its policy: compare with deliberate_tenant_spend_usd.",
            ),
            &["tenant", "window"],
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "deliberate_build_info",
                "Always 1; the labels say which build runs (revision: DELIBERATE_REVISION at build time, or unknown).",
            ),
            &["version", "revision"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("DELIBERATE_REVISION").unwrap_or("unknown"),
            ])
            .set(1);
        for collector in [
            Box::new(config_reloads.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(config_generation.clone()),
            Box::new(config_last_reload_successful.clone()),
            Box::new(config_last_reload_success_time.clone()),
            Box::new(max_in_flight.clone()),
            Box::new(budget_limit_usd.clone()),
            Box::new(build_info),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        // process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds,
        // process_max_fds, process_start_time_seconds, ... read from /proc at each scrape.
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
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
        let second_stage = IntCounterVec::new(
            Opts::new(
                "deliberate_second_stage_requests_total",
                "Requests whose first-stage score fell in the uncertain band, by outcome: used, timeout, busy (pool full), unavailable (no model) or error; all but used kept the first-stage score.",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let second_stage_duration = Histogram::with_opts(
            HistogramOpts::new(
                "deliberate_second_stage_duration_seconds",
                "Time a request waited on the second stage (queue and encoder), outcomes used, timeout and error.",
            )
            .buckets(exponential_buckets(0.001, 2.0, 10).expect("static bucket parameters")),
        )
        .expect("valid metric");
        registry
            .register(Box::new(second_stage_duration.clone()))
            .expect("metric names are unique");
        for m in [&cache_shared_hits, &redis_fallbacks, &second_stage] {
            registry
                .register(Box::new(m.clone()))
                .expect("metric names are unique");
        }
        Arc::new(Metrics {
            registry,
            scrape: Mutex::new(()),
            requests,
            request_duration,
            time_to_first_token,
            upstream_duration,
            overhead,
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
            breaker_opened,
            upstream_retries,
            fallbacks,
            config_reloads,
            config_generation,
            config_last_reload_successful,
            config_last_reload_success_time,
            max_in_flight,
            budget_limit_usd,
            cache_requests,
            cache_saved_usd,
            cache_shared_hits,
            redis_up,
            redis_fallbacks,
            second_stage,
            second_stage_duration,
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

    /// Runs `refill` while no scrape renders: for code that resets a family and sets it again.
    pub fn update(&self, refill: impl FnOnce(&Metrics)) {
        let _one_at_a_time = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        refill(self);
    }

    /// The registry in Prometheus text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let _one_at_a_time = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::with_capacity(8 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        out
    }
}

/// Label value for a fact a request does not have (e.g. a 401 has no tenant).
pub const UNKNOWN: &str = "none";

/// Now as Unix seconds (for timestamp gauges).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
