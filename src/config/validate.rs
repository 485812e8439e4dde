//! Raw config -> validated `Snapshot`, reporting every problem with its location.
//!
//! Rules that span files (a model naming a provider, a tenant naming a model, one key used
//! by two tenants) are checked here too, so `deliberate check` and a reload see the same
//! verdict as startup.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use toml::Spanned;

use super::problem::{ConfigProblem, FileProblems, Problems};
use super::raw::*;
use super::*;

/// A validated snapshot plus the warnings worth printing (e.g. an unset key variable).
#[derive(Debug)]
pub struct Loaded {
    pub snapshot: Snapshot,
    pub warnings: Vec<ConfigProblem>,
}

pub fn hash_api_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

pub(super) fn load_files(config: &Path, policies_dir: &Path) -> Result<Loaded, Problems> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| {
            Problems(vec![ConfigProblem {
                file: path.to_path_buf(),
                line: 1,
                column: 1,
                message: format!("cannot read file: {e}"),
            }])
        })
    };
    let config_text = read(config)?;
    let mut policy_paths: Vec<PathBuf> = std::fs::read_dir(policies_dir)
        .map_err(|e| {
            Problems(vec![ConfigProblem {
                file: policies_dir.to_path_buf(),
                line: 1,
                column: 1,
                message: format!("cannot read policies directory: {e}"),
            }])
        })?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    policy_paths.sort();
    let mut policies = Vec::with_capacity(policy_paths.len());
    for path in policy_paths {
        let text = read(&path)?;
        policies.push((path, text));
    }
    if policies.is_empty() {
        return Err(Problems(vec![ConfigProblem {
            file: policies_dir.to_path_buf(),
            line: 1,
            column: 1,
            message: "no tenant policies (*.toml) found".into(),
        }]));
    }
    load_sources((config, &config_text), policies)
}

pub(super) fn load_sources(
    (config_path, config_text): (&Path, &str),
    policies: Vec<(PathBuf, String)>,
) -> Result<Loaded, Problems> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();

    let raw: RawConfig = match toml::from_str(config_text) {
        Ok(raw) => raw,
        Err(e) => {
            let mut p = FileProblems {
                file: config_path,
                text: config_text,
                out: &mut problems,
            };
            p.at(e.span().unwrap_or(0..0), e.message().to_string());
            return Err(Problems(problems));
        }
    };
    let mut p = FileProblems {
        file: config_path,
        text: config_text,
        out: &mut problems,
    };
    let mut w = Vec::new();
    let server = server_settings(&raw.server, &raw.cache, &mut p);
    let fast_timeouts = tier_timeouts(raw.tiers.fast.as_ref(), FAST_DEFAULTS, &mut p);
    let reasoning_timeouts =
        tier_timeouts(raw.tiers.reasoning.as_ref(), REASONING_DEFAULTS, &mut p);
    let mut providers = HashMap::new();
    for (name, raw_provider) in &raw.providers {
        if let Some(provider) = provider(name, raw_provider, &mut p, &mut w, config_path) {
            providers.insert(name.get_ref().clone(), Arc::new(provider));
        }
    }
    let declared_providers: HashSet<&str> =
        raw.providers.keys().map(|k| k.get_ref().as_str()).collect();
    let resilience = resilience(&raw.resilience, &mut p);
    let mut models = HashMap::new();
    for (name, raw_model) in &raw.models {
        if let Some(model) = model(name, raw_model, &providers, &declared_providers, &mut p) {
            models.insert(name.get_ref().clone(), Arc::new(model));
        }
    }
    warnings.extend(w);

    let declared_models: HashSet<&str> = raw.models.keys().map(|k| k.get_ref().as_str()).collect();
    let mut tenants = Vec::new();
    let mut tenants_by_key_hash = HashMap::new();
    let mut tenant_names = HashSet::new();
    let mut sources = vec![config_path.to_path_buf()];
    for (path, text) in &policies {
        sources.push(path.clone());
        let mut p = FileProblems {
            file: path,
            text,
            out: &mut problems,
        };
        let raw_tenant: RawTenant = match toml::from_str(text) {
            Ok(t) => t,
            Err(e) => {
                p.at(e.span().unwrap_or(0..0), e.message().to_string());
                continue;
            }
        };
        let mut w = Vec::new();
        let mut tp = TenantProblems {
            p: &mut p,
            warnings: &mut w,
            path,
        };
        if let Some((tenant, key_hashes)) =
            tenant(path, &raw_tenant, &models, &declared_models, &mut tp)
        {
            if !tenant_names.insert(tenant.name.clone()) {
                let span = raw_tenant.name.as_ref().map(|n| n.span()).unwrap_or(0..0);
                p.at(span, format!("tenant name `{}` is used twice", tenant.name));
                continue;
            }
            let tenant = Arc::new(tenant);
            for (hash, span) in key_hashes {
                if tenants_by_key_hash.insert(hash, tenant.clone()).is_some() {
                    p.at(span, "this API key already belongs to another tenant");
                }
            }
            tenants.push(tenant);
        }
        warnings.extend(w);
    }

    if !problems.is_empty() {
        problems.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        return Err(Problems(problems));
    }
    warnings.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    let mut hasher = Sha256::new();
    hasher.update(config_path.to_string_lossy().as_bytes());
    hasher.update([0]);
    hasher.update(config_text.as_bytes());
    for (path, text) in &policies {
        hasher.update([0]);
        hasher.update(path.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
    }
    Ok(Loaded {
        snapshot: Snapshot {
            server: server.expect("no problems means server settings are valid"),
            fast_timeouts,
            reasoning_timeouts,
            models,
            tenants,
            tenants_by_key_hash,
            resilience,
            sources,
            content_hash: hex::encode(hasher.finalize()),
            generation: 0,
        },
        warnings,
    })
}

