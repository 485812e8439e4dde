//! Session stickiness: the tier `auto` chose for a conversation, remembered for the
//! tenant's TTL so a conversation does not flip between models turn by turn.
//!
//! A conversation is named by the client (`x-session-id` header, else the `user` field) or,
//! failing that, by a hash of its opening (system prompt and first user message), which
//! every later turn of the same conversation repeats. Keys are hashed with the tenant name,
//! so tenants never share entries; the cache is bounded in entries and each entry expires
//! after its tenant's TTL (moka's per-entry expiry).

use std::hash::{Hash, Hasher};
use std::time::Duration;
#[allow(clippy::disallowed_types)]
use std::time::Instant as StdInstant;

use moka::sync::Cache;
use serde_json::Value;

use crate::api::ChatRequest;
use crate::classify::Tier;

pub const SESSION_HEADER: &str = "x-session-id";
const MAX_SESSIONS: u64 = 1_000_000;

#[derive(Clone, Copy)]
struct Entry {
    tier: Tier,
    ttl: Duration,
}

struct PerEntryTtl;

// moka's trait names std's Instant; the value is unused here.
#[allow(clippy::disallowed_types)]
impl moka::Expiry<u64, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _key: &u64, value: &Entry, _at: StdInstant) -> Option<Duration> {
        Some(value.ttl)
    }
}

pub struct Sessions {
    cache: Cache<u64, Entry>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            cache: Cache::builder()
                .max_capacity(MAX_SESSIONS)
                .expire_after(PerEntryTtl)
                .build(),
        }
    }
}

/// The conversation's key for `tenant`, or `None` when there is nothing to key on.
pub fn session_key(tenant: &str, header: Option<&[u8]>, request: &ChatRequest) -> Option<u64> {
    let mut h = rustc_hash::FxHasher::default();
    tenant.hash(&mut h);
    if let Some(id) = header.filter(|v| !v.is_empty()) {
        (0u8, id).hash(&mut h);
        return Some(h.finish());
    }
    if let Some(user) = request.body.get("user").and_then(Value::as_str) {
        (1u8, user).hash(&mut h);
        return Some(h.finish());
    }
    let messages = request.messages();
    let first_user = messages
        .iter()
        .position(|m| m.get("role").and_then(Value::as_str) == Some("user"))?;
    2u8.hash(&mut h);
    for m in &messages[..=first_user] {
        // Content as JSON text: exact, and identical on every later turn.
        m.get("role").map(Value::to_string).hash(&mut h);
        m.get("content").map(Value::to_string).hash(&mut h);
    }
    Some(h.finish())
}

impl Sessions {
    pub fn get(&self, key: u64) -> Option<Tier> {
        self.cache.get(&key).map(|e| e.tier)
    }

    /// Remembers `tier` unless the conversation already has one (the TTL runs from the
    /// conversation's first decision).
    pub fn remember(&self, key: u64, tier: Tier, ttl: Duration) {
        self.cache.entry(key).or_insert_with(|| Entry { tier, ttl });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(v: serde_json::Value) -> ChatRequest {
        ChatRequest::parse(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn later_turns_share_the_opening_key_and_tenants_do_not() {
        let first = request(json!({"model": "auto", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "prove it"}]}));
        let later = request(json!({"model": "auto", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "prove it"},
            {"role": "assistant", "content": "..."},
            {"role": "user", "content": "now for n = 10"}]}));
        let other = request(json!({"model": "auto", "messages": [
            {"role": "user", "content": "hello"}]}));
        let k = |t, r| session_key(t, None, r).unwrap();
        assert_eq!(k("a", &first), k("a", &later));
        assert_ne!(k("a", &first), k("b", &first));
        assert_ne!(k("a", &first), k("a", &other));
        assert_ne!(
            session_key("a", Some(b"s1"), &first),
            session_key("a", Some(b"s2"), &first)
        );
    }

    #[test]
    fn the_first_tier_sticks() {
        let sessions = Sessions::default();
        sessions.remember(7, Tier::Reasoning, Duration::from_secs(60));
        sessions.remember(7, Tier::Fast, Duration::from_secs(60));
        assert_eq!(sessions.get(7), Some(Tier::Reasoning));
        assert_eq!(sessions.get(8), None);
    }
}
