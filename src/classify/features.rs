//! Feature extraction for the learned classifier: one fixed-length vector per conversation.
//!
//! Blocks, in order:
//! - the static embedding of the last user turn (what it is about, not how it is phrased);
//! - the static embedding of the previous user turn (context for short follow-ups), zeros
//!   when there is none;
//! - the rule categories' contributions (`rules::RuleSignals`), follow-up carry included;
//! - structural counts of the last user turn and of the conversation's shape.
//!
//! System prompts and tool results are not the user's question: they only enter through the
//! shape features. All work is bounded by the embedder's and the rules' scan windows.

use super::embed::{StaticEmbedder, DIMS};
use super::rules::{category_signed_name, RuleSignals, RulesClassifier, RULE_CATEGORIES};
use super::{Conversation, Role, MAX_SCAN_BYTES};

/// Shape features as (`+` name, `-` name): the sign says which way the feature pushed.
pub const STRUCTURAL: [(&str, &str); 12] = [
    ("+prompt length", "-prompt length"),
    ("+word count", "-word count"),
    ("+numbers", "-numbers"),
    ("+math symbols", "-math symbols"),
    ("+code block", "-code block"),
    ("+line count", "-line count"),
    ("+questions", "-questions"),
    ("+conversation length", "-conversation length"),
    ("+system prompt", "-system prompt"),
    ("+tool results", "-tool results"),
    ("+short follow-up", "-short follow-up"),
    ("+non-English text", "-non-English text"),
];

pub const LAST_TURN: usize = 0;
pub const CONTEXT: usize = DIMS;
pub const RULES: usize = 2 * DIMS;
pub const SHAPE: usize = RULES + RULE_CATEGORIES;
pub const NUM_FEATURES: usize = SHAPE + STRUCTURAL.len();

/// `(+name, -name)` of a named feature (rules and shape blocks), for signed reasons.
pub fn signed_name(i: usize) -> Option<(&'static str, &'static str)> {
    match i {
        i if (RULES..SHAPE).contains(&i) => Some(category_signed_name(i - RULES)),
        i if (SHAPE..NUM_FEATURES).contains(&i) => Some(STRUCTURAL[i - SHAPE]),
        _ => None,
    }
}

pub struct FeatureExtractor {
    embedder: StaticEmbedder,
    rules: RulesClassifier,
}

pub struct Extracted {
    pub values: Vec<f32>,
    pub rules: RuleSignals,
    pub has_user_text: bool,
}

impl FeatureExtractor {
    pub fn new(embedder: StaticEmbedder) -> FeatureExtractor {
        FeatureExtractor {
            embedder,
            rules: RulesClassifier,
        }
    }

    pub fn extract(&self, conversation: &Conversation<'_>) -> Extracted {
        let mut values = vec![0f32; NUM_FEATURES];
        let mut users = conversation
            .turns
            .iter()
            .rev()
            .filter(|t| t.role == Role::User && !t.text.trim().is_empty());
        let last = users.next();
        let previous = users.next();
        if let Some(last) = last {
            values[LAST_TURN..CONTEXT].copy_from_slice(&self.embedder.embed(&last.text));
        }
        if let Some(previous) = previous {
            values[CONTEXT..RULES].copy_from_slice(&self.embedder.embed(&previous.text));
        }
        let rules = self.rules.signals(conversation);
        values[RULES..SHAPE].copy_from_slice(&rules.contrib);
        shape(
            conversation,
            last.map(|t| &*t.text),
            previous.is_some(),
            &mut values[SHAPE..],
        );
        Extracted {
            values,
            rules,
            has_user_text: last.is_some(),
        }
    }
}

fn shape(conversation: &Conversation<'_>, last: Option<&str>, has_previous: bool, out: &mut [f32]) {
    let text = last.unwrap_or_default();
    let scan = &text.as_bytes()[..text.len().min(MAX_SCAN_BYTES)];
    // Table-driven and branch-free: one class lookup and one packed-counter add per byte.
    let (mut words, mut numbers) = (0u32, 0u32);
    let (mut in_word, mut in_number) = (0u32, 0u32);
    let mut packed = 0u64;
    for &b in scan {
        let class = u32::from(BYTE_CLASS[usize::from(b)]);
        packed += BYTE_COUNTS[usize::from(b)];
        let word = class & WORD;
        words += word & !in_word;
        in_word = word;
        let digit = (class & DIGIT) >> 1;
        numbers += digit & !in_number & 1;
        in_number = digit | (in_number & (class & DOT) >> 2);
    }
    let field = |i: u32| ((packed >> (16 * i)) & 0xFFFF) as u32;
    let (math, lines, questions, non_ascii) = (field(0), field(1), field(2), field(3));
    let log = |n: f32| (1.0 + n).ln();
    let user_turns = conversation
        .turns
        .iter()
        .filter(|t| t.role == Role::User)
        .count();
    out[0] = log(text.len() as f32);
    out[1] = log(words as f32);
    out[2] = log(numbers as f32);
    out[3] = log(math as f32);
    out[4] = text.contains("```") as u8 as f32;
    // Line breaks, so a one-line prompt has none.
    out[5] = log(lines as f32);
    out[6] = log(questions as f32);
    out[7] = log(user_turns as f32);
    out[8] = conversation.turns.iter().any(|t| t.role == Role::System) as u8 as f32;
    out[9] = conversation.turns.iter().any(|t| t.role == Role::Tool) as u8 as f32;
    out[10] = (has_previous && words <= 25) as u8 as f32;
    out[11] = non_ascii as f32 / (words.max(1)) as f32;
}

const WORD: u32 = 1;
const DIGIT: u32 = 2;
const DOT: u32 = 4;

/// Per byte: `WORD` for ASCII letters and digits and any non-ASCII byte, `DIGIT`, `DOT`.
static BYTE_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || c >= 0x80 {
            t[b] |= WORD as u8;
        }
        if c.is_ascii_digit() {
            t[b] |= DIGIT as u8;
        }
        if c == b'.' {
            t[b] |= DOT as u8;
        }
        b += 1;
    }
    t
};

/// Per byte, the counters it bumps, packed in 16-bit fields (a scan is at most
/// `MAX_SCAN_BYTES` < 2^16 bytes): math symbols, line breaks, question marks, leading bytes
/// of multi-byte characters.
static BYTE_COUNTS: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = match b as u8 {
            b'=' | b'^' | b'+' | b'*' | b'<' | b'>' | b'%' => 1,
            b'\n' => 1 << 16,
            b'?' => 1 << 32,
            0xC0..=0xFF => 1 << 48,
            _ => 0,
        };
        b += 1;
    }
    t
};

const _: () = assert!(MAX_SCAN_BYTES < 1 << 16);