fn server_settings(
    raw: &RawServer,
    cache: &RawCache,
    p: &mut FileProblems,
) -> Option<ServerSettings> {
    let addr = |v: &Option<Spanned<String>>, default: &str, p: &mut FileProblems| {
        let Some(v) = v else {
            return default.parse::<SocketAddr>().ok();
        };
        match v.get_ref().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                p.at(
                    v.span(),
                    "expected a socket address like \"127.0.0.1:8080\"",
                );
                None
            }
        }
    };
    let listen = addr(&raw.listen, "127.0.0.1:8080", p);
    let admin_listen = addr(&raw.admin_listen, "127.0.0.1:9090", p);
    let body = positive(&raw.max_request_body_bytes, 4 * 1024 * 1024, p);
    let in_flight = positive(&raw.max_in_flight_requests, 4096, p);
    let grace = positive(&raw.shutdown_grace_ms, 30_000, p);
    let admin_token_hash = match &raw.admin_token_env {
        None => None,
        Some(env) if !valid_env_name(env.get_ref()) => {
            p.at(
                env.span(),
                "admin_token_env must name an environment variable (A-Z, 0-9, _)",
            );
            None
        }
        Some(env) => std::env::var(env.get_ref())
            .ok()
            .filter(|t| !t.is_empty())
            .map(|t| hash_api_key(&t)),
    };
    let reload_poll = match &raw.reload_poll_ms {
        None => Some(Duration::from_secs(2)),
        Some(v) if *v.get_ref() == 0 => None,
        Some(v) => Some(Duration::from_millis(*v.get_ref())),
    };
    let cache_max_bytes = positive(&cache.max_bytes, 64 * 1024 * 1024, p);
    Some(ServerSettings {
        cache_max_bytes,
        admin_token_hash,
        reload_poll,
        listen: listen?,
        admin_listen: admin_listen?,
        max_request_body_bytes: body as usize,
        max_in_flight_requests: in_flight as usize,
        shutdown_grace: Duration::from_millis(grace),
    })
}

