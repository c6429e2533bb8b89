//! Hand-written, platform-independent pseudo random numbers.
//!
//! Everything the seed generator produces comes from [`Rng`], a
//! xoshiro256** generator seeded through splitmix64. Each logical stream
//! (one document, one chunk, the topic centroids, ...) gets its own
//! generator derived from `(seed, stream, index)`, so a row can be
//! regenerated without replaying the rows before it and the output does
//! not depend on iteration order or thread scheduling.
//!
//! No transcendental float function is used anywhere: Gaussian noise is the
//! Irwin–Hall sum of twelve 32-bit uniforms minus six, computed exactly in
//! integer arithmetic and converted once, so the result is bit-identical on
//! every IEEE-754 machine.

/// Stream tags; mixed into the per-stream seed so streams never overlap.
pub(crate) const STREAM_CENTROIDS: u64 = 0x43_45_4e_54; // "CENT"
pub(crate) const STREAM_LAYOUT: u64 = 0x4c_41_59_4f; // "LAYO"
pub(crate) const STREAM_DOC_CORE: u64 = 0x44_43_4f_52; // "DCOR"
pub(crate) const STREAM_DOC_TEXT: u64 = 0x44_54_58_54; // "DTXT"
pub(crate) const STREAM_CHUNK: u64 = 0x43_48_4e_4b; // "CHNK"
pub(crate) const STREAM_CHUNK_EMB: u64 = 0x43_45_4d_42; // "CEMB"
pub(crate) const STREAM_HARD_EMB: u64 = 0x48_45_4d_42; // "HEMB"

/// The splitmix64 output function (a bijective 64-bit mixer).
#[inline]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// splitmix64: used only to expand a 64-bit key into xoshiro state.
struct SplitMix64(u64);

impl SplitMix64 {
    #[inline]
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }
}

/// xoshiro256** (Blackman & Vigna), 2^256-1 period, passes BigCrush.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator for `(seed, stream, index)`; different triples give
    /// statistically independent sequences.
    pub fn for_stream(seed: u64, stream: u64, index: u64) -> Self {
        let key = mix64(seed ^ mix64(stream.wrapping_add(mix64(index ^ 0x5eed))));
        let mut sm = SplitMix64(key);
        let mut s = [0u64; 4];
        for word in &mut s {
            *word = sm.next_u64();
        }
        if s == [0; 4] {
            // The all-zero state is the one fixed point; unreachable in
            // practice (splitmix never yields four zeros) but cheap to rule out.
            s[0] = 1;
        }
        Rng { s }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform integer in `0..n` (Lemire's multiply-shift; `n == 0` gives 0).
    /// The tiny modulo bias of the plain multiply-shift is irrelevant here
    /// and keeps the number of draws fixed, which keeps streams aligned.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform index into a slice of length `n`.
    #[inline]
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// Uniform integer in `lo..=hi` (requires `lo <= hi`).
    #[inline]
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `num / den`.
    #[inline]
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// Approximately standard normal: Irwin–Hall sum of 12 uniforms minus 6.
    ///
    /// The twelve uniforms are the 32-bit halves of six draws; their sum is
    /// an exact integer below 2^36, so the single conversion to `f64` and the
    /// scaling by 2^-32 are exact and the result is the same everywhere.
    #[inline]
    pub fn gaussian(&mut self) -> f64 {
        let mut sum: u64 = 0;
        for _ in 0..6 {
            let x = self.next_u64();
            sum += (x & 0xffff_ffff) + (x >> 32);
        }
        sum as f64 * (1.0 / 4_294_967_296.0) - 6.0
    }

    /// 16 random bytes shaped as an RFC 4122 version-4 UUID.
    pub fn uuid_v4(&mut self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.next_u64().to_be_bytes());
        b[8..].copy_from_slice(&self.next_u64().to_be_bytes());
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        b
    }
}

/// Hyphenated lower-case form of a 16-byte UUID.
pub fn uuid_string(id: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    push_uuid(&mut s, id);
    s
}

/// Append the hyphenated lower-case form of `id` to `out`.
pub(crate) fn push_uuid(out: &mut String, id: &[u8; 16]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in id.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 0x0f)] as char);
    }
}
