//! Simulated embeddings: a deterministic unit vector per (model, input), for demos and
//! tests without keys or network. The same input always gets the same vector; different
//! inputs get unrelated ones (there is no meaning in them: the answer's `model` and the
//! `system_fingerprint` say it is simulated).

use sha2::{Digest, Sha256};

use crate::embeddings::Input;

/// Dimensions when the request does not ask for a number.
pub const DEFAULT_DIMENSIONS: u64 = 256;

/// The vector for `input`: `dimensions` values (default [`DEFAULT_DIMENSIONS`]) from SHA-256
/// in counter mode, scaled to length 1 (as real embedding models return them).
pub fn vector(model: &str, input: &Input, dimensions: Option<u64>) -> Vec<f32> {
    let dimensions = dimensions.unwrap_or(DEFAULT_DIMENSIONS);
    let mut seed = Sha256::new();
    seed.update(model.as_bytes());
    seed.update([0u8]);
    match input {
        Input::Text(s) => seed.update(s.as_bytes()),
        Input::Tokens(t) => t.iter().for_each(|id| seed.update(id.to_le_bytes())),
    }
    let seed = seed.finalize();
    let n = usize::try_from(dimensions).unwrap_or(0);
    let mut out = Vec::with_capacity(n);
    let mut counter = 0u64;
    while out.len() < n {
        let block = Sha256::new()
            .chain_update(seed)
            .chain_update(counter.to_le_bytes())
            .finalize();
        counter = counter.wrapping_add(1);
        for word in block.chunks_exact(4) {
            if out.len() == n {
                break;
            }
            let x = u32::from_le_bytes(word.try_into().expect("4 bytes"));
            // Uniform in [-1, 1].
            out.push((f64::from(x) / f64::from(u32::MAX) * 2.0 - 1.0) as f32);
        }
    }
    let norm = out
        .iter()
        .map(|x| f64::from(*x).powi(2))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        out.iter_mut()
            .for_each(|x| *x = (f64::from(*x) / norm) as f32);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_deterministic_unit_length_and_input_specific() {
        let a = vector("m", &Input::Text("hello".into()), Some(64));
        assert_eq!(a.len(), 64);
        assert_eq!(a, vector("m", &Input::Text("hello".into()), Some(64)));
        assert_ne!(a, vector("m", &Input::Text("hullo".into()), Some(64)));
        assert_ne!(a, vector("other", &Input::Text("hello".into()), Some(64)));
        let norm: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        assert_eq!(vector("m", &Input::Tokens(vec![1, 2]), None).len(), 256);
    }
}
