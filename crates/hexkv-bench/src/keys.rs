//! Which key a request uses: uniform, or Zipf-distributed (a few hot keys, a long tail), and
//! how keys are spelled.

use rand::Rng;
use rand_distr::{Distribution as _, Zipf};

/// How keys are drawn.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Distribution {
    /// Every key equally often.
    Uniform,
    /// Key of rank k (1-based) with probability proportional to 1/k^exponent.
    Zipf {
        /// The exponent (0.99 is YCSB's default).
        exponent: f64,
    },
}

/// Draws key indexes in `0..keys`.
#[derive(Debug, Clone)]
pub struct KeyChooser {
    keys: u64,
    zipf: Option<Zipf<f64>>,
}

impl KeyChooser {
    /// A chooser over `keys` keys (at least 1).
    pub fn new(keys: u64, distribution: Distribution) -> Result<Self, String> {
        let keys = keys.max(1);
        let zipf = match distribution {
            Distribution::Uniform => None,
            Distribution::Zipf { exponent } => Some(
                Zipf::new(keys as f64, exponent)
                    .map_err(|e| format!("invalid Zipf exponent {exponent}: {e}"))?,
            ),
        };
        Ok(Self { keys, zipf })
    }

    /// The next key index: 0 is the hottest under Zipf.
    pub fn next(&self, rng: &mut impl Rng) -> u64 {
        match &self.zipf {
            None => rng.random_range(0..self.keys),
            // Zipf samples ranks 1..=n as floats.
            Some(zipf) => (zipf.sample(rng) as u64).clamp(1, self.keys) - 1,
        }
    }
}

/// The key of index `i`: `prefix` then the index, zero-padded so every key is `size` bytes
/// (longer when the prefix and the digits need more).
pub fn key_name(prefix: &str, i: u64, size: usize) -> String {
    let digits = size.saturating_sub(prefix.len()).max(1);
    format!("{prefix}{i:0digits$}")
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn counts(chooser: &KeyChooser, keys: usize, draws: usize) -> Vec<usize> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut counts = vec![0; keys];
        for _ in 0..draws {
            counts[chooser.next(&mut rng) as usize] += 1;
        }
        counts
    }

    #[test]
    fn zipf_favours_low_ranks_as_one_over_k() {
        let chooser = KeyChooser::new(100, Distribution::Zipf { exponent: 1.0 }).unwrap();
        let c = counts(&chooser, 100, 200_000);
        assert!(c[0] > c[1] && c[1] > c[4] && c[4] > c[49], "{:?}", &c[..10]);
        // P(1)/P(2) = 2 and P(1)/P(10) = 10 for exponent 1, within sampling noise.
        let ratio = |a: usize, b: usize| c[a] as f64 / c[b] as f64;
        assert!((1.8..2.2).contains(&ratio(0, 1)), "{}", ratio(0, 1));
        assert!((8.5..11.5).contains(&ratio(0, 9)), "{}", ratio(0, 9));
        assert!(c.iter().all(|n| *n > 0), "every key drawn");
    }

    #[test]
    fn uniform_is_flat() {
        let chooser = KeyChooser::new(10, Distribution::Uniform).unwrap();
        let c = counts(&chooser, 10, 100_000);
        assert!(c.iter().all(|n| (9_000..11_000).contains(n)), "{c:?}");
    }

    #[test]
    fn invalid_exponent_is_an_error() {
        assert!(KeyChooser::new(10, Distribution::Zipf { exponent: -1.0 }).is_err());
    }

    #[test]
    fn keys_have_the_asked_size() {
        assert_eq!(key_name("bench/", 42, 16), "bench/0000000042");
        assert_eq!(key_name("bench/", 42, 16).len(), 16);
        assert_eq!(key_name("k", 123, 2), "k123");
    }
}
