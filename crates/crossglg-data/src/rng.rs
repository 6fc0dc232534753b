//! Seeded randomness that does not depend on thread count or visiting order: every sample
//! gets its own generator, derived from `(seed, epoch, index)` by a fixed hash.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// SplitMix64 finaliser: a cheap, well-mixed 64-bit hash step.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One 64-bit value from an ordered list of words (order matters: `(1, 2) != (2, 1)`).
pub fn hash_words(words: &[u64]) -> u64 {
    words
        .iter()
        .fold(0x6A09_E667_F3BC_C908, |h, &w| mix64(h ^ mix64(w)))
}

/// The generator for one sample in one epoch.
pub fn sample_rng(seed: u64, epoch: u64, index: u64) -> StdRng {
    StdRng::seed_from_u64(hash_words(&[seed, epoch, index]))
}

/// A generator for any ordered key, e.g. `(seed, "subject", subject id)`.
pub fn keyed_rng(words: &[u64]) -> StdRng {
    StdRng::seed_from_u64(hash_words(words))
}

/// Uniform in `[lo, hi]` (`lo` when the interval is empty or reversed).
pub fn uniform<R: Rng + ?Sized>(rng: &mut R, lo: f32, hi: f32) -> f32 {
    if hi > lo {
        lo + (hi - lo) * rng.random::<f32>()
    } else {
        lo
    }
}

/// Standard normal by Box-Muller (avoids a `rand_distr` dependency for one function).
pub fn normal<R: Rng + ?Sized>(rng: &mut R) -> f32 {
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_stream_and_keys_differ() {
        let a: Vec<u32> = (0..4).map(|_| sample_rng(1, 2, 3).random()).collect();
        let b: Vec<u32> = (0..4).map(|_| sample_rng(1, 2, 3).random()).collect();
        assert_eq!(a, b);
        assert_ne!(hash_words(&[1, 2, 3]), hash_words(&[1, 3, 2]));
        assert_ne!(hash_words(&[0, 0, 1]), hash_words(&[0, 1, 0]));
    }
}
