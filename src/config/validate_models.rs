//! Validation of the provider and model sections of `deliberate.toml`: provider kinds,
//! endpoints and keys, models with one provider or several deployments, prices and
//! capabilities. Problems are reported with their location, like every other check.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use toml::Spanned;

use super::problem::{ConfigProblem, FileProblems};
use super::raw::*;
use super::*;

pub(super) fn provider(
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
            if kind_name == "anthropic" {
                not_for(
                    "send_request_id",
                    raw.send_request_id.as_ref().map(|v| v.span()),
                    p,
                );
            }
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
            not_for(
                "send_request_id",
                raw.send_request_id.as_ref().map(|v| v.span()),
                p,
            );
            not_for(
                "send_trace_context",
                raw.send_trace_context.as_ref().map(|v| v.span()),
                p,
            );
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
        send_request_id: raw.send_request_id.as_ref().is_none_or(|v| *v.get_ref()),
        send_trace_context: raw.send_trace_context.as_ref().is_none_or(|v| *v.get_ref()),
    })
}

pub(super) fn valid_env_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

pub(super) const VIRTUAL_MODELS: [&str; 3] = ["auto", "fast", "reasoning"];

pub(super) fn tier_of(v: &Spanned<String>, p: &mut FileProblems) -> Option<Tier> {
    let tier = Tier::parse(v.get_ref());
    if tier.is_none() {
        p.at(
            v.span(),
            format!("unknown tier `{}`; expected fast or reasoning", v.get_ref()),
        );
    }
    tier
}

pub(super) fn model(
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
    let kind = match raw.kind.as_ref() {
        None => Some(ModelKind::Chat),
        Some(v) => match v.get_ref().as_str() {
            "chat" => Some(ModelKind::Chat),
            "embedding" => Some(ModelKind::Embedding),
            other => {
                p.at(
                    v.span(),
                    format!("unknown model kind `{other}`; expected chat or embedding"),
                );
                None
            }
        },
    };
    let tier = match (kind, raw.tier.as_ref()) {
        (Some(ModelKind::Embedding), None) => Some(Tier::Fast),
        (Some(ModelKind::Embedding), Some(v)) => {
            p.at(v.span(), "an embedding model has no tier");
            None
        }
        (_, Some(v)) => tier_of(v, p),
        (_, None) => {
            p.at(name.span(), "model needs a `tier` (fast or reasoning)");
            None
        }
    };
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
    if kind == Some(ModelKind::Embedding)
        && deployments
            .iter()
            .any(|d| matches!(d.provider.kind, ProviderKind::Anthropic { .. }))
    {
        p.at(
            name.span(),
            "an embedding model needs an OpenAI-compatible or simulated provider (Anthropic serves no embeddings)",
        );
    }
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
        kind: kind?,
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
    let max_output_tokens = raw.max_output_tokens.as_ref().and_then(|v| {
        let n = *v.get_ref();
        if (1..=i64::from(u32::MAX)).contains(&n) {
            Some(n as u64)
        } else {
            p.at(
                v.span(),
                format!("max_output_tokens must be between 1 and {}", u32::MAX),
            );
            None
        }
    });
    Capabilities {
        max_output_tokens,
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
