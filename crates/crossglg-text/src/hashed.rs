//! The dependency-free text encoder: a bag of word uni- and bigrams hashed into a fixed width and
//! L2-normalised. It stands in when no sentence-encoder weights are at hand (a fresh machine,
//! the demo) and keeps the method runnable everywhere; it knows no synonyms, so expect less from
//! it than from a real encoder.

/// Word uni- and bigrams, hashed (FNV-1a) with a sign bit into `dim` slots, L2-normalised.
pub fn hashed_embedding(text: &str, dim: usize) -> Vec<f32> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect();
    let mut v = vec![0f32; dim.max(1)];
    let mut add = |key: &str| {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in key.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
        v[(h % dim.max(1) as u64) as usize] += sign;
    };
    for w in &words {
        add(w);
    }
    for p in words.windows(2) {
        add(&format!("{} {}", p[0], p[1]));
    }
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_embedding_is_normalised_and_separates_texts() {
        let a = hashed_embedding("the right hand rises to the mouth", 256);
        let b = hashed_embedding("the right hand rises to the mouth", 256);
        let c = hashed_embedding("both feet leave the ground in a jump", 256);
        assert_eq!(a, b);
        let n: f32 = a.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-5);
        let dot: f32 = a.iter().zip(&c).map(|(x, y)| x * y).sum();
        assert!(dot.abs() < 0.5, "unrelated texts too similar: {dot}");
        assert!(hashed_embedding("", 8).iter().all(|x| *x == 0.0));
    }
}
