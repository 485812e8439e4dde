//! Validated configuration: the `Snapshot` every request reads.
//!
//! Loading is two steps: parse strictly (`raw.rs`, unknown keys rejected), then validate into
//! the typed structs below (`validate.rs`), collecting *every* problem with `file:line:column`
//! rather than stopping at the first. A `Snapshot` is immutable; a request loads it once.

mod problem;
pub mod raw;
pub mod redis;
mod second_stage;
mod tenant_policy;
mod validate;
mod validate_models;
mod validate_server;
mod validate_telemetry;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

pub use problem::{ConfigProblem, Problems};
pub use redis::RedisSettings;
pub use tenant_policy::{
    Budget, CachePolicy, Fallbacks, LatencyTargets, OnLimit, RateLimits, Shadow, Stickiness,
    TenantPolicy, TierLatency,
};
pub use validate::{hash_api_key, Loaded};

use crate::classify::Tier;

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub max_request_body_bytes: usize,
    pub max_in_flight_requests: usize,
    /// Threads serving the API listener; `None`: one per available core (startup only).
    pub api_threads: Option<usize>,
    pub shutdown_grace: Duration,
    /// SHA-256 of the admin API token; `None`: the admin API is off (401 for every call).
    pub admin_token_hash: Option<[u8; 32]>,
    /// File-change polling interval; `None`: reload only on SIGHUP.
    pub reload_poll: Option<Duration>,
    /// `[cache] max_bytes`: bound on all cached responses together (startup only).
    pub cache_max_bytes: u64,
    /// `[redis]`: shared state for many replicas (startup only).
    pub redis: Option<RedisSettings>,
    /// Slow-client timeouts and the connection cap (startup only).
    pub connections: ConnectionSettings,
    /// Shape limits on a request body, checked before it is parsed.
    pub body_limits: BodyLimits,
    /// `[second_stage]` (startup only).
    pub second_stage: crate::classify::stage2::Settings,
    /// `[logging]` and `[tracing]` (startup only).
    pub telemetry: TelemetrySettings,
}

/// How the process logs and exports traces.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TelemetrySettings {
    /// `None`: text at a terminal, json elsewhere (the command line and env may override).
    pub log_format: Option<crate::telemetry::LogFormat>,
    /// The OTLP/HTTP traces URL; `None`: only the standard OTEL environment turns export on.
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
    pub sample_ratio: f64,
}

/// How long a client may take, and how many connections may be open (see `server.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionSettings {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub keep_alive_idle_timeout: Duration,
    /// `None`: no HTTP/2 PINGs.
    pub http2_keep_alive_interval: Option<Duration>,
    pub http2_keep_alive_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            // Above the 60 s idle timeout of common load balancers, so they close first.
            keep_alive_idle_timeout: Duration::from_secs(75),
            http2_keep_alive_interval: Some(Duration::from_secs(20)),
            http2_keep_alive_timeout: Duration::from_secs(10),
            max_connections: 4096,
        }
    }
}

/// Limits on the shape of a request body, so a small body cannot become a large tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub max_messages: usize,
    pub max_json_depth: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            max_bytes: 4 * 1024 * 1024,
            max_messages: 4096,
            max_json_depth: 64,
        }
    }
}

