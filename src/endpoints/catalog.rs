//! Which model ids a tenant may name on which endpoint: the one answer shared by
//! `GET /v1/models` (`endpoints::models`) and `deliberate check`. Pure, no I/O.
//!
//! It mirrors what `policy::decide` accepts, so a listing never promises what a request is
//! refused: a chat model serves chat completions and the endpoints translated to them
//! (responses, messages), never embeddings; an embedding model serves embeddings only and
//! is no tier; the virtual names (`auto`, `fast`, `reasoning`) serve the chat endpoints
//! through the tenant's tier models, and embeddings too when the tenant has an
//! `embedding_model` (which they all mean there).

use crate::classify::Tier;
use crate::config::{ModelKind, Tenant};
use crate::facts::Endpoint;

/// The endpoints a chat model serves: chat completions and those translated to it.
pub const CHAT_ENDPOINTS: [Endpoint; 3] = [Endpoint::Chat, Endpoint::Responses, Endpoint::Messages];

/// Every model endpoint, in the order listings show them.
pub const MODEL_ENDPOINTS: [Endpoint; 4] = [
    Endpoint::Chat,
    Endpoint::Responses,
    Endpoint::Messages,
    Endpoint::Embeddings,
];

/// An endpoint as clients know it (the OpenAI SDK's resource names; `messages` for
/// Anthropic's).
pub fn api_name(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Chat => "chat.completions",
        Endpoint::Responses => "responses",
        Endpoint::Messages => "messages",
        Endpoint::Embeddings => "embeddings",
        Endpoint::CountTokens => "messages.count_tokens",
    }
}

/// What a model id is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// `auto`: the classifier and the tenant's policies pick the tier.
    Router,
    /// `fast` or `reasoning`: the tenant's model for that tier.
    Tier(Tier),
    /// A configured model of this kind; a chat model has its tier.
    Model(ModelKind, Option<Tier>),
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Router => "router",
            EntryKind::Tier(_) => "tier",
            EntryKind::Model(kind, _) => kind.as_str(),
        }
    }

    pub fn tier(self) -> Option<Tier> {
        match self {
            EntryKind::Router => None,
            EntryKind::Tier(tier) => Some(tier),
            EntryKind::Model(_, tier) => tier,
        }
    }
}

/// One model id the tenant may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry<'t> {
    pub id: &'t str,
    pub owned_by: &'t str,
    pub kind: EntryKind,
    pub endpoints: Vec<Endpoint>,
    /// For a virtual id: the concrete model it means, by tier (`fast`, `reasoning`) on the
    /// chat endpoints and by `embeddings` on that endpoint.
    pub routes_to: Vec<(&'static str, &'t str)>,
}

impl CatalogEntry<'_> {
    pub fn serves(&self, endpoint: Endpoint) -> bool {
        self.endpoints.contains(&endpoint)
    }
}

/// Every id the tenant may name, virtual ids first, then its models in config order.
pub fn catalog(tenant: &Tenant) -> Vec<CatalogEntry<'_>> {
    let embedding = tenant.embedding_model.as_deref().map(|m| &*m.name);
    let virtual_endpoints = if embedding.is_some() {
        MODEL_ENDPOINTS.to_vec()
    } else {
        CHAT_ENDPOINTS.to_vec()
    };
    let tier_model = |tier: Tier| (tier.as_str(), &*tenant.tier_model(tier).name);
    let mut entries = vec![CatalogEntry {
        id: "auto",
        owned_by: "deliberate",
        kind: EntryKind::Router,
        endpoints: virtual_endpoints.clone(),
        routes_to: with_embedding(
            vec![tier_model(Tier::Fast), tier_model(Tier::Reasoning)],
            embedding,
        ),
    }];
    for tier in [Tier::Fast, Tier::Reasoning] {
        entries.push(CatalogEntry {
            id: tier.as_str(),
            owned_by: "deliberate",
            kind: EntryKind::Tier(tier),
            endpoints: virtual_endpoints.clone(),
            routes_to: with_embedding(vec![tier_model(tier)], embedding),
        });
    }
    entries.extend(tenant.allowed_models.iter().map(|m| {
        let (endpoints, tier) = match m.kind {
            ModelKind::Chat => (CHAT_ENDPOINTS.to_vec(), Some(m.tier)),
            ModelKind::Embedding => (vec![Endpoint::Embeddings], None),
        };
        CatalogEntry {
            id: &m.name,
            owned_by: &m.provider.name,
            kind: EntryKind::Model(m.kind, tier),
            endpoints,
            routes_to: Vec::new(),
        }
    }));
    entries
}

/// `routes`, then the tenant's embedding model (what a virtual id means on embeddings).
fn with_embedding<'t>(
    mut routes: Vec<(&'static str, &'t str)>,
    embedding: Option<&'t str>,
) -> Vec<(&'static str, &'t str)> {
    routes.extend(embedding.map(|m| ("embeddings", m)));
    routes
}

