//! The config files exactly as written: serde structs that reject unknown keys.
//!
//! Nothing here is trusted yet. `validate.rs` turns these into the typed `Snapshot`,
//! reporting every problem with its file, line and column (hence the `Spanned` fields:
//! a problem about a value points at that value).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// `deliberate.toml`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub tiers: RawTiers,
    #[serde(default)]
    pub providers: BTreeMap<Spanned<String>, RawProvider>,
    #[serde(default)]
    pub models: BTreeMap<Spanned<String>, RawModel>,
    #[serde(default)]
    pub resilience: RawResilience,
    #[serde(default)]
    pub cache: RawCache,
    /// Shared state for many replicas; absent: everything stays in this process.
    pub redis: Option<RawRedis>,
    #[serde(default)]
    pub second_stage: RawSecondStage,
    #[serde(default)]
    pub logging: RawLogging,
    #[serde(default)]
    pub tracing: RawTracing,
}

/// `[logging]`: how log lines are written (startup only).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLogging {
    /// `text` or `json`; default: text at a terminal, json elsewhere.
    pub format: Option<Spanned<String>>,
}

/// `[tracing]`: OpenTelemetry export over OTLP/HTTP (startup only).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    /// Base URL of an OTLP/HTTP receiver (`/v1/traces` is appended); absent: traces are
    /// exported only if `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
    pub otlp_endpoint: Option<Spanned<String>>,
    pub service_name: Option<Spanned<String>>,
    /// Share of new traces kept (a client's sampled flag is followed).
    pub sample_ratio: Option<Spanned<f64>>,
}

/// `[second_stage]` in `deliberate.toml`: the encoder asked about uncertain requests
/// (see `classify::stage2`). Read at startup.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSecondStage {
    pub enabled: Option<Spanned<bool>>,
    /// Relative paths are relative to the working directory (as `--config` is).
    pub model_dir: Option<Spanned<String>>,
    pub head_file: Option<Spanned<String>>,
    /// Longest a request waits on it (queue included) before keeping the first-stage score.
    pub budget_ms: Option<Spanned<u64>>,
    pub max_concurrent: Option<Spanned<u64>>,
    /// Calls waiting for a free slot at most; past it a request keeps its first-stage score.
    pub max_queue: Option<Spanned<u64>>,
    /// Tokens of the prompt the encoder reads, at most 512.
    pub window_tokens: Option<Spanned<u64>>,
    /// The uncertain band of first-stage scores (default: the head file's).
    pub band_lower: Option<Spanned<f64>>,
    pub band_upper: Option<Spanned<f64>>,
}

/// `[redis]` in `deliberate.toml`: the shared cache, budget and rate-limit tier.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    /// `redis://[user:password@]host:port[/db]`; may hold a password, so prefer `url_env`.
    pub url: Option<Spanned<String>>,
    /// Environment variable holding the URL.
    pub url_env: Option<Spanned<String>>,
    /// Prefix of every key the gateway writes.
    pub key_prefix: Option<Spanned<String>>,
    /// Per-operation limit; past it the operation fails open (local fallback).
    pub timeout_ms: Option<Spanned<u64>>,
    /// PEM root certificate(s) for `rediss://` servers signed by a private CA.
    pub tls_ca_file: Option<Spanned<String>>,
}

/// `[cache]` in `deliberate.toml`: the response cache shared by every tenant.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// Bound on the bytes of all stored responses together.
    pub max_bytes: Option<Spanned<u64>>,
}

