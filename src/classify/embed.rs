//! Static token embeddings distilled from all-MiniLM-L6-v2 (see `scripts/classifier/distill.py`).
//!
//! A text's vector is the weighted mean of its tokens' vectors: a table lookup per token,
//! no transformer at run time. Weights down-weight frequent tokens (SIF weighting with the
//! vocabulary id as the frequency rank, which BERT's WordPiece vocabulary approximates), so
//! "the", "is" and punctuation count less than content words. Work is bounded: only the
//! first `HEAD_BYTES` and last `TAIL_BYTES` of a text are read.

use super::wordpiece::WordPiece;

pub const DIMS: usize = 128;
const HEAD_BYTES: usize = 3072;
const TAIL_BYTES: usize = 1024;
/// SIF smoothing: a token's weight is a / (a + p(token)).
const SIF_A: f32 = 1e-4;
/// Token ids per batch of `accumulate`.
const BATCH: usize = 64;
/// Dimensions per register block of `add_rows` (8 SSE registers of 4 lanes).
const LANES: usize = 32;
/// How many times a keyword's English gloss is added: a non-English prompt's own tokens are
/// mostly pieces the English vocabulary spells badly, so the gloss must not drown in them.
/// Chosen by leave-one-language-out AUC on the training data (0, 2, 4, 8: 0.830, 0.840,
/// 0.850, 0.882 on the non-English rows; EVAL.md).
const GLOSS_REPEAT: usize = 8;

pub struct StaticEmbedder {
    tokenizer: WordPiece,
    scale: [f32; DIMS],
    /// Every token's row as shipped: i8 values (vocab × DIMS), borrowed from the table
    /// compiled into the binary, so they are file-backed pages that the kernel maps in as
    /// tokens are seen (3.9 MB at most), not a copy. The request path multiplies each value
    /// by its token's weight as it adds it. An f32 copy with the weights folded in saved
    /// that multiplication (0.17 µs of a 500-character embed; the whole first stage did not
    /// measurably change: a 128-byte row fits the cache better than a 512-byte one) but
    /// cost 15.6 MB of private memory in every process: half the idle gateway (issue 12,
    /// BENCHMARKS.md). The products are the same f32 multiplications, so scores are too.
    values: &'static [u8],
    /// Each token's SIF weight (vocab entries, 122 KB).
    weights: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("token table: {0}")]
    Format(&'static str),
}

impl StaticEmbedder {
    /// `table` is `token_table.bin`; `vocab` is `vocab.txt`.
    pub fn new(table: &'static [u8], vocab: &'static str) -> Result<StaticEmbedder, TableError> {
        let u32_at = |i: usize| -> Result<usize, TableError> {
            let b = table
                .get(i..i + 4)
                .ok_or(TableError::Format("truncated header"))?;
            Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
        };
        if table.get(..4) != Some(b"DLBT") || u32_at(4)? != 1 {
            return Err(TableError::Format("not a version 1 table"));
        }
        let (vocab_size, dims) = (u32_at(8)?, u32_at(12)?);
        if dims != DIMS {
            return Err(TableError::Format("unexpected dimension count"));
        }
        let scale_end = 16 + 4 * DIMS;
        let mut scale = [0f32; DIMS];
        for (d, s) in scale.iter_mut().enumerate() {
            let at = 16 + 4 * d;
            *s = f32::from_le_bytes(table[at..at + 4].try_into().expect("4 bytes"));
        }
        let values = table
            .get(scale_end..)
            .ok_or(TableError::Format("truncated values"))?;
        if values.len() != vocab_size * DIMS {
            return Err(TableError::Format("value count does not match the header"));
        }
        let tokenizer = WordPiece::new(vocab);
        if tokenizer.vocab_size() != vocab_size {
            return Err(TableError::Format("vocabulary and table disagree"));
        }
        let harmonic = (vocab_size as f32).ln();
        let weights = (0..vocab_size)
            .map(|id| {
                let p = 1.0 / ((id as f32 + 1.0) * harmonic);
                SIF_A / (SIF_A + p)
            })
            .collect();
        Ok(StaticEmbedder {
            tokenizer,
            scale,
            values,
            weights,
        })
    }

    /// The built-in table shipped in `models/`.
    pub fn builtin() -> StaticEmbedder {
        StaticEmbedder::new(
            include_bytes!("../../models/token_table.bin"),
            include_str!("../../models/vocab.txt"),
        )
        .expect("the shipped token table is valid")
    }