fn resilience(raw: &RawResilience, p: &mut FileProblems) -> Resilience {
    let max_retries = match &raw.max_retries {
        None => 2,
        Some(v) if *v.get_ref() <= 10 => *v.get_ref() as u32,
        Some(v) => {
            p.at(v.span(), "resilience.max_retries must be at most 10");
            2
        }
    };
    let retry_budget_ratio = match &raw.retry_budget_ratio {
        None => 0.2,
        Some(v) if (0.0..=1.0).contains(v.get_ref()) => *v.get_ref(),
        Some(v) => {
            p.at(
                v.span(),
                "resilience.retry_budget_ratio must be between 0 and 1",
            );
            0.2
        }
    };
    Resilience {
        max_retries,
        retry_budget_ratio,
        breaker_failures: positive(&raw.breaker_failures, 5, p).min(u32::MAX as u64) as u32,
        breaker_open: Duration::from_millis(positive(&raw.breaker_open_ms, 30_000, p)),
    }
}

fn positive(v: &Option<Spanned<u64>>, default: u64, p: &mut FileProblems) -> u64 {
    match v {
        None => default,
        Some(v) if *v.get_ref() == 0 => {
            p.at(v.span(), "must be greater than 0");
            default
        }
        Some(v) => *v.get_ref(),
    }
}

/// (connect, first token, idle, total, keep-alive) in ms.
type TimeoutDefaults = (u64, u64, u64, u64, u64);
const FAST_DEFAULTS: TimeoutDefaults = (5_000, 30_000, 30_000, 120_000, 10_000);
// A reasoning model may think for minutes before its first token.
const REASONING_DEFAULTS: TimeoutDefaults = (5_000, 600_000, 120_000, 900_000, 10_000);

fn tier_timeouts(
    raw: Option<&RawTierTimeouts>,
    d: TimeoutDefaults,
    p: &mut FileProblems,
) -> TierTimeouts {
    let empty = RawTierTimeouts::default();
    let raw = raw.unwrap_or(&empty);
    let ms = |v, default, p: &mut FileProblems| Duration::from_millis(positive(v, default, p));
    let t = TierTimeouts {
        connect: ms(&raw.connect_timeout_ms, d.0, p),
        first_token: ms(&raw.first_token_timeout_ms, d.1, p),
        idle: ms(&raw.idle_timeout_ms, d.2, p),
        total: ms(&raw.total_timeout_ms, d.3, p),
        keepalive_interval: ms(&raw.keepalive_interval_ms, d.4, p),
    };
    if t.first_token > t.total {
        let span = raw
            .first_token_timeout_ms
            .as_ref()
            .map(|v| v.span())
            .unwrap_or(0..0);
        p.at(
            span,
            "first_token_timeout_ms must not exceed total_timeout_ms",
        );
    }
    t
}

