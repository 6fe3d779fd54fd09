//! The trainer's own random numbers: PCG32 (O'Neill's XSH-RR) seeded through SplitMix64.
//!
//! Owning the generator (instead of `rand`) keeps every draw reproducible across crate
//! versions and platforms, which is what makes "resume gives the same weights as an
//! uninterrupted run" testable. Streams are counter-based: each iteration derives its own
//! generator from `(seed, purpose, iteration)`, so the whole random state of a run is the
//! seed plus the iteration count, and a checkpoint cannot get out of step with the data.

/// SplitMix64's finaliser: a bijective mix that turns nearby counters into unrelated
/// 64-bit values.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What a stream is used for, so that two purposes never share draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Stream {
    /// Initial network weights.
    Init = 1,
    /// The order of the content images in one epoch.
    Shuffle = 2,
    /// Style-image choice, crops and flips of one iteration.
    Augment = 3,
    /// The image pools' decisions in one iteration.
    Pool = 4,
}

/// A PCG32 generator: 64-bit state, 32-bit output, period 2^64 per stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    state: u64,
    inc: u64,
}

impl Rng {
    const MUL: u64 = 6_364_136_223_846_793_005;

    /// A generator for `stream` at `counter` (an iteration or epoch) of a run seeded `seed`.
    pub fn derive(seed: u64, stream: Stream, counter: u64) -> Self {
        let a = mix64(seed ^ mix64(stream as u64));
        let b = mix64(a ^ mix64(counter.wrapping_add(0x632B_E59B_D9B4_E019)));
        Self::from_parts(b, mix64(b ^ a))
    }

    /// PCG's reference seeding (`pcg32_srandom_r`).
    fn from_parts(init_state: u64, seq: u64) -> Self {
        let mut r = Rng {
            state: 0,
            inc: (seq << 1) | 1,
        };
        r.next_u32();
        r.state = r.state.wrapping_add(init_state);
        r.next_u32();
        r
    }

    pub fn next_u32(&mut self) -> u32 {
        let old = self.state;
        self.state = old.wrapping_mul(Self::MUL).wrapping_add(self.inc);
        let xorshifted = (((old >> 18) ^ old) >> 27) as u32;
        let rot = (old >> 59) as u32;
        xorshifted.rotate_right(rot)
    }

    pub fn next_u64(&mut self) -> u64 {
        (u64::from(self.next_u32()) << 32) | u64::from(self.next_u32())
    }

    /// Uniform in [0, 1) with 53 random bits, like Python's `random.random()`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `0..n` without modulo bias (rejection sampling); `n == 0` gives 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n <= 1 {
            return 0;
        }
        // Largest multiple of n that fits, so every residue is equally likely.
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let v = self.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }

    /// Standard normal by Box-Muller (one of the pair; simplicity over speed, as it only
    /// initialises weights).
    pub fn normal(&mut self) -> f64 {
        // 1 - uniform is in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u32> = {
            let mut r = Rng::derive(7, Stream::Augment, 3);
            (0..4).map(|_| r.next_u32()).collect()
        };
        let b: Vec<u32> = {
            let mut r = Rng::derive(7, Stream::Augment, 3);
            (0..4).map(|_| r.next_u32()).collect()
        };
        let c: Vec<u32> = {
            let mut r = Rng::derive(7, Stream::Augment, 4);
            (0..4).map(|_| r.next_u32()).collect()
        };
        let d: Vec<u32> = {
            let mut r = Rng::derive(7, Stream::Pool, 3);
            (0..4).map(|_| r.next_u32()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }

    #[test]
    fn distributions_are_plausible() {
        let mut r = Rng::derive(1, Stream::Init, 0);
        let n = 20_000;
        let mut hits = [0usize; 5];
        let (mut s, mut s2) = (0.0, 0.0);
        for _ in 0..n {
            hits[r.below(5) as usize] += 1;
            let u = r.uniform();
            assert!((0.0..1.0).contains(&u));
            let g = r.normal();
            s += g;
            s2 += g * g;
        }
        for h in hits {
            assert!((3700..4300).contains(&h), "{hits:?}");
        }
        let mean = s / n as f64;
        let var = s2 / n as f64 - mean * mean;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
        let mut p: Vec<u32> = (0..10).collect();
        r.shuffle(&mut p);
        let mut q = p.clone();
        q.sort();
        assert_eq!(q, (0..10).collect::<Vec<_>>());
    }
}
