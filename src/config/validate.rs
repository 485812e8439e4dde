//! Raw config -> validated `Snapshot`, reporting every problem with its location.
//!
//! Rules that span files (a model naming a provider, a tenant naming a model, one key used
//! by two tenants) are checked here too, so `deliberate check` and a reload see the same
//! verdict as startup.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use toml::Spanned;

use super::problem::{ConfigProblem, FileProblems, Problems};
use super::raw::*;
use super::validate_models::{model, provider, tier_of, valid_env_name};
use super::validate_server::server_settings;
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
    let redis = raw
        .redis
        .as_ref()
        .and_then(|r| super::redis::settings(r, &mut p));
    let second_stage = super::second_stage::settings(&raw.second_stage, &mut p);
    let telemetry =
        super::validate_telemetry::telemetry_settings(&raw.logging, &raw.tracing, &mut p);
    let server = server.map(|s| ServerSettings {
        redis,
        second_stage,
        telemetry,
        ..s
    });
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
    let mut shared = Sha256::new();
    shared.update(config_text.as_bytes());
    for (path, text) in &policies {
        shared.update([0]);
        shared.update(path.file_name().unwrap_or_default().as_encoded_bytes());
        shared.update([0]);
        shared.update(text.as_bytes());
    }
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
            fingerprint: shared.finalize().into(),
            generation: 0,
        },
        warnings,
    })
}

/// A provider may not keep a deployment out for longer than an hour, whatever the config.
const MAX_RETRY_AFTER_LIMIT_MS: u64 = 3_600_000;

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
    let max_retry_after_ms = match &raw.max_retry_after_ms {
        Some(v) if *v.get_ref() > MAX_RETRY_AFTER_LIMIT_MS => {
            p.at(
                v.span(),
                format!("resilience.max_retry_after_ms must be at most {MAX_RETRY_AFTER_LIMIT_MS}"),
            );
            60_000
        }
        v => positive(v, 60_000, p),
    };
    Resilience {
        max_retries,
        retry_budget_ratio,
        breaker_failures: positive(&raw.breaker_failures, 5, p).min(u32::MAX as u64) as u32,
        breaker_open: Duration::from_millis(positive(&raw.breaker_open_ms, 30_000, p)),
        max_retry_after: Duration::from_millis(max_retry_after_ms),
    }
}

pub(super) fn positive(v: &Option<Spanned<u64>>, default: u64, p: &mut FileProblems) -> u64 {
    match v {
        None => default,
        Some(v) if *v.get_ref() == 0 => {
            p.at(v.span(), "must be greater than 0");
            default
        }
        Some(v) => *v.get_ref(),
    }
}

/// A count or duration that must lie in `range` (the default where it does not, and a problem
/// at the value).
pub(super) fn within(
    v: &Option<Spanned<u64>>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    p: &mut FileProblems,
) -> u64 {
    match v {
        None => default,
        Some(v) if !range.contains(v.get_ref()) => {
            p.at(
                v.span(),
                format!("must be between {} and {}", range.start(), range.end()),
            );
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
        if let Some(m) = model.as_ref().filter(|m| m.kind != ModelKind::Chat) {
            p.at(
                v.span(),
                format!("model `{}` is an embedding model, not a chat model", m.name),
            );
        } else if let Some(m) = model.as_ref().filter(|m| m.tier != want) {
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
    let embedding_model = raw.embedding_model.as_ref().and_then(|v| {
        let m = lookup(v, p)?;
        if m.kind != ModelKind::Embedding {
            p.at(
                v.span(),
                format!(
                    "model `{}` is not an embedding model (kind = \"embedding\")",
                    m.name
                ),
            );
            return None;
        }
        if !allowed.iter().any(|a| a.name == m.name) {
            allowed.push(m.clone());
        }
        Some(m)
    });
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
            embedding_model,
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