fn provider(
    name: &Spanned<String>,
    raw: &RawProvider,
    p: &mut FileProblems,
    warnings: &mut Vec<ConfigProblem>,
    file: &Path,
) -> Option<Provider> {
    let before = p.out.len();
    let kind_name = raw.kind.get_ref().as_str();
    let not_for = |field: &str, v: Option<Range<usize>>, p: &mut FileProblems| {
        if let Some(span) = v {
            p.at(
                span,
                format!("`{field}` does not apply to a `{kind_name}` provider"),
            );
        }
    };
    let kind = match kind_name {
        "openai" | "anthropic" => {
            not_for(
                "time_to_first_token_ms",
                raw.time_to_first_token_ms.as_ref().map(|v| v.span()),
                p,
            );
            not_for(
                "tokens_per_second",
                raw.tokens_per_second.as_ref().map(|v| v.span()),
                p,
            );
            if kind_name == "openai" {
                not_for(
                    "anthropic_version",
                    raw.anthropic_version.as_ref().map(|v| v.span()),
                    p,
                );
                ProviderKind::OpenAi
            } else {
                ProviderKind::Anthropic {
                    version: raw
                        .anthropic_version
                        .as_ref()
                        .map(|v| v.get_ref().clone())
                        .unwrap_or_else(|| "2023-06-01".into()),
                }
            }
        }
        "simulated" => {
            not_for("base_url", raw.base_url.as_ref().map(|v| v.span()), p);
            not_for("api_key_env", raw.api_key_env.as_ref().map(|v| v.span()), p);
            let tps = raw.tokens_per_second.as_ref();
            if let Some(v) = tps.filter(|v| !(*v.get_ref() > 0.0 && v.get_ref().is_finite())) {
                p.at(v.span(), "tokens_per_second must be a positive number");
            }
            ProviderKind::Simulated {
                time_to_first_token: Duration::from_millis(
                    raw.time_to_first_token_ms
                        .as_ref()
                        .map(|v| *v.get_ref())
                        .unwrap_or(100),
                ),
                tokens_per_second: tps.map(|v| *v.get_ref()).unwrap_or(200.0),
            }
        }
        other => {
            p.at(
                raw.kind.span(),
                format!("unknown provider kind `{other}`; expected openai, anthropic or simulated"),
            );
            return None;
        }
    };
    let base_url = match (&kind, &raw.base_url) {
        (ProviderKind::Simulated { .. }, _) => String::new(),
        (_, Some(url)) => {
            let u = url.get_ref();
            if !(u.starts_with("http://") || u.starts_with("https://"))
                || reqwest::Url::parse(u).is_err()
            {
                p.at(url.span(), "base_url must be an http:// or https:// URL");
            }
            u.trim_end_matches('/').to_string()
        }
        (ProviderKind::Anthropic { .. }, None) => "https://api.anthropic.com".into(),
        (ProviderKind::OpenAi, None) => {
            p.at(name.span(), "an openai provider needs a `base_url`");
            String::new()
        }
    };
    let default_header = match kind {
        ProviderKind::Anthropic { .. } => "x-api-key",
        _ => "authorization",
    };
    let auth_header = match &raw.auth_header {
        None => HeaderName::from_static(default_header),
        Some(h) => match HeaderName::from_bytes(h.get_ref().to_ascii_lowercase().as_bytes()) {
            Ok(h) => h,
            Err(_) => {
                p.at(h.span(), "not a valid HTTP header name");
                HeaderName::from_static(default_header)
            }
        },
    };
    let mut api_key = None;
    if let Some(env) = &raw.api_key_env {
        if !valid_env_name(env.get_ref()) {
            p.at(
                env.span(),
                "api_key_env must name an environment variable (A-Z, 0-9, _)",
            );
        } else {
            match std::env::var(env.get_ref()) {
                Ok(key) if !key.is_empty() => {
                    let value = if auth_header == http::header::AUTHORIZATION {
                        format!("Bearer {key}")
                    } else {
                        key
                    };
                    match HeaderValue::from_str(&value) {
                        Ok(mut v) => {
                            v.set_sensitive(true);
                            api_key = Some(v);
                        }
                        Err(_) => p.at(
                            env.span(),
                            "the key in this variable has invalid characters",
                        ),
                    }
                }
                _ => {
                    let (line, column) = super::problem::line_column(p.text, env.span().start);
                    warnings.push(ConfigProblem {
                        file: file.to_path_buf(),
                        line,
                        column,
                        message: format!(
                            "warning: environment variable `{}` is not set; calls to provider `{}` will fail",
                            env.get_ref(),
                            name.get_ref()
                        ),
                    });
                }
            }
        }
    }
    let endpoint = match &kind {
        ProviderKind::Simulated { .. } => None,
        ProviderKind::OpenAi => reqwest::Url::parse(&format!("{base_url}/chat/completions")).ok(),
        ProviderKind::Anthropic { .. } => {
            reqwest::Url::parse(&format!("{base_url}/v1/messages")).ok()
        }
    }
    .map(|mut url| {
        if !raw.query.is_empty() {
            url.query_pairs_mut().extend_pairs(raw.query.iter());
        }
        url
    });
    if p.out.len() > before {
        return None;
    }
    Some(Provider {
        name: Arc::from(name.get_ref().as_str()),
        kind,
        endpoint,
        base_url,
        auth_header,
        api_key,
        api_key_env: raw.api_key_env.as_ref().map(|e| e.get_ref().clone()),
    })
}

