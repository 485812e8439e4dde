//! Which tier and which model serve a request: pure decision logic, no I/O.
//!
//! Order of precedence for the virtual model `auto`: the `x-deliberate-tier` header, then a
//! `reasoning_effort` field, then the classifier's score against the tenant's threshold
//! (the tenant's default tier when there is no user text to score). `fast` and `reasoning`
//! name a tier directly; any other name must be a model the tenant may use.
//! Budgets, latency targets and fallbacks will hook in here; the request path only sees
//! the resulting `Decision`.

use std::sync::Arc;

use crate::api::ChatRequest;
use crate::classify::{Classifier, Role, Tier};
use crate::config::{Model, ModelKind, Tenant};
use crate::error::GatewayError;

/// What decided the tier; a metric label, so a small fixed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionSource {
    /// A concrete model was named.
    Model,
    /// `fast` or `reasoning` was named.
    VirtualTier,
    Header,
    ReasoningEffort,
    Classifier,
    TenantDefault,
    /// The conversation's earlier tier (stickiness).
    Sticky,
    /// The tenant's budget (soft-limit lean or downgrade at the limit).
    Budget,
    /// The reasoning model could not meet the deadline at its observed latency.
    Deadline,
    /// Shadow mode: routed to the tenant's fixed tier, the policy only recorded.
    Shadow,
    /// An embeddings request: the tenant's `embedding_model` or the embedding model named;
    /// never classified, and no tier policy applies to it.
    Embedding,
}

impl DecisionSource {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionSource::Model => "model",
            DecisionSource::VirtualTier => "tier",
            DecisionSource::Header => "header",
            DecisionSource::ReasoningEffort => "reasoning_effort",
            DecisionSource::Classifier => "classifier",
            DecisionSource::TenantDefault => "tenant_default",
            DecisionSource::Sticky => "sticky",
            DecisionSource::Budget => "budget",
            DecisionSource::Deadline => "deadline",
            DecisionSource::Shadow => "shadow",
            DecisionSource::Embedding => "embedding",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub tier: Tier,
    pub model: Arc<Model>,
    /// The classifier's score when it ran.
    pub score: Option<f32>,
    /// Short, header-safe explanation.
    pub reason: String,
    pub source: DecisionSource,
    /// Models to try, in order, when every attempt on `model` failed before the first
    /// byte: the tenant's fallback chain for `tier`, without `model` itself. Only models
    /// the tenant may use (validation guarantees chains name allowed models).
    pub fallbacks: Vec<Arc<Model>>,
}

pub const TIER_HEADER: &str = "x-deliberate-tier";

/// The tenant's fallback chain for `tier`, without `model` itself.
pub fn fallbacks_for(tenant: &Tenant, tier: Tier, model: &Arc<Model>) -> Vec<Arc<Model>> {
    tenant
        .policy
        .fallbacks
        .tier(tier)
        .iter()
        .filter(|m| m.name != model.name)
        .cloned()
        .collect()
}