/// Retries and circuit breakers, for every model's deployments.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawResilience {
    /// Extra attempts per request, only before the first response byte.
    pub max_retries: Option<Spanned<u64>>,
    /// Retries may add at most this fraction of the request rate (a retry budget).
    pub retry_budget_ratio: Option<Spanned<f64>>,
    /// Consecutive failures that open a deployment's breaker.
    pub breaker_failures: Option<Spanned<u64>>,
    /// How long an open breaker rejects before it lets one probe through.
    pub breaker_open_ms: Option<Spanned<u64>>,
    /// The longest a provider's `Retry-After` may keep a deployment out.
    pub max_retry_after_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<Spanned<String>>,
    pub admin_listen: Option<Spanned<String>>,
    pub max_request_body_bytes: Option<Spanned<u64>>,
    pub max_in_flight_requests: Option<Spanned<u64>>,
    /// Threads serving the API listener (default: one per available core).
    pub api_threads: Option<Spanned<u64>>,
    pub shutdown_grace_ms: Option<Spanned<u64>>,
    /// Environment variable holding the admin API token (never the token itself).
    pub admin_token_env: Option<Spanned<String>>,
    /// How often the config files are checked for changes (0 = only on SIGHUP).
    pub reload_poll_ms: Option<Spanned<u64>>,
    /// A new connection, or an idle one that began a request, must finish its headers in this.
    pub header_read_timeout_ms: Option<Spanned<u64>>,
    /// The whole request body must arrive within this of the headers (else 408).
    pub body_read_timeout_ms: Option<Spanned<u64>>,
    /// An open connection with no request in progress is closed after this.
    pub keep_alive_idle_timeout_ms: Option<Spanned<u64>>,
    /// HTTP/2 PING interval (0 = off) and how long to wait for the answer.
    pub http2_keep_alive_interval_ms: Option<Spanned<u64>>,
    pub http2_keep_alive_timeout_ms: Option<Spanned<u64>>,
    /// Open client connections at most; past it the accept loop waits.
    pub max_connections: Option<Spanned<u64>>,
    /// `messages` entries per request at most (400 past it).
    pub max_messages: Option<Spanned<u64>>,
    /// Nesting depth of the request JSON at most (400 past it).
    pub max_json_depth: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTiers {
    pub fast: Option<RawTierTimeouts>,
    pub reasoning: Option<RawTierTimeouts>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTierTimeouts {
    pub connect_timeout_ms: Option<Spanned<u64>>,
    pub first_token_timeout_ms: Option<Spanned<u64>>,
    pub idle_timeout_ms: Option<Spanned<u64>>,
    pub total_timeout_ms: Option<Spanned<u64>>,
    pub keepalive_interval_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub kind: Spanned<String>,
    pub base_url: Option<Spanned<String>>,
    /// Name of the environment variable holding the provider key (never the key itself).
    pub api_key_env: Option<Spanned<String>>,
    /// Header carrying the key: `authorization` (Bearer, default), `api-key` (Azure),
    /// `x-api-key` (Anthropic's default).
    pub auth_header: Option<Spanned<String>>,
    /// Extra query parameters on every call (Azure's `api-version`).
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Anthropic: value of the `anthropic-version` header.
    pub anthropic_version: Option<Spanned<String>>,
    /// OpenAI-compatible provider: send the request id upstream as `x-request-id` (default
    /// true; only ever a UUID, which every server accepts).
    pub send_request_id: Option<Spanned<bool>>,
    /// OpenAI-compatible or Anthropic provider: send W3C `traceparent`/`tracestate` upstream
    /// (default true).
    pub send_trace_context: Option<Spanned<bool>>,
    /// Simulated provider: milliseconds before the first token.
    pub time_to_first_token_ms: Option<Spanned<u64>>,
    /// Simulated provider: generation speed.
    pub tokens_per_second: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// One deployment: the provider serving this model. Exclusive with `deployments`.
    pub provider: Option<Spanned<String>>,
    /// Several deployments (regions, keys) of the same model.
    #[serde(default)]
    pub deployments: Vec<Spanned<RawDeployment>>,
    /// `fast` or `reasoning`; required for chat models, absent for embedding models.
    pub tier: Option<Spanned<String>>,
    /// `chat` (the default) or `embedding` (served on `/v1/embeddings` only).
    pub kind: Option<Spanned<String>>,
    /// The model's name at the provider (deployment name on Azure); defaults to the key.
    pub upstream_model: Option<String>,
    pub price: Option<RawPrice>,
    #[serde(default)]
    pub capabilities: RawCapabilities,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeployment {
    pub provider: Spanned<String>,
    /// The model's name at this provider; defaults to the model's `upstream_model`.
    pub upstream_model: Option<String>,
    /// Share of traffic relative to the other deployments (default 1).
    pub weight: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    pub input_per_1m: Option<Spanned<f64>>,
    pub output_per_1m: Option<Spanned<f64>>,
    pub cached_input_per_1m: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCapabilities {
    /// `max_tokens` or `max_completion_tokens`.
    pub max_tokens_param: Option<Spanned<String>>,
    /// Role that `system` messages are sent as: `system`, `developer` or `user`.
    pub system_role: Option<Spanned<String>>,
    pub reasoning_effort: Option<bool>,
    /// Top-level request fields this model does not accept.
    #[serde(default)]
    pub unsupported_params: Vec<Spanned<String>>,
    /// `drop` (remove them, say so in `x-deliberate-adjusted`) or `reject` (400).
    pub on_unsupported: Option<Spanned<String>>,
    /// The most output tokens the model produces; larger requested limits are clamped.
    pub max_output_tokens: Option<Spanned<i64>>,
}

/// `policies/<tenant>.toml`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenant {
    pub name: Option<Spanned<String>>,
    pub description: Option<String>,
    #[serde(default)]
    pub api_keys: Vec<Spanned<RawApiKey>>,
    pub fast_model: Spanned<String>,
    pub reasoning_model: Spanned<String>,
    #[serde(default)]
    pub allowed_models: Vec<Spanned<String>>,
    /// The model `/v1/embeddings` uses unless the request names another allowed one.
    pub embedding_model: Option<Spanned<String>>,
    #[serde(default)]
    pub auto: RawAuto,
    pub budget: Option<RawBudget>,
    #[serde(default)]
    pub rate_limits: RawRateLimits,
    #[serde(default)]
    pub latency: RawLatency,
    #[serde(default)]
    pub fallbacks: RawFallbacks,
    pub stickiness: Option<RawStickiness>,
    pub shadow: Option<RawShadow>,
    pub cache: Option<RawTenantCache>,
}

/// `[cache]` in a tenant file: whether and how its answers are cached.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenantCache {
    pub enabled: Option<bool>,
    pub ttl_seconds: Option<Spanned<u64>>,
    pub max_entry_bytes: Option<Spanned<u64>>,
    /// Also cache sampled answers (no `temperature = 0`, no `seed`).
    pub cache_nondeterministic: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    pub daily_usd: Option<Spanned<f64>>,
    pub monthly_usd: Option<Spanned<f64>>,
    pub per_request_usd: Option<Spanned<f64>>,
    /// Fraction of the daily or monthly limit from which `auto` leans to fast.
    pub soft_limit: Option<Spanned<f64>>,
    /// The reasoning threshold `auto` uses past the soft limit.
    pub soft_reasoning_threshold: Option<Spanned<f64>>,
    /// At the limit: `downgrade` (to the fast tier) or `reject` (429).
    pub on_limit: Option<Spanned<String>>,
    /// Output tokens assumed for the worst-case reservation when a request sets no limit.
    pub default_max_tokens: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimits {
    pub requests_per_minute: Option<Spanned<u64>>,
    pub tokens_per_minute: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLatency {
    pub fast: Option<RawTierLatency>,
    pub reasoning: Option<RawTierLatency>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTierLatency {
    pub first_token_ms: Option<Spanned<u64>>,
    pub total_ms: Option<Spanned<u64>>,
}

/// Models tried, in order, when a tier's model fails before its first byte.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawFallbacks {
    #[serde(default)]
    pub fast: Vec<Spanned<String>>,
    #[serde(default)]
    pub reasoning: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStickiness {
    pub ttl_seconds: Spanned<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShadow {
    /// The tier every `auto` request goes to while the policy is only evaluated.
    pub route_to: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKey {
    /// Hex SHA-256 of the key.
    pub sha256: Option<Spanned<String>>,
    /// Environment variable holding the key in clear.
    pub env: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAuto {
    /// Tier for `auto` when there is no user text to classify.
    pub default_tier: Option<Spanned<String>>,
    /// Classifier score at or above which `auto` picks the reasoning tier.
    pub reasoning_threshold: Option<Spanned<f64>>,
}