fn valid_env_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

const VIRTUAL_MODELS: [&str; 3] = ["auto", "fast", "reasoning"];

fn tier_of(v: &Spanned<String>, p: &mut FileProblems) -> Option<Tier> {
    let tier = Tier::parse(v.get_ref());
    if tier.is_none() {
        p.at(
            v.span(),
            format!("unknown tier `{}`; expected fast or reasoning", v.get_ref()),
        );
    }
    tier
}

fn model(
    name: &Spanned<String>,
    raw: &RawModel,
    providers: &HashMap<String, Arc<Provider>>,
    declared_providers: &HashSet<&str>,
    p: &mut FileProblems,
) -> Option<Model> {
    let before = p.out.len();
    if VIRTUAL_MODELS.contains(&name.get_ref().as_str()) {
        p.at(
            name.span(),
            format!(
                "`{}` is a virtual model name and cannot be declared",
                name.get_ref()
            ),
        );
    }
    let upstream_model = raw
        .upstream_model
        .clone()
        .unwrap_or_else(|| name.get_ref().clone());
    let lookup_provider = |v: &Spanned<String>, p: &mut FileProblems| {
        let provider = providers.get(v.get_ref()).cloned();
        if provider.is_none() {
            let what = if declared_providers.contains(v.get_ref().as_str()) {
                "has errors (see above)"
            } else {
                "is not declared"
            };
            p.at(v.span(), format!("provider `{}` {what}", v.get_ref()));
        }
        provider
    };
    let mut deployments = Vec::new();
    match (&raw.provider, raw.deployments.is_empty()) {
        (Some(provider), true) => {
            if let Some(provider) = lookup_provider(provider, p) {
                deployments.push(Arc::new(Deployment {
                    id: Arc::from(format!("{}@{}", name.get_ref(), provider.name)),
                    provider,
                    upstream_model: upstream_model.clone(),
                    weight: 1,
                }));
            }
        }
        (None, false) => {
            for d in &raw.deployments {
                let d_span = d.span();
                let d = d.get_ref();
                let weight = match &d.weight {
                    None => 1,
                    Some(w) if (1..=1000).contains(w.get_ref()) => *w.get_ref() as u32,
                    Some(w) => {
                        p.at(w.span(), "deployment weight must be between 1 and 1000");
                        1
                    }
                };
                let Some(provider) = lookup_provider(&d.provider, p) else {
                    continue;
                };
                let id = format!("{}@{}", name.get_ref(), provider.name);
                if deployments.iter().any(|x: &Arc<Deployment>| *x.id == *id) {
                    p.at(
                        d_span,
                        format!(
                            "provider `{}` is used by two deployments of this model",
                            provider.name
                        ),
                    );
                    continue;
                }
                deployments.push(Arc::new(Deployment {
                    id: Arc::from(id),
                    provider,
                    upstream_model: d
                        .upstream_model
                        .clone()
                        .unwrap_or_else(|| upstream_model.clone()),
                    weight,
                }));
            }
        }
        (Some(provider), false) => p.at(
            provider.span(),
            "a model has either `provider` or `deployments`, not both",
        ),
        (None, true) => p.at(name.span(), "model needs a `provider` or `deployments`"),
    }
    let tier = tier_of(&raw.tier, p);
    let price = raw.price.as_ref().map(|raw| {
        let mut get = |v: &Option<Spanned<f64>>| match v {
            Some(v) if !(*v.get_ref() >= 0.0 && v.get_ref().is_finite()) => {
                p.at(
                    v.span(),
                    "price must be a non-negative number (USD per 1M tokens)",
                );
                0.0
            }
            Some(v) => *v.get_ref(),
            None => 0.0,
        };
        let input = get(&raw.input_per_1m);
        Price {
            input_per_1m: input,
            output_per_1m: get(&raw.output_per_1m),
            cached_input_per_1m: match &raw.cached_input_per_1m {
                None => input,
                some => get(some),
            },
        }
    });
    let capabilities = capabilities(&raw.capabilities, p);
    if p.out.len() > before {
        return None;
    }
    let first = deployments.first()?.clone();
    Some(Model {
        name: Arc::from(name.get_ref().as_str()),
        upstream_model: first.upstream_model.clone(),
        provider: first.provider.clone(),
        deployments,
        tier: tier?,
        price: price.unwrap_or_default(),
        capabilities,
    })
}