/// Retries and circuit breakers for every model's deployments.
#[derive(Debug, Clone, Copy)]
pub struct Resilience {
    pub max_retries: u32,
    pub retry_budget_ratio: f64,
    pub breaker_failures: u32,
    pub breaker_open: Duration,
    /// Cap on a provider's `Retry-After` hold (`max_retry_after_ms`).
    pub max_retry_after: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct TierTimeouts {
    pub connect: Duration,
    pub first_token: Duration,
    pub idle: Duration,
    pub total: Duration,
    pub keepalive_interval: Duration,
}

#[derive(Debug)]
pub enum ProviderKind {
    /// Any OpenAI-compatible Chat Completions API (OpenAI, Azure, vLLM, Ollama, DeepSeek, ...).
    OpenAi,
    /// Anthropic's Messages API, translated both ways.
    Anthropic { version: String },
    /// Built-in deterministic generator for demos, tests and benchmarks.
    Simulated {
        time_to_first_token: Duration,
        tokens_per_second: f64,
    },
}

pub struct Provider {
    pub name: Arc<str>,
    pub kind: ProviderKind,
    /// Base URL without trailing slash, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// The completion endpoint with its query parameters, parsed once at load
    /// (`/chat/completions` or Anthropic's `/v1/messages`); `None` for simulated providers.
    pub endpoint: Option<reqwest::Url>,
    pub auth_header: http::HeaderName,
    /// The ready-to-send auth header value, marked sensitive; `None` if the env var is unset.
    pub api_key: Option<HeaderValue>,
    pub api_key_env: Option<String>,
    /// Whether `x-request-id` goes upstream (OpenAI-compatible providers only).
    pub send_request_id: bool,
    /// Whether W3C `traceparent`/`tracestate` go upstream (not to simulated providers).
    pub send_trace_context: bool,
}

impl std::fmt::Debug for Provider {
    // Hand-written so the key can never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("api_key_env", &self.api_key_env)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Price {
    pub input_per_1m: f64,
    pub output_per_1m: f64,
    pub cached_input_per_1m: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxTokensParam {
    MaxTokens,
    MaxCompletionTokens,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemRole {
    System,
    Developer,
    User,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnsupported {
    Drop,
    Reject,
}

/// What a model accepts; drives parameter translation (no model-name special cases).
#[derive(Debug, Clone)]
pub struct Capabilities {
    pub max_tokens_param: MaxTokensParam,
    pub system_role: SystemRole,
    pub reasoning_effort: bool,
    pub unsupported_params: Vec<String>,
    pub on_unsupported: OnUnsupported,
    /// The model's declared output limit: a larger `max_tokens` is clamped to it, and the
    /// worst case a budget reserves never counts more.
    pub max_output_tokens: Option<u64>,
}

/// One place a model is served from (a region, a key); a model has one or more.
#[derive(Debug)]
pub struct Deployment {
    /// `model@provider`, unique; a metric label and the breaker's key.
    pub id: Arc<str>,
    pub provider: Arc<Provider>,
    pub upstream_model: String,
    pub weight: u32,
}

#[derive(Debug)]
pub struct Model {
    pub name: Arc<str>,
    /// The first deployment's name at its provider.
    pub upstream_model: String,
    /// The first deployment's provider.
    pub provider: Arc<Provider>,
    /// Every deployment, in config order (the first is `provider`/`upstream_model`).
    pub deployments: Vec<Arc<Deployment>>,
    /// A chat model's tier; an embedding model has none of its own and uses the fast
    /// tier's timeouts and client.
    pub tier: Tier,
    pub kind: ModelKind,
    pub price: Price,
    pub capabilities: Capabilities,
}

/// Which endpoints a model serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// Chat completions, and the endpoints translated to them (responses, messages).
    Chat,
    /// `/v1/embeddings` only.
    Embedding,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Chat => "chat",
            ModelKind::Embedding => "embedding",
        }
    }
}

#[derive(Debug)]
pub struct AutoPolicy {
    pub default_tier: Tier,
    /// `None`: the classifier's recommended threshold.
    pub reasoning_threshold: Option<f32>,
}

#[derive(Debug)]
pub struct Tenant {
    pub name: Arc<str>,
    pub fast_model: Arc<Model>,
    pub reasoning_model: Arc<Model>,
    /// Concrete models the tenant may name, tier models included, in config order.
    pub allowed_models: Vec<Arc<Model>>,
    /// The `embedding_model` policy key (also in `allowed_models`).
    pub embedding_model: Option<Arc<Model>>,
    pub auto: AutoPolicy,
    pub policy: TenantPolicy,
}

impl Tenant {
    pub fn tier_model(&self, tier: Tier) -> &Arc<Model> {
        match tier {
            Tier::Fast => &self.fast_model,
            Tier::Reasoning => &self.reasoning_model,
        }
    }

    pub fn allowed_model(&self, name: &str) -> Option<&Arc<Model>> {
        self.allowed_models.iter().find(|m| &*m.name == name)
    }
}

/// Everything a request needs from config, swapped as one unit.
#[derive(Debug)]
pub struct Snapshot {
    pub server: ServerSettings,
    pub fast_timeouts: TierTimeouts,
    pub reasoning_timeouts: TierTimeouts,
    pub models: HashMap<String, Arc<Model>>,
    pub tenants: Vec<Arc<Tenant>>,
    /// SHA-256 of each API key -> its tenant.
    pub tenants_by_key_hash: HashMap<[u8; 32], Arc<Tenant>>,
    pub resilience: Resilience,
    /// Where it came from, for `check` and logs.
    pub sources: Vec<PathBuf>,
    /// SHA-256 (hex) over every source file's path and text: what the admin API reports.
    pub content_hash: String,
    /// SHA-256 over the file names and texts only (not their directories): equal on every
    /// replica that runs the same config, so shared cache entries are scoped by it.
    pub fingerprint: [u8; 32],
    /// Set when the snapshot goes live: 1 for the first, +1 per successful reload.
    pub generation: u64,
}

impl Snapshot {
    pub fn timeouts(&self, tier: Tier) -> &TierTimeouts {
        match tier {
            Tier::Fast => &self.fast_timeouts,
            Tier::Reasoning => &self.reasoning_timeouts,
        }
    }

