//! BERT uncased WordPiece tokenisation, enough to look tokens up in the distilled table.
//!
//! Same steps as BERT's basic tokenizer + WordPiece: lowercase, strip accents, split on
//! whitespace and punctuation (CJK characters stand alone), then greedy longest-match
//! sub-words with `##` continuations. Words the vocabulary cannot spell are skipped (they
//! would be `[UNK]`, which carries no meaning for the classifier). The whole-word lookup
//! comes first, so common words cost one hash lookup.
//!
//! Speed (this runs on every request): ASCII is handled byte by byte (no `char` decoding),
//! the current word is built in a fixed stack buffer, and the vocabulary is an
//! open-addressing table whose keys (all but three of BERT's are at most 16 bytes) are
//! stored inline as two `u64`s: a lookup is one multiply-hash of a masked 16-byte load and
//! one integer compare, no `memcmp` call. The keys are our own vocabulary, not
//! attacker-chosen, so a DoS-resistant hasher buys nothing here.

use unicode_normalization::UnicodeNormalization;

/// Longer "words" (base64, minified code) are skipped, as BERT does.
const MAX_WORD_CHARS: usize = 100;
/// A word of more bytes than this has more than `MAX_WORD_CHARS` characters (at most 4 bytes
/// each), so it is skipped: the buffer never needs to hold more.
const WORD_BYTES: usize = 4 * MAX_WORD_CHARS;
/// Keys up to this many bytes are stored inline in the table.
const INLINE: usize = 16;
/// Buffer size: room for a 16-byte load at any position of a word.
const BUF: usize = WORD_BYTES + INLINE;

/// Per ASCII byte: the byte lowercased if it is a letter or digit (part of a word), else 0
/// (one load instead of a class test and a case mapping per byte).
const ASCII_WORD: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() {
            t[b] = c.to_ascii_lowercase();
        }
        b += 1;
    }
    t
};

#[derive(Clone, Copy, Default)]
struct Slot {
    lo: u64,
    hi: u64,
    /// Key length in bytes; 0 for an empty slot.
    len: u32,
    id: u32,
}