fn capabilities(raw: &RawCapabilities, p: &mut FileProblems) -> Capabilities {
    let max_tokens_param = match raw
        .max_tokens_param
        .as_ref()
        .map(|v| (v.get_ref().as_str(), v.span()))
    {
        None | Some(("max_tokens", _)) => MaxTokensParam::MaxTokens,
        Some(("max_completion_tokens", _)) => MaxTokensParam::MaxCompletionTokens,
        Some((_, span)) => {
            p.at(
                span,
                "max_tokens_param must be `max_tokens` or `max_completion_tokens`",
            );
            MaxTokensParam::MaxTokens
        }
    };
    let system_role = match raw
        .system_role
        .as_ref()
        .map(|v| (v.get_ref().as_str(), v.span()))
    {
        None | Some(("system", _)) => SystemRole::System,
        Some(("developer", _)) => SystemRole::Developer,
        Some(("user", _)) => SystemRole::User,
        Some((_, span)) => {
            p.at(span, "system_role must be `system`, `developer` or `user`");
            SystemRole::System
        }
    };
    let on_unsupported = match raw
        .on_unsupported
        .as_ref()
        .map(|v| (v.get_ref().as_str(), v.span()))
    {
        None | Some(("drop", _)) => OnUnsupported::Drop,
        Some(("reject", _)) => OnUnsupported::Reject,
        Some((_, span)) => {
            p.at(span, "on_unsupported must be `drop` or `reject`");
            OnUnsupported::Drop
        }
    };
    for param in &raw.unsupported_params {
        if ["model", "messages", "stream"].contains(&param.get_ref().as_str()) {
            p.at(
                param.span(),
                format!("`{}` cannot be unsupported", param.get_ref()),
            );
        }
    }
    Capabilities {
        max_tokens_param,
        system_role,
        reasoning_effort: raw.reasoning_effort.unwrap_or(false),
        unsupported_params: raw
            .unsupported_params
            .iter()
            .map(|s| s.get_ref().clone())
            .collect(),
        on_unsupported,
    }
}

/// Each key's SHA-256 with the span that declared it.
type KeyHashes = Vec<([u8; 32], Range<usize>)>;

struct TenantProblems<'a, 'b, 'c> {
    p: &'a mut FileProblems<'b>,
    warnings: &'a mut Vec<ConfigProblem>,
    path: &'c Path,
}