/// The tenant's ids per endpoint, as `deliberate check` prints them: one line per group of
/// endpoints that accept the same ids, e.g.
/// `chat.completions, responses, messages: auto (fast: small, reasoning: big), fast (small), reasoning (big), small, big`.
pub fn report(tenant: &Tenant) -> Vec<String> {
    let entries = catalog(tenant);
    let mut lines: Vec<(Vec<&str>, String)> = Vec::new();
    for endpoint in MODEL_ENDPOINTS {
        let ids: Vec<String> = entries
            .iter()
            .filter(|e| e.serves(endpoint))
            .map(|e| describe(e, endpoint))
            .collect();
        let ids = if ids.is_empty() {
            "none".to_string()
        } else {
            ids.join(", ")
        };
        match lines.iter_mut().find(|(_, same)| *same == ids) {
            Some((names, _)) => names.push(api_name(endpoint)),
            None => lines.push((vec![api_name(endpoint)], ids)),
        }
    }
    lines
        .into_iter()
        .map(|(names, ids)| format!("{}: {ids}", names.join(", ")))
        .collect()
}

/// An id as a `check` line shows it on `endpoint`: a virtual id with what it means there.
fn describe(entry: &CatalogEntry<'_>, endpoint: Endpoint) -> String {
    let routes: Vec<_> = entry
        .routes_to
        .iter()
        .filter(|(by, _)| (*by == "embeddings") == (endpoint == Endpoint::Embeddings))
        .collect();
    match routes.as_slice() {
        [] => entry.id.to_string(),
        [(_, model)] => format!("{} ({model})", entry.id),
        many => {
            let routes: Vec<_> = many.iter().map(|(by, m)| format!("{by}: {m}")).collect();
            format!("{} ({})", entry.id, routes.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[providers.sim]
kind = "simulated"

[models.small]
provider = "sim"
tier = "fast"

[models.big]
provider = "sim"
tier = "reasoning"

[models.spare]
provider = "sim"
tier = "reasoning"

[models.embed]
provider = "sim"
kind = "embedding"
"#;

    const KEY: &str = "api_keys = [{ sha256 = \"c7fa7b6662c547fa9cadb4ad755e0f63c0dd1328e4d703b96601d331245f8bf4\" }]\nfast_model = \"small\"\nreasoning_model = \"big\"\n";

    fn tenant(extra: &str) -> std::sync::Arc<Tenant> {
        let policy = format!("{KEY}{extra}");
        let loaded = crate::config::load_texts(CONFIG, &[("acme.toml", &policy)])
            .unwrap_or_else(|p| panic!("{p}"));
        loaded.snapshot.tenants[0].clone()
    }

    fn ids<'a>(entries: &'a [CatalogEntry<'a>], endpoint: Endpoint) -> Vec<&'a str> {
        entries
            .iter()
            .filter(|e| e.serves(endpoint))
            .map(|e| e.id)
            .collect()
    }

    #[test]
    fn an_embedding_model_serves_embeddings_only_and_is_no_tier() {
        let tenant = tenant("embedding_model = \"embed\"\nallowed_models = [\"spare\"]\n");
        let entries = catalog(&tenant);
        for endpoint in CHAT_ENDPOINTS {
            assert_eq!(
                ids(&entries, endpoint),
                ["auto", "fast", "reasoning", "small", "big", "spare"],
                "{endpoint:?}"
            );
        }
        assert_eq!(
            ids(&entries, Endpoint::Embeddings),
            ["auto", "fast", "reasoning", "embed"]
        );
        let embed = entries.iter().find(|e| e.id == "embed").unwrap();
        assert_eq!(embed.kind, EntryKind::Model(ModelKind::Embedding, None));
        assert_eq!(embed.kind.tier(), None);
        let spare = entries.iter().find(|e| e.id == "spare").unwrap();
        assert_eq!(spare.kind.tier(), Some(Tier::Reasoning));
        let auto = &entries[0];
        assert_eq!(
            auto.routes_to,
            [
                ("fast", "small"),
                ("reasoning", "big"),
                ("embeddings", "embed")
            ]
        );
    }

    #[test]
    fn without_an_embedding_model_nothing_serves_embeddings() {
        let tenant = tenant("");
        let entries = catalog(&tenant);
        assert!(ids(&entries, Endpoint::Embeddings).is_empty());
        assert_eq!(entries[1].routes_to, [("fast", "small")]);
        assert_eq!(
            report(&tenant),
            [
                "chat.completions, responses, messages: auto (fast: small, reasoning: big), \
                 fast (small), reasoning (big), small, big",
                "embeddings: none",
            ]
        );
    }

    #[test]
    fn the_report_says_what_each_virtual_id_means_on_each_endpoint() {
        let tenant = tenant("embedding_model = \"embed\"\n");
        assert_eq!(
            report(&tenant),
            [
                "chat.completions, responses, messages: auto (fast: small, reasoning: big), \
                 fast (small), reasoning (big), small, big",
                "embeddings: auto (embed), fast (embed), reasoning (embed), embed",
            ]
        );
    }
}
