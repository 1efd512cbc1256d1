//! A small seeded random number generator (SplitMix64). Written out here
//! rather than taken from a crate so that a seed gives the same histories
//! on every platform and with every version of relaycb's dependencies:
//! the tests and the benchmarks rely on it.

/// SplitMix64: fast, 64 bits of state, good enough for simulation.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator started from a seed.
    #[cfg(test)]
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A generator for one part (a task) of a seeded whole, independent of
    /// how much the other parts drew.
    pub(crate) fn fork(seed: u64, part: u64) -> Rng {
        let mut mixer = Rng(seed ^ part.wrapping_mul(0xA24B_AED4_963E_E407));
        Rng(mixer.next_u64())
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    pub(crate) fn range(&mut self, low: i64, high: i64) -> i64 {
        debug_assert!(low <= high);
        let span = (high - low) as u64 + 1;
        low + (self.next_u64() % span) as i64
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }

    /// One element of a non-empty slice.
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next_u64() % items.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn a_seed_always_gives_the_same_numbers() {
        let mut rng = Rng::new(42);
        let drawn: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        // Computed independently by a transcription of SplitMix64 in Python.
        assert_eq!(
            drawn,
            [
                13679457532755275413,
                2949826092126892291,
                5139283748462763858
            ]
        );
    }

    #[test]
    fn ranges_stay_inside_their_bounds() {
        let mut rng = Rng::new(7);
        for _ in 0..1000 {
            let n = rng.range(-3, 3);
            assert!((-3..=3).contains(&n));
        }
    }
}