fn tenant(
    path: &Path,
    raw: &RawTenant,
    models: &HashMap<String, Arc<Model>>,
    declared_models: &HashSet<&str>,
    tp: &mut TenantProblems,
) -> Option<(Tenant, KeyHashes)> {
    let p = &mut *tp.p;
    let before = p.out.len();
    let name = match &raw.name {
        Some(n) => {
            if !valid_tenant_name(n.get_ref()) {
                p.at(
                    n.span(),
                    "tenant name must be 1-64 characters of a-z, A-Z, 0-9, - and _",
                );
            }
            n.get_ref().clone()
        }
        None => {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            if !valid_tenant_name(&stem) {
                p.at(0..0, "file name is not a valid tenant name; set `name`");
            }
            stem
        }
    };
    let mut key_hashes = Vec::new();
    for key in &raw.api_keys {
        match (&key.get_ref().sha256, &key.get_ref().env) {
            (Some(hash), None) => {
                match <[u8; 32]>::try_from(hex::decode(hash.get_ref()).unwrap_or_default()) {
                    Ok(h) => key_hashes.push((h, hash.span())),
                    Err(_) => p.at(
                        hash.span(),
                        "sha256 must be 64 hex characters (the SHA-256 of the key)",
                    ),
                }
            }
            (None, Some(env)) => {
                if !valid_env_name(env.get_ref()) {
                    p.at(
                        env.span(),
                        "env must name an environment variable (A-Z, 0-9, _)",
                    );
                    continue;
                }
                match std::env::var(env.get_ref()) {
                    Ok(k) if !k.is_empty() => key_hashes.push((hash_api_key(&k), env.span())),
                    _ => {
                        let (line, column) = super::problem::line_column(p.text, env.span().start);
                        tp.warnings.push(ConfigProblem {
                            file: tp.path.to_path_buf(),
                            line,
                            column,
                            message: format!(
                                "warning: environment variable `{}` is not set; this key is disabled",
                                env.get_ref()
                            ),
                        });
                    }
                }
            }
            _ => p.at(
                key.span(),
                "an API key needs exactly one of `sha256` or `env`",
            ),
        }
    }
    let lookup = |v: &Spanned<String>, p: &mut FileProblems| {
        let m = models.get(v.get_ref()).cloned();
        if m.is_none() {
            let what = if declared_models.contains(v.get_ref().as_str()) {
                "has errors in the config file"
            } else {
                "is not declared in the config file"
            };
            p.at(v.span(), format!("model `{}` {what}", v.get_ref()));
        }
        m
    };
    let fast_model = lookup(&raw.fast_model, p);
    let reasoning_model = lookup(&raw.reasoning_model, p);
    for (model, want, v) in [
        (&fast_model, Tier::Fast, &raw.fast_model),
        (&reasoning_model, Tier::Reasoning, &raw.reasoning_model),
    ] {
        if let Some(m) = model.as_ref().filter(|m| m.tier != want) {
            p.at(
                v.span(),
                format!(
                    "model `{}` is of tier {}, not {}",
                    m.name,
                    m.tier.as_str(),
                    want.as_str()
                ),
            );
        }
    }
    let mut allowed: Vec<Arc<Model>> = Vec::new();
    for m in fast_model.iter().chain(reasoning_model.iter()) {
        allowed.push(m.clone());
    }
    for v in &raw.allowed_models {
        if let Some(m) = lookup(v, p) {
            if !allowed.iter().any(|a| a.name == m.name) {
                allowed.push(m);
            }
        }
    }
    let default_tier = match &raw.auto.default_tier {
        None => Some(Tier::Fast),
        Some(v) => tier_of(v, p),
    };
    let threshold = match &raw.auto.reasoning_threshold {
        None => None,
        Some(v) if (0.0..=1.0).contains(v.get_ref()) => Some(*v.get_ref() as f32),
        Some(v) => {
            p.at(v.span(), "reasoning_threshold must be between 0 and 1");
            None
        }
    };
    let allowed_lookup = |n: &str| allowed.iter().find(|m| &*m.name == n).cloned();
    let policy = super::tenant_policy::tenant_policy(raw, &allowed_lookup, models, p);
    if p.out.len() > before {
        return None;
    }
    let _ = &raw.description;
    Some((
        Tenant {
            name: Arc::from(name.as_str()),
            fast_model: fast_model?,
            reasoning_model: reasoning_model?,
            allowed_models: allowed,
            auto: AutoPolicy {
                default_tier: default_tier?,
                reasoning_threshold: threshold,
            },
            policy,
        },
        key_hashes,
    ))
}

fn valid_tenant_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
