//! Feature extraction for the learned classifier: one fixed-length vector per conversation,
//! made of named blocks. The model file lists the blocks it was trained on, so a model and
//! the extractor always agree, and `classify eval --features` can measure what each block
//! adds (EVAL.md).
//!
//! Blocks:
//! - `prose`: the static embedding of the newest user turn's own lines (pasted tables, logs
//!   and code left out, see `segment`), plus the English glosses of multilingual keywords;
//! - `context`: the same for the previous user turn (for short follow-ups), zeros if none;
//! - `rules`: the rule categories' contributions (`rules::RuleSignals`), follow-up carry
//!   included;
//! - `shape`: what the prose holds (numbers, quantities with units, maths symbols,
//!   questions), computed on the prose lines so a paste does not move it;
//! - `dialog`: the conversation's shape (turns, system prompt, tool results, follow-up);
//! - `script`: which writing systems the prose uses;
//! - `parts`: an exercise sheet's layout, sub-questions and given values (`parts`), read
//!   over the turn's head and tail windows (not only the prose: the segmenter files value
//!   lines as data);
//! - `grams`: hashed word stems and CJK character pairs of the prose (`grams`), unit length:
//!   the languages the English token table spells badly get words of their own;
//! - `turn`, `style`, `paste`: the whole-text embedding, length / word / line counts and
//!   paste flags. They mostly encode how the training data was written, not what it asks;
//!   they are kept only to measure that (EVAL.md) and the shipped model leaves them out.
//!
//! System prompts and tool results are not the user's question: they only enter through the
//! dialog block. All work is bounded by the scan windows.

use std::ops::Range;

use super::embed::{StaticEmbedder, DIMS};
use super::rules::{category_signed_name, RuleSignals, RulesClassifier, RULE_CATEGORIES};
use super::{courtesy, grams, parts, segment, shape};
use super::{Conversation, Role, MAX_SCAN_BYTES};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    Prose,
    Context,
    Rules,
    Shape,
    Dialog,
    Script,
    Turn,
    Style,
    Paste,
    Grams,
    Parts,
}

const SHAPE_NAMES: [(&str, &str); 5] = [
    ("+numbers", "-numbers"),
    ("+quantities", "-quantities"),
    ("+math symbols", "-math symbols"),
    ("+questions", "-questions"),
    ("+many constraints", "-many constraints"),
];
const DIALOG_NAMES: [(&str, &str); 4] = [
    ("+conversation length", "-conversation length"),
    ("+system prompt", "-system prompt"),
    ("+tool results", "-tool results"),
    ("+short follow-up", "-short follow-up"),
];
const SCRIPT_NAMES: [(&str, &str); 6] = [
    ("+accented Latin", "-accented Latin"),
    ("+Cyrillic text", "-Cyrillic text"),
    ("+Chinese characters", "-Chinese characters"),
    ("+Japanese kana", "-Japanese kana"),
    ("+Korean text", "-Korean text"),
    ("+other script", "-other script"),
];
const STYLE_NAMES: [(&str, &str); 3] = [
    ("+prompt length", "-prompt length"),
    ("+word count", "-word count"),
    ("+line count", "-line count"),
];
const PASTE_NAMES: [(&str, &str); 2] = [
    ("+code block", "-code block"),
    ("+pasted data", "-pasted data"),
];

