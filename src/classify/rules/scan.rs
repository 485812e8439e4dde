//! The rules' two scans of one lowercased user turn: a byte pass for symbols (operator
//! expressions, big-O, Unicode maths, code marks, question marks) and a word pass that looks
//! each word, and each pair of adjacent words, up in the keyword tables. They count into
//! `Stats`; `combine` (mod.rs) turns the counts into category contributions.

use super::keywords::{Index, Keyword, MAX_KEYWORDS, NFEAT};

/// What the scans count in one turn.
#[derive(Debug, Default)]
pub(super) struct Stats {
    /// Sum of the weights of the distinct keywords seen, per feature.
    pub(super) sum: [f32; NFEAT],
    /// Keyword occurrences, per feature.
    pub(super) count: [u16; NFEAT],
    pub(super) words: u32,
    pub(super) numbers: u32,
    pub(super) exprs: u32,
    pub(super) math_symbols: u32,
    pub(super) code_marks: u32,
    pub(super) questions: u32,
    pub(super) big_o: u32,
    /// Single letters with "'s" ("r's"): counting characters.
    pub(super) letter_counts: u32,
}

/// Lowercase (ASCII) `text` into `buf`; texts over `budget` keep their head and tail.
pub(super) fn fill_lowercase(text: &str, budget: usize, buf: &mut String) {
    buf.clear();
    if text.len() <= budget {
        buf.push_str(text);
    } else {
        let (head, tail) = crate::classify::head_and_tail(text, budget / 2);
        buf.push_str(head);
        buf.push('\n');
        buf.push_str(tail);
    }
    buf.make_ascii_lowercase();
}

/// Byte pass: operator expressions, big-O, Unicode math symbols, code marks, question marks.
pub(super) fn scan_symbols(b: &[u8], st: &mut Stats) {
    const NONE: u8 = 0;
    const VAR: u8 = 1;
    const NUMBER: u8 = 2;
    let mut tok_len = 0usize; // length of the current alphanumeric run
    let mut operand = NONE; // what the last significant thing was
    let mut pending = 0u8; // operator waiting for its right operand
    let mut prev = b' ';
    for (i, &c) in b.iter().enumerate() {
        let next = b.get(i + 1).copied().unwrap_or(b' ');
        if c.is_ascii_alphanumeric() {
            if tok_len == 0 {
                let digit = c.is_ascii_digit();
                if pending != 0 && (pending != b'/' || digit) {
                    st.exprs += 1;
                }
                pending = 0;
                if c == b'o'
                    && next == b'('
                    && b"nmkvel12".contains(&b.get(i + 2).copied().unwrap_or(b' '))
                {
                    st.big_o += 1;
                }
                operand = if digit { NUMBER } else { VAR };
            }
            tok_len += 1;
            if operand == VAR && tok_len > 2 {
                operand = NONE; // a word, not a variable
            }
            prev = c;
            continue;
        }
        let in_number = tok_len > 0 && operand == NUMBER && next.is_ascii_digit();
        if in_number && (c == b'.' || c == b',') {
            prev = c;
            continue; // "3.14", "5,000"
        }
        tok_len = 0;
        match c {
            b' ' | b'\t' | b'$' | b'%' => {}
            b'+' | b'*' | b'^' | b'=' | b'<' | b'>' | b'/' | b'-' => {
                const OPS: &[u8] = b"+*^=<>/-!|&:";
                let compound = OPS.contains(&prev) || (OPS.contains(&next) && next != b'-');
                let spaced = c != b'-' || prev == b' ';
                let numeric = c != b'/' || operand == NUMBER;
                pending = if operand != NONE && !compound && spaced && numeric {
                    c
                } else {
                    0
                };
                operand = NONE;
            }
            b'(' => {
                if pending != 0 {
                    st.exprs += 1;
                }
                pending = 0;
                operand = NONE;
            }
            b')' => {
                pending = 0;
                operand = VAR;
            }
            _ => {
                match (c, next) {
                    (b'{' | b'}' | b';', _) => st.code_marks += 1,
                    (b'?', _) => st.questions += 1,
                    // U+2200..U+22FF (∀ ∑ √ ∞ ∫ ≠ ≤ ≥ ...), superscripts ¹ ² ³, π.
                    (0xE2, 0x88..=0x8B) | (0xC2, 0xB2 | 0xB3 | 0xB9) | (0xCF, 0x80) => {
                        st.math_symbols += 1;
                    }
                    _ => {}
                }
                pending = 0;
                operand = NONE;
            }
        }
        prev = c;
    }
}

/// Bytes that make up a word: ASCII letters and digits, the apostrophe, and any byte of a
/// non-ASCII character. A table: this is asked once or twice for every byte of the turn.
const WORD_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'\'' || c >= 0x80;
        b += 1;
    }
    t
};

fn is_word_byte(b: u8) -> bool {
    WORD_BYTES[usize::from(b)]
}

/// Word pass: every word, and every pair of adjacent words in a sentence, is looked up.
pub(super) fn scan_words(b: &[u8], index: &Index, st: &mut Stats) {
    let mut seen = [0u64; MAX_KEYWORDS / 64];
    let mut hit = |k: &Keyword, st: &mut Stats| {
        let f = k.feat as usize;
        st.count[f] = st.count[f].saturating_add(1);
        let (word, bit) = (usize::from(k.id) / 64, 1u64 << (k.id % 64));
        if let Some(w) = seen.get_mut(word) {
            if *w & bit == 0 {
                *w |= bit;
                st.sum[f] += k.weight;
            }
        }
    };
    let mut prev: Option<u16> = None; // id of the previous word, if it is in the tables
    let mut i = 0;
    while i < b.len() {
        if !is_word_byte(b[i]) {
            if matches!(b[i], b'.' | b'!' | b'?' | b'\n') {
                prev = None; // pairs do not span sentences
            }
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is_word_byte(b[i]) {
            i += 1;
        }
        let mut tok = &b[start..i];
        while let [b'\'', rest @ ..] = tok {
            tok = rest;
        }
        while let [rest @ .., b'\''] = tok {
            tok = rest;
        }
        let Some(&first) = tok.first() else { continue };
        st.words += 1;
        if first.is_ascii_digit() {
            st.numbers += 1;
            prev = None;
            continue;
        }
        // "how many r's", "count the e's": a question about single characters.
        if let [c, b'\'', b's'] = tok {
            if c.is_ascii_alphabetic() {
                st.letter_counts += 1;
            }
        }
        // "dijkstra's" is "dijkstra" unless the table has the whole word ("geht's").
        let bare = || tok.strip_suffix(b"'s").and_then(|t| index.words.get(t));
        let word = index.words.get(tok).or_else(bare);
        if let Some(k) = word.and_then(|w| w.keyword.as_ref()) {
            hit(k, st);
        }
        let id = word.map(|w| w.id);
        if let (Some(a), Some(b)) = (prev, id) {
            if let Some(k) = index.pairs.get(&(a, b)) {
                hit(k, st);
            }
        }
        prev = id;
    }
}