pub fn decide(
    tenant: &Tenant,
    request: &ChatRequest,
    tier_header: Option<&[u8]>,
    classifier: &dyn Classifier,
) -> Result<Decision, GatewayError> {
    let requested = request.model();
    let fallbacks = |tier: Tier, model: &Arc<Model>| fallbacks_for(tenant, tier, model);
    let chosen = |tier: Tier, score, reason: String, source| Decision {
        tier,
        model: tenant.tier_model(tier).clone(),
        fallbacks: fallbacks(tier, tenant.tier_model(tier)),
        score,
        reason,
        source,
    };
    match requested {
        "auto" => {}
        "fast" | "reasoning" => {
            let tier = Tier::parse(requested).expect("matched a tier name");
            return Ok(chosen(
                tier,
                None,
                format!("model={requested}"),
                DecisionSource::VirtualTier,
            ));
        }
        name => {
            let model = named_model(tenant, name, ModelKind::Chat)?;
            return Ok(Decision {
                tier: model.tier,
                fallbacks: fallbacks(model.tier, model),
                model: model.clone(),
                score: None,
                reason: "model named in request".into(),
                source: DecisionSource::Model,
            });
        }
    }
    if let Some(value) = tier_header {
        let tier = std::str::from_utf8(value)
            .ok()
            .and_then(Tier::parse)
            .ok_or_else(|| {
                GatewayError::invalid(
                    format!("Invalid `{TIER_HEADER}` header: expected `fast` or `reasoning`."),
                    None,
                )
            })?;
        return Ok(chosen(
            tier,
            None,
            format!("header {TIER_HEADER}"),
            DecisionSource::Header,
        ));
    }
    if let Some(effort) = request.reasoning_effort() {
        // `none`/`minimal` ask for no real thinking: a chat model answers that best.
        let tier = match effort {
            "none" | "minimal" => Tier::Fast,
            _ => Tier::Reasoning,
        };
        let reason = format!("reasoning_effort={}", sanitize(effort));
        return Ok(chosen(tier, None, reason, DecisionSource::ReasoningEffort));
    }
    let conversation = request.conversation();
    let has_user_text = conversation
        .turns
        .iter()
        .any(|t| t.role == Role::User && !t.text.trim().is_empty());
    if !has_user_text {
        let tier = tenant.auto.default_tier;
        return Ok(chosen(
            tier,
            None,
            "no user text; tenant default".into(),
            DecisionSource::TenantDefault,
        ));
    }
    let scored = classifier.score(&conversation);
    let threshold = tenant
        .auto
        .reasoning_threshold
        .unwrap_or_else(|| classifier.default_threshold());
    let tier = if scored.score >= threshold {
        Tier::Reasoning
    } else {
        Tier::Fast
    };
    let reason = if scored.reasons.is_empty() {
        "no strong signal".to_string()
    } else {
        scored.reasons.join("; ")
    };
    Ok(chosen(
        tier,
        Some(scored.score),
        reason,
        DecisionSource::Classifier,
    ))
}

/// A classifier decision re-made with the second stage's score in place of the first
/// stage's (same threshold: the second stage scores on the first stage's scale).
pub fn with_second_stage(
    tenant: &Tenant,
    decision: Decision,
    score: f32,
    default_threshold: f32,
) -> Decision {
    let threshold = tenant.auto.reasoning_threshold.unwrap_or(default_threshold);
    let tier = if score >= threshold {
        Tier::Reasoning
    } else {
        Tier::Fast
    };
    let model = tenant.tier_model(tier).clone();
    Decision {
        tier,
        fallbacks: fallbacks_for(tenant, tier, &model),
        model,
        score: Some(score),
        reason: format!("second stage; first stage: {}", decision.reason),
        source: decision.source,
    }
}

/// A model the request named: one the tenant may use (404 otherwise), of the endpoint's
/// `kind` (400 otherwise).
pub fn named_model<'t>(
    tenant: &'t Tenant,
    name: &str,
    kind: ModelKind,
) -> Result<&'t Arc<Model>, GatewayError> {
    let model = tenant
        .allowed_model(name)
        .ok_or_else(|| GatewayError::model_not_found(name))?;
    match (kind, model.kind) {
        (ModelKind::Chat, ModelKind::Embedding) => Err(GatewayError::invalid(
            format!("`{name}` is an embedding model: it serves /v1/embeddings only."),
            Some("model".to_string()),
        )),
        (ModelKind::Embedding, ModelKind::Chat) => Err(GatewayError::invalid(
            format!("`{name}` is a chat model; /v1/embeddings needs an embedding model."),
            Some("model".to_string()),
        )),
        _ => Ok(model),
    }
}

/// The model of an embeddings request (`requested` is the `model` the client sent): the
/// tenant's `embedding_model` for `auto` (and the tier names, which mean nothing here), or
/// the embedding model named, if the tenant may use it.
pub fn decide_embedding(tenant: &Tenant, requested: &str) -> Result<Decision, GatewayError> {
    let (model, reason) = match requested {
        "auto" | "fast" | "reasoning" => {
            let model = tenant.embedding_model.as_ref().ok_or_else(|| {
                GatewayError::invalid(
                    format!(
                        "This tenant has no `embedding_model`: name an embedding model instead of `{requested}`."
                    ),
                    Some("model".to_string()),
                )
            })?;
            (model, "tenant embedding_model")
        }
        name => (
            named_model(tenant, name, ModelKind::Embedding)?,
            "model named in request",
        ),
    };
    Ok(Decision {
        tier: model.tier,
        model: model.clone(),
        score: None,
        reason: reason.into(),
        source: DecisionSource::Embedding,
        fallbacks: Vec::new(),
    })
}

/// Keeps a client-supplied value header-safe and short.
fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(16)
        .collect()
}