impl Block {
    pub const ALL: [Block; 11] = [
        Block::Prose,
        Block::Context,
        Block::Rules,
        Block::Shape,
        Block::Dialog,
        Block::Script,
        Block::Turn,
        Block::Style,
        Block::Paste,
        Block::Grams,
        Block::Parts,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Block::Prose => "prose",
            Block::Context => "context",
            Block::Rules => "rules",
            Block::Shape => "shape",
            Block::Dialog => "dialog",
            Block::Script => "script",
            Block::Turn => "turn",
            Block::Style => "style",
            Block::Paste => "paste",
            Block::Grams => "grams",
            Block::Parts => "parts",
        }
    }

    pub fn parse(name: &str) -> Option<Block> {
        Block::ALL.into_iter().find(|b| b.name() == name)
    }

    pub fn width(self) -> usize {
        match self {
            Block::Prose | Block::Context | Block::Turn => DIMS,
            Block::Rules => RULE_CATEGORIES,
            Block::Shape => SHAPE_NAMES.len(),
            Block::Dialog => DIALOG_NAMES.len(),
            Block::Script => SCRIPT_NAMES.len(),
            Block::Style => STYLE_NAMES.len(),
            Block::Paste => PASTE_NAMES.len(),
            Block::Grams => grams::BUCKETS,
            Block::Parts => parts::NAMES.len(),
        }
    }

    /// Signed name of feature `i` of a named block; `None` for embedding blocks, which are
    /// explained as a whole (`block_reason`).
    pub fn signed_name(self, i: usize) -> Option<(&'static str, &'static str)> {
        match self {
            Block::Rules => Some(category_signed_name(i)),
            Block::Shape => SHAPE_NAMES.get(i).copied(),
            Block::Dialog => DIALOG_NAMES.get(i).copied(),
            Block::Script => SCRIPT_NAMES.get(i).copied(),
            Block::Style => STYLE_NAMES.get(i).copied(),
            Block::Paste => PASTE_NAMES.get(i).copied(),
            Block::Parts => parts::NAMES.get(i).copied(),
            Block::Prose | Block::Context | Block::Turn | Block::Grams => None,
        }
    }

    /// `(+reason, -reason)` for an embedding block as a whole.
    pub fn block_reason(self) -> Option<(&'static str, &'static str)> {
        match self {
            Block::Prose | Block::Turn => Some((
                "+content like reasoning tasks",
                "-content like everyday chat",
            )),
            Block::Context => Some(("+earlier turn needs reasoning", "-earlier turn is chat")),
            Block::Grams => Some((
                "+wording like reasoning tasks",
                "-wording like everyday chat",
            )),
            _ => None,
        }
    }
}

/// The blocks the shipped model uses, in order (`classify train` without `--features`).
pub const DEFAULT_BLOCKS: [Block; 6] = [
    Block::Prose,
    Block::Context,
    Block::Rules,
    Block::Shape,
    Block::Dialog,
    Block::Script,
];

/// Parses a comma-separated block list ("prose,rules,shape").
pub fn parse_blocks(list: &str) -> Result<Vec<Block>, String> {
    let blocks: Vec<Block> = list
        .split(',')
        .map(|n| Block::parse(n.trim()).ok_or_else(|| format!("unknown feature block `{n}`")))
        .collect::<Result<_, _>>()?;
    for (i, b) in blocks.iter().enumerate() {
        if blocks[..i].contains(b) {
            return Err(format!("feature block `{}` listed twice", b.name()));
        }
    }
    if blocks.is_empty() {
        return Err("no feature blocks".into());
    }
    Ok(blocks)
}

/// Where each block sits in the feature vector.
#[derive(Debug, Clone)]
pub struct Layout {
    pub blocks: Vec<(Block, Range<usize>)>,
    pub len: usize,
}

impl Layout {
    pub fn new(blocks: &[Block]) -> Layout {
        let mut at = 0;
        let blocks = blocks
            .iter()
            .map(|&b| {
                let range = at..at + b.width();
                at += b.width();
                (b, range)
            })
            .collect();
        Layout { blocks, len: at }
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.blocks.iter().map(|(b, _)| b.name()).collect()
    }

    pub fn range(&self, block: Block) -> Option<Range<usize>> {
        self.blocks
            .iter()
            .find(|(b, _)| *b == block)
            .map(|(_, r)| r.clone())
    }

    /// `(+name, -name)` of a named (non-embedding) feature.
    pub fn signed_name(&self, i: usize) -> Option<(&'static str, &'static str)> {
        let (block, range) = self.blocks.iter().find(|(_, r)| r.contains(&i))?;
        block.signed_name(i - range.start)
    }
}

