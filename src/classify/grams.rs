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

fn is_cjk(c: char) -> bool {
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

pub fn grams(lines: &[&str], out: &mut [f32]) {
    let mut counts = [0u16; BUCKETS];
    for line in lines {
        let mut stem = SEED;
        let mut letters = 0usize;
        let mut prev_cjk: Option<char> = None;
        let flush = |stem: &mut u64, letters: &mut usize, counts: &mut [u16; BUCKETS]| {
            if *letters >= 3 {
                let b = bucket(*stem);
                counts[b] = counts[b].saturating_add(1);
            }
            *stem = SEED;
            *letters = 0;
        };
        for c in line.chars() {
            if is_cjk(c) {
                flush(&mut stem, &mut letters, &mut counts);
                if let Some(p) = prev_cjk {
                    let b = bucket(mix(mix(SEED ^ 1, p), c));
                    counts[b] = counts[b].saturating_add(1);
                }
                prev_cjk = Some(c);
                continue;
            }
            prev_cjk = None;
            if c.is_alphabetic() {
                if letters < STEM_CHARS {
                    for l in c.to_lowercase() {
                        stem = mix(stem, l);
                    }
                }
                letters += 1;
            } else {
                flush(&mut stem, &mut letters, &mut counts);
            }
        }
        flush(&mut stem, &mut letters, &mut counts);
    }
    // Most buckets are empty (ln 1 = 0): only the filled ones pay for a logarithm.
    out.fill(0.0);
    let mut norm = 0f32;
    for (o, &c) in out.iter_mut().zip(&counts) {
        if c > 0 {
            *o = (1.0 + f32::from(c)).ln();
            norm += *o * *o;
        }
    }
    if norm > 0.0 {
        let inv = norm.sqrt().recip();
        out.iter_mut().for_each(|o| *o *= inv);
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