    pub fn tenant_for_key(&self, key: &str) -> Option<&Arc<Tenant>> {
        self.tenants_by_key_hash.get(&hash_api_key(key))
    }

    pub fn tenant(&self, name: &str) -> Option<&Arc<Tenant>> {
        self.tenants.iter().find(|t| &*t.name == name)
    }
}

/// Loads `deliberate.toml` and every `*.toml` in the policies directory.
pub fn load(config: &Path, policies_dir: &Path) -> Result<Loaded, Problems> {
    validate::load_files(config, policies_dir)
}

/// Loads a config and tenant policies from text (named as if read from those paths): the
/// same checks as `load`, for tools and tests that hold the files in memory.
pub fn load_texts(config: &str, policies: &[(&str, &str)]) -> Result<Loaded, Problems> {
    validate::load_sources(
        (Path::new("deliberate.toml"), config),
        policies
            .iter()
            .map(|(name, text)| (PathBuf::from("policies").join(name), text.to_string()))
            .collect(),
    )
}

/// The built-in demo: simulated provider behind both tiers and two tenants: `demo` (key
/// `deliberate-demo`: the response cache, a generous rate limit) and `trial` (key
/// `deliberate-trial`: a rate limit and a budget small enough to hit in a minute). Same
/// loader as real files, so the demo cannot drift from the format. `crate::demo` holds
/// the guide `serve --demo` prints.
pub fn demo() -> Loaded {
    validate::load_sources(
        (Path::new("<demo>/deliberate.toml"), DEMO_CONFIG),
        vec![
            (
                PathBuf::from("<demo>/policies/demo.toml"),
                DEMO_TENANT.to_string(),
            ),
            (
                PathBuf::from("<demo>/policies/trial.toml"),
                DEMO_TRIAL_TENANT.to_string(),
            ),
        ],
    )
    .expect("the built-in demo config is valid")
}

pub const DEMO_API_KEY: &str = "deliberate-demo";
pub const DEMO_TRIAL_API_KEY: &str = "deliberate-trial";

const DEMO_CONFIG: &str = r#"
[providers.simulated]
kind = "simulated"
time_to_first_token_ms = 150
tokens_per_second = 400

[providers.simulated-reasoning]
kind = "simulated"
time_to_first_token_ms = 1200
tokens_per_second = 150

[models.sim-fast]
provider = "simulated"
tier = "fast"
price = { input_per_1m = 0.15, output_per_1m = 0.60, cached_input_per_1m = 0.075 }

[models.sim-reasoning]
provider = "simulated-reasoning"
tier = "reasoning"
price = { input_per_1m = 1.10, output_per_1m = 4.40, cached_input_per_1m = 0.55 }
capabilities = { max_tokens_param = "max_completion_tokens", system_role = "developer", reasoning_effort = true, unsupported_params = ["temperature", "top_p", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs", "logit_bias"], on_unsupported = "drop" }

[models.sim-embed]
provider = "simulated"
kind = "embedding"
price = { input_per_1m = 0.02 }
"#;

const DEMO_TENANT: &str = r#"
name = "demo"
description = "Built-in demo tenant (serve --demo): routing, the response cache, a generous rate limit."
# sha256("deliberate-demo")
api_keys = [{ sha256 = "c7fa7b6662c547fa9cadb4ad755e0f63c0dd1328e4d703b96601d331245f8bf4" }]
fast_model = "sim-fast"
reasoning_model = "sim-reasoning"
embedding_model = "sim-embed"

# Deterministic requests (temperature 0 or a seed) are answered from the cache when repeated.
[cache]
enabled = true
ttl_seconds = 600

# High enough never to get in the way; every answer shows the x-ratelimit-* headers.
[rate_limits]
requests_per_minute = 600
"#;

const DEMO_TRIAL_TENANT: &str = r#"
name = "trial"
description = "Built-in demo tenant (serve --demo) with limits you can hit in a minute."
# sha256("deliberate-trial")
api_keys = [{ sha256 = "e4dee862a0d2791a04103f445be08b43e006bfdd931b9dab3964a565f4bc98cb" }]
fast_model = "sim-fast"
reasoning_model = "sim-reasoning"
embedding_model = "sim-embed"

# The 6th request within a minute gets 429 rate_limit_exceeded.
[rate_limits]
requests_per_minute = 5

# A reasoning answer's worst case (4096 output tokens at $4.40/1M, about $0.018) does not
# fit: it is refused with 429 budget_exceeded. Fast answers (about $0.0025 reserved, a few
# hundredths of a cent spent) fit.
[budget]
daily_usd = 0.01
on_limit = "reject"
"#;