    /// Adds the weighted token vectors of `text` to `sum`; returns whether it had a token.
    ///
    /// Token ids are collected in batches and each batch is added dimension block by block,
    /// so a block's partial sums stay in registers across the batch instead of making a
    /// round trip through memory per token. Every dimension still adds its tokens in text
    /// order, so the result is bit for bit that of a token-by-token loop.
    fn accumulate(&self, text: &str, sum: &mut [f32; DIMS]) -> bool {
        let mut batch = [0u32; BATCH];
        let mut n = 0;
        let mut any = false;
        let mut add = |id: u32| {
            batch[n] = id;
            n += 1;
            if n == BATCH {
                self.add_rows(&batch, sum);
                n = 0;
                any = true;
            }
        };
        if text.len() <= HEAD_BYTES + TAIL_BYTES {
            self.tokenizer.tokenize(text, &mut add);
        } else {
            self.tokenizer.tokenize(head(text, HEAD_BYTES), &mut add);
            self.tokenizer.tokenize(tail(text, TAIL_BYTES), &mut add);
        }
        self.add_rows(&batch[..n], sum);
        any || n > 0
    }

    /// `sum[d] += weight(id) * row(id)[d]` for each id in order.
    fn add_rows(&self, ids: &[u32], sum: &mut [f32; DIMS]) {
        for (block, out) in sum.chunks_exact_mut(LANES).enumerate() {
            let mut acc = [0f32; LANES];
            acc.copy_from_slice(out);
            for &id in ids {
                let at = id as usize * DIMS + block * LANES;
                let row: &[u8; LANES] = self.values[at..at + LANES].try_into().expect("a block");
                let weight = self.weights[id as usize];
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += weight * f32::from(v as i8);
                }
            }
            out.copy_from_slice(&acc);
        }
    }

    /// Unit-length weighted mean vector of `text` (zeros for a text with no known tokens).
    pub fn embed(&self, text: &str) -> [f32; DIMS] {
        let mut v = [0f32; DIMS];
        let any = self.accumulate(text, &mut v);
        self.finish(v, any)
    }

    /// Like `embed`, over several pieces of one text (the prose lines of a turn) plus
    /// English glosses of words the vocabulary cannot spell well (multilingual keywords,
    /// see `lexicon`), each counted `GLOSS_REPEAT` times. Reads at most `HEAD_BYTES` of
    /// pieces from the start and `TAIL_BYTES` from the end.
    pub fn embed_parts<'g>(
        &self,
        parts: &[&str],
        glosses: impl IntoIterator<Item = &'g str>,
    ) -> [f32; DIMS] {
        let mut batch = [0u32; BATCH];
        let mut n = 0;
        let mut any = false;
        let mut sum = [0f32; DIMS];
        let mut add = |id: u32| {
            batch[n] = id;
            n += 1;
            if n == BATCH {
                self.add_rows(&batch, &mut sum);
                n = 0;
                any = true;
            }
        };
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total <= HEAD_BYTES + TAIL_BYTES {
            for part in parts {
                self.tokenizer.tokenize(part, &mut add);
            }
        } else {
            // Parts before `first_unread` were read whole; the one at it maybe in part.
            let mut budget = HEAD_BYTES;
            let mut first_unread = 0;
            for part in parts {
                if budget == 0 {
                    break;
                }
                let piece = head(part, budget);
                budget -= piece.len();
                self.tokenizer.tokenize(piece, &mut add);
                if piece.len() < part.len() {
                    break;
                }
                first_unread += 1;
            }
            let mut budget = TAIL_BYTES;
            let mut from = parts.len();
            while from > first_unread && budget > 0 {
                from -= 1;
                budget = budget.saturating_sub(parts[from].len());
            }
            for part in &parts[from..] {
                self.tokenizer.tokenize(tail(part, TAIL_BYTES), &mut add);
            }
        }
        for gloss in glosses {
            for _ in 0..GLOSS_REPEAT {
                self.tokenizer.tokenize(gloss, &mut add);
            }
        }
        self.add_rows(&batch[..n], &mut sum);
        self.finish(sum, any || n > 0)
    }

    fn finish(&self, mut v: [f32; DIMS], any: bool) -> [f32; DIMS] {
        if any {
            for (x, s) in v.iter_mut().zip(&self.scale) {
                *x *= s;
            }
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm > 0.0 {
                v.iter_mut().for_each(|x| *x /= norm);
            }
        }
        v
    }
}

fn head(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cos(a: &[f32; DIMS], b: &[f32; DIMS]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn similar_texts_are_closer_than_unrelated_ones() {
        let e = StaticEmbedder::builtin();
        let proof = e.embed("Prove that there are infinitely many primes.");
        let proof2 = e.embed("Show that the set of prime numbers is infinite.");
        let email = e.embed("Write a friendly email inviting the team to lunch on Friday.");
        assert!(cos(&proof, &proof2) > cos(&proof, &email) + 0.1);
        assert!((cos(&proof, &proof) - 1.0).abs() < 1e-4);
    }

    #[test]
    fn bounded_and_total_on_any_input() {
        let e = StaticEmbedder::builtin();
        assert_eq!(e.embed(""), [0.0; DIMS]);
        let huge = "é".repeat(300_000) + "prove it";
        let v = e.embed(&huge);
        assert!(v.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn rejects_a_bad_table() {
        assert!(StaticEmbedder::new(b"nope", "a\nb\n").is_err());
    }
}
