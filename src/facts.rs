//! Typed per-request facts. Each is inserted once, by the layer that owns it, and read by the
//! layers that need it; none is a mutable record that several layers fill in.
//!
//! On the request, going down:
//! - `RequestCtx` (request-id layer): the request's id and when it arrived;
//! - `Endpoint` (router): the API the request came in through, which decides how its body
//!   is parsed, how its answer is rendered, and its cache key's namespace;
//! - `layers::tenant::TenantCtx` (tenant auth): the tenant and the config snapshot;
//! - `policy::Decision` (decide): tier, model, fallbacks, reason.
//!
//! On the response, coming back (so the metrics layer above sees them, errors included):
//! - `TenantName` (tenant auth): whose request it was;
//! - `Routed` (decide): the tier and model the request was routed to, also on a rejection;
//! - `Served` (where the answer was produced: the upstream call, or the cache): the model
//!   and deployment that actually answered, after retries and fallbacks, and the
//!   `CallRecord` of that answer (usage, data events, first token, stream failure).
//! - `CacheResult` (cache): hit, miss or bypass, for tenants with the cache on;
//! - `FellBack` (chat service): how many fallback models were tried, and why;
//! - `Billed` (decide): what the request was billed, written by its settlement when the body
//!   ends (before the access log, which runs later, reads it);
//! - `body::observed::OnEnd`: the work each layer leaves for the end of the body.
//!
//! No fact travels as a header that another layer parses back.
//!
//! One exception to "facts come back on the response": a request whose client leaves before
//! the response head has no response. For it alone, the metrics layer puts a `HeadWitness`
//! on the request, and tenant auth and decide note their fact in it (one writer per cell),
//! so that a cancelled request is still counted for its tenant, tier and model.

use std::sync::{Arc, OnceLock};

use tokio::time::Instant;

use crate::classify::Tier;
use crate::config::Model;
use crate::cost::{Nanos, Usage};
use crate::layers::request_id::RequestId;
use crate::record::CallRecord;

/// Request extension: the request's identity and start, for every layer and the upstream.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    pub id: RequestId,
    pub started: Instant,
}

/// Request extension (router): the API a request came in through. Every endpoint goes down
/// the same stack (limits, decide, cache, service): its request is translated to the
/// internal chat request when the body is parsed, and the answer back by the response
/// adapter (see `endpoints`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// OpenAI Chat Completions, the gateway's internal shape.
    Chat,
    /// OpenAI Responses.
    Responses,
    /// Anthropic Messages.
    Messages,
    /// OpenAI Embeddings.
    Embeddings,
    /// Anthropic's `messages/count_tokens`: a Messages body counted by the gateway's own
    /// estimate; it never goes down the chat stack (no model is called).
    CountTokens,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Responses => "responses",
            Endpoint::Messages => "messages",
            Endpoint::Embeddings => "embeddings",
            Endpoint::CountTokens => "count_tokens",
        }
    }
}

/// Response extension: the authenticated tenant.
#[derive(Debug, Clone)]
pub struct TenantName(pub Arc<str>);

/// Response extension: where the request was routed (it may not have been served there).
#[derive(Debug, Clone)]
pub struct Routed {
    pub tier: Tier,
    pub model: Arc<str>,
    /// Why: the decision's short reason, and the classifier's score when it ran.
    pub reason: Arc<str>,
    pub score: Option<f32>,
}

impl Routed {
    pub fn of(decision: &crate::policy::Decision) -> Routed {
        Routed {
            tier: decision.tier,
            model: decision.model.name.clone(),
            reason: decision.reason.as_str().into(),
            score: decision.score,
        }
    }
}

/// Response extension (cache): the cache's part in this answer (`hit`, `miss`, `bypass`).
#[derive(Debug, Clone, Copy)]
pub struct CacheResult(pub &'static str);

/// Response extension (chat service): fallback models tried after the decided one failed.
#[derive(Debug, Clone)]
pub struct FellBack {
    pub count: u32,
    pub reason: Arc<str>,
}

/// What a request was billed: the usage priced (the provider's, or an estimate) and the cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bill {
    pub usage: Option<Usage>,
    /// The usage is the gateway's estimate (the provider reported none).
    pub estimated: bool,
    pub cost: Nanos,
}

/// Response extension (decide): the request's `Bill`, set once by its settlement at the end
/// of the body.
#[derive(Debug, Clone, Default)]
pub struct Billed(pub Arc<OnceLock<Bill>>);

/// Response extension: who answered.
#[derive(Debug, Clone)]
pub struct Served {
    pub model: Arc<Model>,
    /// The deployment id (`model@provider`), or `cache` for an answer from the cache.
    pub deployment: Arc<str>,
    pub call: Arc<CallRecord>,
}

impl Served {
    pub fn tier(&self) -> Tier {
        self.model.tier
    }
}

/// Request extension (metrics layer): the tenant and route of a request, noted on the way
/// down, read only if the request is dropped before its response head.
#[derive(Debug, Default)]
pub struct HeadWitness {
    pub tenant: OnceLock<Arc<str>>,
    pub routed: OnceLock<Routed>,
}

impl HeadWitness {
    /// Notes the tenant (tenant auth only).
    pub fn tenant<B>(request: &http::Request<B>, name: &Arc<str>) {
        if let Some(w) = request.extensions().get::<Arc<HeadWitness>>() {
            let _ = w.tenant.set(name.clone());
        }
    }

    /// Notes the route (decide only).
    pub fn routed<B>(request: &http::Request<B>, routed: &Routed) {
        if let Some(w) = request.extensions().get::<Arc<HeadWitness>>() {
            let _ = w.routed.set(routed.clone());
        }
    }
}
