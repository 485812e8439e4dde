//! BERT uncased WordPiece tokenisation, enough to look tokens up in the distilled table.
//!
//! Same steps as BERT's basic tokenizer + WordPiece: lowercase, strip accents, split on
//! whitespace and punctuation (CJK characters stand alone), then greedy longest-match
//! sub-words with `##` continuations. Words the vocabulary cannot spell are skipped (they
//! would be `[UNK]`, which carries no meaning for the classifier). The whole-word lookup
//! comes first, so common words cost one hash lookup (Fx hashing: the keys are our own
//! vocabulary, not attacker-chosen, so a DoS-resistant hasher buys nothing here).

use rustc_hash::FxHashMap;

use unicode_normalization::UnicodeNormalization;

/// Longer "words" (base64, minified code) are skipped, as BERT does.
const MAX_WORD_CHARS: usize = 100;

pub struct WordPiece {
    ids: FxHashMap<&'static str, u32>,
    /// Continuations, keyed without their `##` prefix.
    continuations: FxHashMap<&'static str, u32>,
    /// Longest key in bytes: longer candidates cannot match, so they are never looked up.
    max_piece_bytes: usize,
    /// Id of each single ASCII character (punctuation is frequent: no hashing for it).
    ascii: [Option<u32>; 128],
}

impl WordPiece {
    /// `vocab` is BERT's `vocab.txt`: one token per line, the line number is the id.
    pub fn new(vocab: &'static str) -> WordPiece {
        let mut ids = FxHashMap::default();
        ids.reserve(32 * 1024);
        let mut continuations = FxHashMap::default();
        continuations.reserve(8 * 1024);
        for (id, token) in vocab.lines().enumerate() {
            match token.strip_prefix("##") {
                Some(rest) if !rest.is_empty() => continuations.insert(rest, id as u32),
                _ => ids.insert(token, id as u32),
            };
        }
        let max_piece_bytes = ids
            .keys()
            .chain(continuations.keys())
            .map(|k| k.len())
            .max()
            .unwrap_or(0);
        let mut ascii = [None; 128];
        for (b, slot) in ascii.iter_mut().enumerate() {
            let c = [b as u8];
            *slot = std::str::from_utf8(&c)
                .ok()
                .and_then(|k| ids.get(k).copied());
        }
        WordPiece {
            ids,
            continuations,
            max_piece_bytes,
            ascii,
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.ids.len() + self.continuations.len()
    }

    /// Calls `emit` with each token id of `text`, in order.
    pub fn tokenize(&self, text: &str, mut emit: impl FnMut(u32)) {
        let mut word = String::with_capacity(32);
        for c in text.chars() {
            if c.is_whitespace() || c.is_control() {
                self.flush(&mut word, &mut emit);
            } else if c.is_ascii() {
                if c.is_ascii_alphanumeric() {
                    word.push(c.to_ascii_lowercase());
                } else {
                    self.flush(&mut word, &mut emit);
                    if let Some(id) = self.ascii[c as usize] {
                        emit(id);
                    }
                }
            } else if is_cjk(c) || !c.is_alphanumeric() {
                // CJK characters and non-ASCII punctuation/symbols stand alone.
                self.flush(&mut word, &mut emit);
                let mut one = [0u8; 4];
                self.word_pieces(c.encode_utf8(&mut one), &mut emit);
            } else {
                // Lowercase, then drop accents: decompose and skip combining marks.
                for lower in c.to_lowercase() {
                    word.extend(
                        std::iter::once(lower)
                            .nfd()
                            .filter(|m| !is_combining_mark(*m)),
                    );
                }
            }
        }
        self.flush(&mut word, &mut emit);
    }

    fn flush(&self, word: &mut String, emit: &mut impl FnMut(u32)) {
        if !word.is_empty() {
            self.word_pieces(word, emit);
            word.clear();
        }
    }

    fn word_pieces(&self, word: &str, emit: &mut impl FnMut(u32)) {
        if let Some(&id) = self.ids.get(word) {
            emit(id);
            return;
        }
        if word.chars().count() > MAX_WORD_CHARS {
            return;
        }
        // Greedy longest match; all or nothing, as in BERT (an unspellable word is [UNK]).
        let mut pieces: [u32; 16] = [0; 16];
        let mut count = 0;
        let mut start = 0;
        while start < word.len() {
            let table = if start == 0 {
                &self.ids
            } else {
                &self.continuations
            };
            // The whole word was looked up already; never try pieces longer than any key.
            let longest = if start == 0 {
                word.len() - 1
            } else {
                word.len() - start
            };
            let mut end = start + longest.min(self.max_piece_bytes);
            let found = loop {
                if end <= start {
                    break None;
                }
                if word.is_char_boundary(end) {
                    if let Some(&id) = table.get(&word[start..end]) {
                        break Some(id);
                    }
                }
                end -= 1;
            };
            match found {
                Some(id) if count < pieces.len() => {
                    pieces[count] = id;
                    count += 1;
                    start = end;
                }
                _ => return,
            }
        }
        pieces[..count].iter().for_each(|&id| emit(id));
    }
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B820..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

fn is_combining_mark(c: char) -> bool {
    matches!(c as u32, 0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> &'static WordPiece {
        static V: std::sync::OnceLock<WordPiece> = std::sync::OnceLock::new();
        V.get_or_init(|| WordPiece::new(include_str!("../../models/vocab.txt")))
    }

    fn tokens(text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        vocab().tokenize(text, |id| out.push(id));
        out
    }

    #[test]
    fn matches_the_reference_tokenizer() {
        // Ids from the `tokenizers` library with all-MiniLM-L6-v2's tokenizer.json.
        assert_eq!(
            tokens("A man is eating food."),
            vec![1037, 2158, 2003, 5983, 2833, 1012]
        );
        assert_eq!(
            tokens("Prove that sqrt(2) is irrational!"),
            vec![6011, 2008, 5490, 5339, 1006, 1016, 1007, 2003, 23179, 999]
        );
        assert_eq!(
            tokens("func(x) => x**2 + 3y; // comment"),
            vec![
                4569, 2278, 1006, 1060, 1007, 1027, 1028, 1060, 1008, 1008, 1016, 1009, 1017, 2100,
                1025, 1013, 1013, 7615
            ]
        );
        // The reference gives [UNK] [UNK] for the two CJK characters; we skip unknowns.
        assert_eq!(
            tokens("Unbelievably naïve café 你好"),
            vec![4895, 8671, 2666, 3567, 6321, 15743, 7668]
        );
        assert_eq!(vocab().vocab_size(), 30522);
    }

    #[test]
    fn strips_accents() {
        assert_eq!(tokens("naïve"), tokens("naive"));
        assert_eq!(tokens("CAFÉ"), tokens("cafe"));
    }

    #[test]
    fn never_panics_on_odd_input() {
        for text in [
            "",
            "   ",
            "🙂🙂",
            "a\u{0301}",
            &"x".repeat(500),
            "##",
            "\u{0}\u{7f}",
            "ÀÉÎÕÜ",
        ] {
            tokens(text);
        }
    }
}
