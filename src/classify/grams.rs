//! Hashed word stems and character pairs: a small bag of words for the learned model.
//!
//! The static embedding comes from an English model; for Chinese, Japanese, Korean or Russian
//! text its WordPiece vocabulary has little more than single characters. This block gives the
//! model those languages' own words to learn from: each word's first `STEM_CHARS` letters
//! (lowercased), and each pair of adjacent characters in a run of Chinese, Japanese or
//! Korean, hashed into `BUCKETS` counts, log-scaled and normalised to unit length (so a long
//! prompt weighs no more than a short one). Bounded by the prose lines it is given.

pub const BUCKETS: usize = 512;
/// Letters of a word that make its stem: enough to tell words apart, few enough to merge
/// inflections ("beweisen", "beweise").
const STEM_CHARS: usize = 6;

/// Han, kana and hangul: scripts written without spaces between words.
pub(super) fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3040..=0x30FF | 0x3400..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF)
}

fn bucket(h: u64) -> usize {
    let h = (h ^ (h >> 31)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 40) as usize % BUCKETS
}

/// FNV-1a step over a char.
fn mix(h: u64, c: char) -> u64 {
    (h ^ u64::from(u32::from(c))).wrapping_mul(0x0000_0100_0000_01B3)
}

const SEED: u64 = 0xCBF2_9CE4_8422_2325;

/// Per ASCII byte: the letter lowercased, or 0 for a byte that is not a letter (one load per
/// byte instead of a class test and a case mapping).
const ASCII_LETTERS: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        if c.is_ascii_alphabetic() {
            t[b] = c.to_ascii_lowercase();
        }
        b += 1;
    }
    t
};

/// Bucket counts, and which buckets are filled, so that the output pass visits only those,
/// in order.
struct Counts {
    counts: [u16; BUCKETS],
    filled: [u64; BUCKETS / 64],
}

impl Counts {
    fn add(&mut self, b: usize) {
        self.counts[b] = self.counts[b].saturating_add(1);
        self.filled[b / 64] |= 1 << (b % 64);
    }
}

pub fn grams(lines: &[&str], out: &mut [f32]) {
    let mut c = Counts {
        counts: [0; BUCKETS],
        filled: [0; BUCKETS / 64],
    };
    for line in lines {
        let mut stem = SEED;
        let mut letters = 0usize;
        let mut prev_cjk: Option<char> = None;
        let flush = |stem: &mut u64, letters: &mut usize, c: &mut Counts| {
            if *letters >= 3 {
                c.add(bucket(*stem));
            }
            *stem = SEED;
            *letters = 0;
        };
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b < 0x80 {
                // ASCII, without decoding: a letter (lowercased) or a word break.
                i += 1;
                prev_cjk = None;
                let lower = ASCII_LETTERS[usize::from(b)];
                if lower != 0 {
                    if letters < STEM_CHARS {
                        stem = mix(stem, char::from(lower));
                    }
                    letters += 1;
                } else {
                    flush(&mut stem, &mut letters, &mut c);
                }
                continue;
            }
            let ch = line[i..].chars().next().expect("a char at a boundary");
            i += ch.len_utf8();
            if is_cjk(ch) {
                flush(&mut stem, &mut letters, &mut c);
                if let Some(p) = prev_cjk {
                    c.add(bucket(mix(mix(SEED ^ 1, p), ch)));
                }
                prev_cjk = Some(ch);
                continue;
            }
            prev_cjk = None;
            if ch.is_alphabetic() {
                if letters < STEM_CHARS {
                    for l in ch.to_lowercase() {
                        stem = mix(stem, l);
                    }
                }
                letters += 1;
            } else {
                flush(&mut stem, &mut letters, &mut c);
            }
        }
        flush(&mut stem, &mut letters, &mut c);
    }
    // Most buckets are empty (ln 1 = 0): only the filled ones pay for a logarithm.
    out.fill(0.0);
    let mut norm = 0f32;
    for_each_set(&c.filled, |b| {
        let v = (1.0 + f32::from(c.counts[b])).ln();
        out[b] = v;
        norm += v * v;
    });
    if norm > 0.0 {
        let inv = norm.sqrt().recip();
        for_each_set(&c.filled, |b| out[b] *= inv);
    }
}

/// Calls `f` with the index of each set bit, in increasing order.
fn for_each_set(bits: &[u64], mut f: impl FnMut(usize)) {
    for (w, &word) in bits.iter().enumerate() {
        let mut rest = word;
        while rest != 0 {
            f(w * 64 + rest.trailing_zeros() as usize);
            rest &= rest - 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(lines: &[&str]) -> Vec<f32> {
        let mut out = vec![0f32; BUCKETS];
        grams(lines, &mut out);
        out
    }

    #[test]
    fn inflections_share_a_stem_and_scripts_are_covered() {
        assert_eq!(v(&["Beweisen"]), v(&["beweise"]));
        assert_ne!(v(&["证明"]), v(&["明证"]));
        assert!(v(&["Докажите"]).iter().any(|x| *x > 0.0));
        assert_eq!(v(&["a b"]), vec![0.0; BUCKETS]);
        let norm: f32 = v(&["请证明根号二是无理数"]).iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-5);
    }
}