/// Byte-string keys to ids: open addressing with linear probing, at most half full.
struct VocabMap {
    slots: Vec<Slot>,
    shift: u32,
    /// Keys longer than `INLINE` (three in BERT's vocabulary), searched linearly.
    long: Vec<(&'static [u8], u32)>,
    /// Distinct keys, the empty key included (never looked up: words are not empty).
    count: usize,
    has_empty: bool,
}

/// The `len <= INLINE` bytes of `buf` at `start`, zero-padded, as two words.
/// `buf` must have `INLINE` readable bytes from `start`.
#[inline(always)]
fn load(buf: &[u8], start: usize, len: usize) -> (u64, u64) {
    let chunk: &[u8; INLINE] = buf[start..start + INLINE].try_into().expect("16 bytes");
    let mut v = u128::from_le_bytes(*chunk);
    if len < INLINE {
        v &= (1u128 << (8 * len)) - 1;
    }
    (v as u64, (v >> 64) as u64)
}

#[inline(always)]
fn hash(lo: u64, hi: u64) -> u64 {
    let m = u128::from(lo ^ 0x243f_6a88_85a3_08d3) * u128::from(hi ^ 0x1319_8a2e_0370_7344);
    ((m >> 64) as u64 ^ m as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl VocabMap {
    fn new(expected: usize) -> VocabMap {
        let slots = (2 * expected).next_power_of_two().max(16);
        VocabMap {
            slots: vec![Slot::default(); slots],
            shift: 64 - slots.trailing_zeros(),
            long: Vec::new(),
            count: 0,
            has_empty: false,
        }
    }

    /// Inserts or replaces (a later duplicate wins, as with `HashMap::insert`).
    fn insert(&mut self, key: &'static str, id: u32) {
        let key = key.as_bytes();
        if key.is_empty() {
            self.count += usize::from(!self.has_empty);
            self.has_empty = true;
        } else if key.len() > INLINE {
            match self.long.iter_mut().find(|(k, _)| *k == key) {
                Some(entry) => entry.1 = id,
                None => {
                    self.long.push((key, id));
                    self.count += 1;
                }
            }
        } else {
            if 2 * (self.count + 1) > self.slots.len() {
                self.grow();
            }
            let mut padded = [0u8; INLINE];
            padded[..key.len()].copy_from_slice(key);
            let (lo, hi) = load(&padded, 0, key.len());
            if self.put(Slot {
                lo,
                hi,
                len: key.len() as u32,
                id,
            }) {
                self.count += 1;
            }
        }
    }

    /// Returns whether the key is new.
    fn put(&mut self, slot: Slot) -> bool {
        let mask = self.slots.len() - 1;
        let mut i = (hash(slot.lo, slot.hi) >> self.shift) as usize;
        loop {
            let s = &mut self.slots[i];
            if s.len == 0 {
                *s = slot;
                return true;
            }
            if s.lo == slot.lo && s.hi == slot.hi && s.len == slot.len {
                s.id = slot.id;
                return false;
            }
            i = (i + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let old = std::mem::take(&mut self.slots);
        self.slots = vec![Slot::default(); 2 * old.len()];
        self.shift -= 1;
        for s in old.into_iter().filter(|s| s.len != 0) {
            self.put(s);
        }
    }

    /// The id of `buf[start..end]`; `buf` must have `INLINE` readable bytes from `start`.
    #[inline(always)]
    fn get(&self, buf: &[u8], start: usize, end: usize) -> Option<u32> {
        let len = end - start;
        debug_assert!(len > 0, "words are not empty");
        if len > INLINE {
            let key = &buf[start..end];
            return self.long.iter().find(|(k, _)| *k == key).map(|e| e.1);
        }
        let (lo, hi) = load(buf, start, len);
        let mask = self.slots.len() - 1;
        let mut i = (hash(lo, hi) >> self.shift) as usize;
        loop {
            let s = &self.slots[i];
            if s.lo == lo && s.hi == hi && s.len == len as u32 {
                return Some(s.id);
            }
            if s.len == 0 {
                return None;
            }
            i = (i + 1) & mask;
        }
    }
}

pub struct WordPiece {
    ids: VocabMap,
    /// Continuations, keyed without their `##` prefix.
    continuations: VocabMap,
    /// Longest key in bytes: longer candidates cannot match, so they are never looked up.
    max_piece_bytes: usize,
    /// Id of each single ASCII character that is neither whitespace nor a control
    /// character (punctuation is frequent: no hashing for it).
    ascii: [Option<u32>; 128],
}

/// The word being built: lowercased, accent-free bytes (lookups mask off what follows).
struct Word {
    buf: [u8; BUF],
    len: usize,
    /// More than `WORD_BYTES` bytes: too long to be tokenised.
    overflow: bool,
}

impl Word {
    #[inline(always)]
    fn push_byte(&mut self, b: u8) {
        if self.len < WORD_BYTES {
            self.buf[self.len] = b;
            self.len += 1;
        } else {
            self.overflow = true;
        }
    }

    fn push_char(&mut self, c: char) {
        let n = c.len_utf8();
        if self.len + n <= WORD_BYTES {
            c.encode_utf8(&mut self.buf[self.len..self.len + n]);
            self.len += n;
        } else {
            self.overflow = true;
        }
    }
}

impl WordPiece {
    /// `vocab` is BERT's `vocab.txt`: one token per line, the line number is the id.
    pub fn new(vocab: &'static str) -> WordPiece {
        let mut ids = VocabMap::new(32 * 1024);
        let mut continuations = VocabMap::new(8 * 1024);
        let mut max_piece_bytes = 0;
        for (id, token) in vocab.lines().enumerate() {
            let key = match token.strip_prefix("##") {
                Some(rest) if !rest.is_empty() => {
                    continuations.insert(rest, id as u32);
                    rest
                }
                _ => {
                    ids.insert(token, id as u32);
                    token
                }
            };
            max_piece_bytes = max_piece_bytes.max(key.len());
        }
        let mut ascii = [None; 128];
        for (b, slot) in ascii.iter_mut().enumerate() {
            let c = char::from(b as u8);
            if !(c.is_whitespace() || c.is_control()) {
                let mut one = [0u8; INLINE];
                one[0] = b as u8;
                *slot = ids.get(&one, 0, 1);
            }
        }
        WordPiece {
            ids,
            continuations,
            max_piece_bytes,
            ascii,
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.ids.count + self.continuations.count
    }

    /// Calls `emit` with each token id of `text`, in order; words the vocabulary cannot
    /// spell are skipped (the static table has nothing to add for them).
    pub fn tokenize(&self, text: &str, emit: impl FnMut(u32)) {
        self.tokenize_as(text, Unknown::Skip, emit);
    }

    /// As BERT's tokenizer does for a model's input: a word the vocabulary cannot spell, or
    /// one of more than `MAX_WORD_CHARS` characters, becomes the single id `unk`, so the
    /// encoder sees as many positions as the reference tokenizer gives it.
    pub fn tokenize_for_model(&self, text: &str, unk: u32, emit: impl FnMut(u32)) {
        self.tokenize_as(text, Unknown::Emit(unk), emit);
    }

    /// The id of `token` (a whole word, or `##piece`), if the vocabulary has it.
    pub fn id(&self, token: &str) -> Option<u32> {
        let (map, key) = match token.strip_prefix("##") {
            Some(rest) if !rest.is_empty() => (&self.continuations, rest),
            _ => (&self.ids, token),
        };
        if key.is_empty() || key.len() > WORD_BYTES {
            return None;
        }
        let mut buf = [0u8; BUF];
        buf[..key.len()].copy_from_slice(key.as_bytes());
        map.get(&buf, 0, key.len())
    }

    fn tokenize_as(&self, text: &str, unknown: Unknown, mut emit: impl FnMut(u32)) {
        let mut word = Word {
            buf: [0; BUF],
            len: 0,
            overflow: false,
        };
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b < 0x80 {
                // ASCII: letters and digits build the word; whitespace and control characters
                // end it; punctuation ends it and stands alone.
                i += 1;
                let lower = ASCII_WORD[usize::from(b)];
                if lower != 0 {
                    word.push_byte(lower);
                } else {
                    self.flush(&mut word, unknown, &mut emit);
                    if let Some(id) = self.ascii[usize::from(b)] {
                        emit(id);
                    }
                }
                continue;
            }
            let c = text[i..].chars().next().expect("a char at a boundary");
            i += c.len_utf8();
            if c.is_whitespace() || c.is_control() {
                self.flush(&mut word, unknown, &mut emit);
            } else if is_cjk(c) || !c.is_alphanumeric() {
                // CJK characters and non-ASCII punctuation/symbols stand alone.
                self.flush(&mut word, unknown, &mut emit);
                let mut one = [0u8; 4 + INLINE];
                let len = c.encode_utf8(&mut one).len();
                self.word_pieces(&one, len, unknown, &mut emit);
            } else {
                // Lowercase, then drop accents: decompose and skip combining marks.
                for lower in c.to_lowercase() {
                    for m in std::iter::once(lower).nfd() {
                        if !is_combining_mark(m, unknown) {
                            word.push_char(m);
                        }
                    }
                }
            }
        }
        self.flush(&mut word, unknown, &mut emit);
    }

    #[inline]
    fn flush(&self, word: &mut Word, unknown: Unknown, emit: &mut impl FnMut(u32)) {
        if word.len > 0 {
            // An overflowing word has more than `MAX_WORD_CHARS` characters: unknown.
            if !word.overflow {
                self.word_pieces(&word.buf, word.len, unknown, emit);
            } else if let Unknown::Emit(unk) = unknown {
                emit(unk);
            }
            word.len = 0;
            word.overflow = false;
        }
    }

    /// Emits the pieces of the word `buf[..len]` (`buf` has `INLINE` bytes of slack).
    fn word_pieces(&self, buf: &[u8], len: usize, unknown: Unknown, emit: &mut impl FnMut(u32)) {
        if len <= self.max_piece_bytes {
            if let Some(id) = self.ids.get(buf, 0, len) {
                emit(id);
                return;
            }
        }
        let word = &buf[..len];
        let is_boundary = |i: usize| i >= len || (word[i] as i8) >= -0x40;
        let unspellable = |emit: &mut dyn FnMut(u32)| {
            if let Unknown::Emit(unk) = unknown {
                emit(unk);
            }
        };
        if word.iter().filter(|&&b| (b as i8) >= -0x40).count() > MAX_WORD_CHARS {
            return unspellable(emit);
        }
        // Greedy longest match; all or nothing, as in BERT (an unspellable word is [UNK]).
        // The static table keeps at most 16 pieces of a word (a longer word is skipped, as it
        // always was); a model gets them all, as BERT gives them (past 16, from `more`, which
        // allocates only then).
        let mut pieces: [u32; 16] = [0; 16];
        let mut more: Vec<u32> = Vec::new();
        let mut count = 0;
        let mut start = 0;
        while start < len {
            let table = if start == 0 {
                &self.ids
            } else {
                &self.continuations
            };
            // The whole word was looked up already; never try pieces longer than any key.
            let longest = if start == 0 { len - 1 } else { len - start };
            let mut end = start + longest.min(self.max_piece_bytes);
            let found = loop {
                if end <= start {
                    break None;
                }
                if is_boundary(end) {
                    if let Some(id) = table.get(buf, start, end) {
                        break Some(id);
                    }
                }
                end -= 1;
            };
            match (found, unknown) {
                (Some(id), _) if count < pieces.len() => pieces[count] = id,
                (Some(id), Unknown::Emit(_)) => more.push(id),
                _ => return unspellable(emit),
            }
            count += 1;
            start = end;
        }
        pieces[..count.min(pieces.len())]
            .iter()
            .chain(&more)
            .for_each(|&id| emit(id));
    }
}

/// What becomes of a word the vocabulary cannot spell.
#[derive(Clone, Copy)]
enum Unknown {
    Skip,
    Emit(u32),
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B820..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

/// The nonspacing marks (Unicode category Mn) BERT's accent stripping drops: Latin, Greek
/// and Cyrillic diacritics always; the kana voicing marks (NFD turns "が" into "か" + U+3099,
/// and the reference tokenizer then sees "か") only for a model's input: the static table's
/// first stage was trained with them kept, and its Japanese scores depend on it
/// (`score_fixture_tests`).
fn is_combining_mark(c: char, unknown: Unknown) -> bool {
    matches!(c as u32, 0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
        || (matches!(unknown, Unknown::Emit(_)) && matches!(c as u32, 0x3099..=0x309A))
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
    fn a_model_gets_every_piece_and_an_unk_where_the_table_skips() {
        let mut with_unk = Vec::new();
        vocab().tokenize_for_model("a 你好 b", 100, |id| with_unk.push(id));
        assert_eq!(with_unk, vec![1037, 100, 100, 1038]);
        assert_eq!(tokens("a 你好 b"), vec![1037, 1038]);
        // A word of more than 16 pieces: the table skips it, a model gets all of them.
        let long = "qzqzqzqzqzqzqzqzqzqzqzqzqzqzqzqzqzqzqzqzqzqzqzqzqz";
        let mut pieces = Vec::new();
        vocab().tokenize_for_model(long, 100, |id| pieces.push(id));
        assert!(pieces.len() > 16 && !pieces.contains(&100), "{pieces:?}");
        assert!(tokens(long).is_empty());
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