pub struct FeatureExtractor {
    embedder: StaticEmbedder,
    rules: RulesClassifier,
    layout: Layout,
}

pub struct Extracted {
    pub values: Vec<f32>,
    pub rules: RuleSignals,
    pub has_user_text: bool,
}

impl FeatureExtractor {
    pub fn new(embedder: StaticEmbedder, blocks: &[Block]) -> FeatureExtractor {
        FeatureExtractor {
            embedder,
            rules: RulesClassifier,
            layout: Layout::new(blocks),
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn embedder(&self) -> &StaticEmbedder {
        &self.embedder
    }

    /// The same extractor with other blocks (shares nothing: loads its own table).
    pub fn with_blocks(blocks: &[Block]) -> FeatureExtractor {
        FeatureExtractor::new(StaticEmbedder::builtin(), blocks)
    }

    pub fn extract(&self, conversation: &Conversation<'_>) -> Extracted {
        // Grown block by block rather than zeroed whole: one 1-3 KB `calloc` (a `rep stosb`)
        // costs more than the small per-block fills.
        let mut values: Vec<f32> = Vec::with_capacity(self.layout.len);
        let mut users = conversation
            .turns
            .iter()
            .rev()
            .filter(|t| t.role == Role::User && !t.text.trim().is_empty());
        // Greetings and thanks around a turn say nothing about its task (`courtesy`).
        let last = users.next().map(|t| courtesy::trim(&t.text));
        let previous = users.next().map(|t| courtesy::trim(&t.text));
        let rules = self.rules.signals_with_newest(conversation, last);
        let mut lines: Vec<&str> = Vec::with_capacity(16);
        let split = last.map(|t| segment::prose(t, &mut lines));
        let text = last.unwrap_or_default();
        for (block, range) in &self.layout.blocks {
            values.resize(range.end, 0.0);
            let out = &mut values[range.clone()];
            match block {
                Block::Prose => {
                    if last.is_some() {
                        out.copy_from_slice(&self.embedder.embed_parts(&lines, rules.glosses()));
                    }
                }
                Block::Context => {
                    if let Some(previous) = previous {
                        let mut context = Vec::with_capacity(8);
                        segment::prose(previous, &mut context);
                        out.copy_from_slice(&self.embedder.embed_parts(&context, []));
                    }
                }
                Block::Turn => {
                    if let Some(last) = last {
                        out.copy_from_slice(&self.embedder.embed(last));
                    }
                }
                Block::Rules => out.copy_from_slice(&rules.contrib),
                Block::Shape => shape::shape(&lines, rules.constraints, out),
                Block::Dialog => dialog(conversation, &lines, previous.is_some(), out),
                Block::Script => script(&lines, out),
                Block::Style => style(text, out),
                Block::Grams => grams::grams(&lines, out),
                Block::Parts => parts::parts(text, out),
                Block::Paste => {
                    out[0] = text.contains("```") as u8 as f32;
                    out[1] = split.is_some_and(|s| s.data_bytes > 0) as u8 as f32;
                }
            }
        }
        Extracted {
            values,
            rules,
            has_user_text: last.is_some(),
        }
    }
}

pub(super) fn log(n: f32) -> f32 {
    (1.0 + n).ln()
}

fn dialog(conversation: &Conversation<'_>, lines: &[&str], has_previous: bool, out: &mut [f32]) {
    let user_turns = conversation
        .turns
        .iter()
        .filter(|t| t.role == Role::User)
        .count();
    out[0] = log(user_turns as f32);
    out[1] = conversation.turns.iter().any(|t| t.role == Role::System) as u8 as f32;
    out[2] = conversation.turns.iter().any(|t| t.role == Role::Tool) as u8 as f32;
    // Words are only counted for a turn that follows another, and only up to the limit.
    out[3] = (has_previous && at_most_words(lines, SHORT_FOLLOW_UP_WORDS)) as u8 as f32;
}

/// A turn of at most this many words after an earlier user turn is a short follow-up.
const SHORT_FOLLOW_UP_WORDS: usize = 25;

/// Whether the lines hold at most `max` whitespace-separated words (as `split_whitespace`
/// counts them); stops reading once there are more.
fn at_most_words(lines: &[&str], max: usize) -> bool {
    let mut words = 0;
    for line in lines {
        words += line.split_whitespace().take(max + 1 - words).count();
        if words > max {
            return false;
        }
    }
    true
}

/// Share of the prose's letters in each script (English, plain ASCII, is the rest).
fn script(lines: &[&str], out: &mut [f32]) {
    let mut counts = [0u32; 6];
    let mut letters = 0u32;
    for line in lines {
        // ASCII bytes are counted without decoding; only non-ASCII characters are decoded.
        let b = line.as_bytes();
        let mut i = 0;
        while i < b.len() {
            // Plain ASCII 16 bytes at a time, in a form the compiler turns into SIMD: an
            // OR of the bytes says none is non-ASCII, then the letters are summed.
            if let Some(chunk) = b.get(i..i + 16) {
                let chunk: &[u8; 16] = chunk.try_into().expect("16 bytes");
                if chunk.iter().fold(0u8, |acc, &x| acc | x) < 0x80 {
                    letters += chunk
                        .iter()
                        .map(|x| u32::from(x.is_ascii_alphabetic()))
                        .sum::<u32>();
                    i += 16;
                    continue;
                }
            }
            if b[i] < 0x80 {
                letters += u32::from(b[i].is_ascii_alphabetic());
                i += 1;
                continue;
            }
            let ch = line[i..].chars().next().expect("a char at a boundary");
            i += ch.len_utf8();
            if !ch.is_alphabetic() {
                continue;
            }
            letters += 1;
            let slot = match ch as u32 {
                0x80..=0x24F | 0x1E00..=0x1EFF => 0,
                0x400..=0x52F => 1,
                0x3400..=0x9FFF | 0xF900..=0xFAFF => 2,
                0x3040..=0x30FF | 0xFF66..=0xFF9F => 3,
                0xAC00..=0xD7AF | 0x1100..=0x11FF | 0x3130..=0x318F => 4,
                _ => 5,
            };
            counts[slot] += 1;
        }
    }
    for (o, c) in out.iter_mut().zip(counts) {
        *o = c as f32 / letters.max(1) as f32;
    }
}

fn style(text: &str, out: &mut [f32]) {
    let scan = &text.as_bytes()[..text.len().min(MAX_SCAN_BYTES)];
    let words = scan
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .count();
    let lines = scan.iter().filter(|&&b| b == b'\n').count();
    out[0] = log(text.len() as f32);
    out[1] = log(words as f32);
    out[2] = log(lines as f32);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_lists_parse_and_lay_out() {
        let blocks = parse_blocks("prose,rules,shape").unwrap();
        let layout = Layout::new(&blocks);
        assert_eq!(layout.len, DIMS + RULE_CATEGORIES + SHAPE_NAMES.len());
        assert_eq!(
            layout.range(Block::Rules),
            Some(DIMS..DIMS + RULE_CATEGORIES)
        );
        assert_eq!(layout.signed_name(DIMS), Some(category_signed_name(0)));
        assert_eq!(layout.signed_name(0), None);
        assert!(parse_blocks("prose,nope").is_err());
        assert!(parse_blocks("rules,rules").is_err());
    }

    #[test]
    fn word_limit_counts_across_lines_and_unicode_spaces() {
        assert!(at_most_words(&["one two", "three"], 3));
        assert!(!at_most_words(&["one two", "three"], 2));
        assert!(!at_most_words(&["一\u{3000}二 three"], 2));
        assert!(at_most_words(&[], 0));
    }

    #[test]
    fn scripts_are_shares_of_letters() {
        let mut out = [0f32; 6];
        script(&["Докажите это", "证明"], &mut out);
        assert!((out[1] - 11.0 / 13.0).abs() < 1e-6 && (out[2] - 2.0 / 13.0).abs() < 1e-6);
        script(&["plain English"], &mut out);
        assert_eq!(out, [0.0; 6]);
    }
}
