//! Request classification for `model: "auto"`: decides fast vs reasoning tier.
//!
//! Owns the classifier interface. Everything here is pure, sync and allocation-light:
//! it runs on the async worker for every `auto` request, so it must stay in microseconds
//! and must bound its work on huge prompts (see `MAX_SCAN_BYTES`).
//!
//! Explicit signals (the `x-deliberate-tier` header, a `reasoning_effort` field) are decided
//! by the caller before the model runs; the model only scores the conversation.

pub mod cached;
pub mod cli;
pub mod courtesy;
pub mod embed;
pub mod encoder;
pub mod eval;
pub mod features;
pub mod grams;
pub mod learned;
pub mod parts;
pub mod rules;
pub mod segment;
pub mod shape;
pub mod stage2;
pub mod train;
pub mod wordpiece;

use std::borrow::Cow;

/// The two tiers a request can be served by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Fast,
    Reasoning,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Fast => "fast",
            Tier::Reasoning => "reasoning",
        }
    }

    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "fast" => Some(Tier::Fast),
            "reasoning" => Some(Tier::Reasoning),
            _ => None,
        }
    }
}

/// Upper bound on the bytes of conversation text any classifier looks at: a 1 MB prompt
/// must not stall a worker. Classifiers look at the head and the tail of long texts.
pub const MAX_SCAN_BYTES: usize = 8 * 1024;

/// The first and the last `half` bytes of `text`, each cut inward to a character boundary:
/// what the bounded readers (rules, segmenter, second stage) keep of a long text. Meant for
/// texts longer than `2 * half`; a shorter one gives overlapping or empty pieces, never a
/// panic.
pub(crate) fn head_and_tail(text: &str, half: usize) -> (&str, &str) {
    let mut head = half.min(text.len());
    while !text.is_char_boundary(head) {
        head = head.saturating_sub(1);
    }
    let mut tail = text.len().saturating_sub(half);
    while !text.is_char_boundary(tail) {
        tail = tail.saturating_add(1);
    }
    (&text[..head], &text[tail..])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// One message of the conversation, reduced to what a classifier needs: who said it and
/// its text (text parts joined; images and other parts dropped).
#[derive(Debug, Clone)]
pub struct Turn<'a> {
    pub role: Role,
    pub text: Cow<'a, str>,
}

/// The conversation as the classifier sees it, in order, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Conversation<'a> {
    pub turns: Vec<Turn<'a>>,
}

impl Conversation<'_> {
    /// The last user turn's text without the greetings and thanks around it
    /// (`courtesy::trim`, as the first stage reads it): what the second stage reads (in the
    /// gateway, on the command line and when its head is trained).
    pub fn last_user_text(&self) -> Option<&str> {
        self.turns
            .iter()
            .rev()
            .find(|t| t.role == Role::User)
            .map(|t| courtesy::trim(&t.text))
    }
}

/// A classifier's verdict on a conversation: a score in [0, 1] (higher = needs reasoning)
/// and up to a few short, human-readable reasons (ASCII, no commas, header-safe), strongest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub score: f32,
    pub reasons: Vec<&'static str>,
}

/// The interface every classifier implements (the rules now, a learned model later).
pub trait Classifier: Send + Sync + 'static {
    fn score(&self, conversation: &Conversation<'_>) -> Scored;

    /// The threshold of the classifier's recommended operating point, used by tenants that
    /// set none.
    fn default_threshold(&self) -> f32 {
        0.5
    }
}

#[cfg(test)]
mod tests {
    use super::head_and_tail;

    #[test]
    fn head_and_tail_cut_inward_to_character_boundaries() {
        // "é" is two bytes: a cut inside it moves out of the middle, never through it.
        let text = "abé日本cdé";
        assert_eq!(head_and_tail(text, 3), ("ab", "dé"));
        assert_eq!(head_and_tail(text, 6), ("abé", "cdé"));
        assert_eq!(head_and_tail(text, 4), ("abé", "cdé"));
        assert_eq!(head_and_tail("short", 10), ("short", "short"));
        assert_eq!(head_and_tail("", 4), ("", ""));
    }
}
