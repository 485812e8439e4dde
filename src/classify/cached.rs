//! Classifier decisions cached by conversation: repeated prompts (evaluation runs, retries,
//! agents re-asking) are scored once.
//!
//! The key is a keyed 64-bit hash (SipHash with a random key per process, so nobody can
//! aim a collision at someone else's prompt) of every turn's role and text. Only
//! conversations up to `MAX_CACHED_TEXT` bytes are cached: hashing a huge prompt would cost
//! more than scoring it, since the classifier reads bounded windows.

use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::time::Duration;

use moka::sync::Cache;

use super::{Classifier, Conversation, Role, Scored};

const MAX_CACHED_TEXT: usize = 16 * 1024;
const MAX_ENTRIES: u64 = 100_000;
const TTL: Duration = Duration::from_secs(3600);

pub struct CachedClassifier<C> {
    inner: C,
    hasher: RandomState,
    cache: Cache<u64, Scored>,
}

impl<C: Classifier> CachedClassifier<C> {
    pub fn new(inner: C) -> Self {
        CachedClassifier {
            inner,
            hasher: RandomState::new(),
            cache: Cache::builder()
                .max_capacity(MAX_ENTRIES)
                .time_to_live(TTL)
                .build(),
        }
    }

    fn key(&self, conversation: &Conversation<'_>) -> Option<u64> {
        let total: usize = conversation.turns.iter().map(|t| t.text.len()).sum();
        if total > MAX_CACHED_TEXT {
            return None;
        }
        let mut h = self.hasher.build_hasher();
        for turn in &conversation.turns {
            let role: u8 = match turn.role {
                Role::System => 0,
                Role::User => 1,
                Role::Assistant => 2,
                Role::Tool => 3,
            };
            role.hash(&mut h);
            turn.text.hash(&mut h);
        }
        Some(h.finish())
    }
}

impl<C: Classifier> Classifier for CachedClassifier<C> {
    fn score(&self, conversation: &Conversation<'_>) -> Scored {
        let Some(key) = self.key(conversation) else {
            return self.inner.score(conversation);
        };
        if let Some(hit) = self.cache.get(&key) {
            return hit;
        }
        let scored = self.inner.score(conversation);
        self.cache.insert(key, scored.clone());
        scored
    }

    fn default_threshold(&self) -> f32 {
        self.inner.default_threshold()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Turn;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts how often it is asked; scores by text length.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl Classifier for Counting {
        fn score(&self, c: &Conversation<'_>) -> Scored {
            self.0.fetch_add(1, Ordering::Relaxed);
            let len: usize = c.turns.iter().map(|t| t.text.len()).sum();
            Scored {
                score: (len % 100) as f32 / 100.0,
                reasons: vec!["counted"],
            }
        }
        fn default_threshold(&self) -> f32 {
            0.42
        }
    }

    fn conv(texts: &[(Role, &'static str)]) -> Conversation<'static> {
        Conversation {
            turns: texts
                .iter()
                .map(|(role, text)| Turn {
                    role: *role,
                    text: (*text).into(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_repeated_conversation_is_scored_once() {
        let cached = CachedClassifier::new(Counting::default());
        let a = conv(&[(Role::User, "prove it")]);
        let first = cached.score(&a);
        assert_eq!(cached.score(&a), first);
        assert_eq!(cached.inner.0.load(Ordering::Relaxed), 1);
        // Same text under another role, or another text, is another conversation.
        cached.score(&conv(&[(Role::System, "prove it")]));
        cached.score(&conv(&[(Role::User, "prove it!")]));
        assert_eq!(cached.inner.0.load(Ordering::Relaxed), 3);
        assert_eq!(cached.default_threshold(), 0.42);
    }

    #[test]
    fn huge_conversations_are_not_cached() {
        let cached = CachedClassifier::new(Counting::default());
        let big: &'static str = Box::leak("x".repeat(MAX_CACHED_TEXT + 1).into_boxed_str());
        let c = conv(&[(Role::User, big)]);
        cached.score(&c);
        cached.score(&c);
        assert_eq!(cached.inner.0.load(Ordering::Relaxed), 2);
    }
}
