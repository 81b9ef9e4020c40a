//! Independent references for the engine tests: masks computed straight from `rand_chacha`
//! (the specification) and from the RustCrypto `chacha20` crate (a second implementation),
//! plus a seeded RNG for inputs.

#![allow(dead_code)]

use rand_chacha::rand_core::{Rng, SeedableRng};
use secagg_engine::{MaskTerm, Modulus, Prg, Seed, Sign};

/// Where one pass of the GPU mask kernel stops being exact on llvmpipe (lavapipe), by PRG:
/// the most terms one invocation expands right, and one more. llvmpipe ends every loop of an
/// invocation once 65,535 loop iterations have run in it, all loops together. A ChaCha20 or
/// ChaCha12 term costs ROUNDS/2 + 2 of them (one of the terms loop, ROUNDS/2 of the rounds
/// loop and one for the pass that ends it); a term is exact while its rounds loop can still
/// go round, so n terms are exact while 12(n − 1) + 9 < 65,535 (ChaCha20: n ≤ 5461) or
/// 8(n − 1) + 5 < 65,535 (ChaCha12: n ≤ 8192). llvmpipe unrolls ChaCha8's four-iteration
/// rounds loop, so a ChaCha8 term costs one: n ≤ 65,535.
pub const PASS_EDGES: [(Prg, [usize; 2]); 3] = [
    (Prg::ChaCha20, [5461, 5462]),
    (Prg::ChaCha12, [8192, 8193]),
    (Prg::ChaCha8, [65_535, 65_536]),
];

/// The input generator for one test, seeded from the printed test seed.
pub struct Inputs(rand_chacha::ChaCha8Rng);

impl Inputs {
    pub fn new(test: &str) -> Self {
        Self(rand_chacha::ChaCha8Rng::seed_from_u64(
            secagg_engine::testing::test_seed(test),
        ))
    }

    pub fn u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    pub fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in 0..n (n > 0); the modulo bias is irrelevant for picking test cases.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.next_u64() % n
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    pub fn seed_bytes(&mut self) -> [u8; 32] {
        let mut b = [0u8; 32];
        self.0.fill_bytes(&mut b);
        b
    }

    /// Where upload number `upload` of a test lands in an accumulator of `len`: the whole of
    /// it first, then random spans starting at 1 or later.
    pub fn upload_span(&mut self, len: usize, upload: usize) -> (usize, usize) {
        if upload == 0 {
            return (0, len);
        }
        let offset = 1 + self.below(len as u64 / 2) as usize;
        (offset, 1 + self.below((len - offset) as u64) as usize)
    }

    pub fn vec(&mut self, len: usize) -> Vec<u32> {
        (0..len).map(|_| self.0.next_u32()).collect()
    }

    /// `n` terms with random seeds and signs; also returns the raw seeds for the reference.
    pub fn terms(&mut self, n: usize) -> (Vec<MaskTerm>, Vec<([u8; 32], Sign)>) {
        let raw: Vec<([u8; 32], Sign)> = (0..n)
            .map(|_| {
                let sign = if self.u32() & 1 == 0 {
                    Sign::Plus
                } else {
                    Sign::Minus
                };
                (self.seed_bytes(), sign)
            })
            .collect();
        let terms = raw
            .iter()
            .map(|(s, sign)| MaskTerm {
                seed: Seed::from_bytes(*s),
                sign: *sign,
            })
            .collect();
        (terms, raw)
    }
}

/// Keystream words `offset .. offset + len` of PRG(seed), by `rand_chacha` (the spec).
pub fn spec_stream(seed: [u8; 32], prg: Prg, offset: u64, len: usize) -> Vec<u32> {
    macro_rules! read {
        ($t:ty) => {{
            let mut r = <$t>::from_seed(seed);
            r.set_word_pos(u128::from(offset));
            (0..len).map(|_| r.next_u32()).collect()
        }};
    }
    match prg {
        Prg::ChaCha20 => read!(rand_chacha::ChaCha20Rng),
        Prg::ChaCha12 => read!(rand_chacha::ChaCha12Rng),
        Prg::ChaCha8 => read!(rand_chacha::ChaCha8Rng),
    }
}

/// The same words by the `chacha20` crate, with an explicit stream id.
pub fn oracle_stream(seed: [u8; 32], prg: Prg, stream: u64, word: u128, len: usize) -> Vec<u32> {
    use chacha20::rand_core::{Rng as _, SeedableRng as _};
    macro_rules! read {
        ($t:ty) => {{
            let mut r = <$t>::from_seed(seed);
            // set_stream resets the position, so it goes first.
            r.set_stream(stream);
            r.set_word_pos(word);
            (0..len).map(|_| r.next_u32()).collect()
        }};
    }
    match prg {
        Prg::ChaCha20 => read!(chacha20::ChaCha20Rng),
        Prg::ChaCha12 => read!(chacha20::ChaCha12Rng),
        Prg::ChaCha8 => read!(chacha20::ChaCha8Rng),
    }
}

/// Packs `values` at `bits` each, bit by bit, into the codec's little-endian bit stream: an
/// obviously correct reference, independent of the engines' packers and unpackers.
pub fn pack_bits<T: Copy + Into<u64>>(values: &[T], bits: u32) -> Vec<u8> {
    let mut out = vec![0u8; (values.len() * bits as usize).div_ceil(8)];
    for (i, v) in values.iter().enumerate() {
        let v: u64 = (*v).into();
        for j in 0..bits as usize {
            if (v >> j) & 1 == 1 {
                let bit = i * bits as usize + j;
                out[bit / 8] |= 1 << (bit % 8);
            }
        }
    }
    out
}

/// Owned runs `(offset, packed, count)` as the borrowed runs `add_packed_runs` takes.
pub fn as_runs(runs: &[(usize, Vec<u8>, usize)]) -> Vec<(usize, &[u8], usize)> {
    runs.iter()
        .map(|(o, p, n)| (*o, p.as_slice(), *n))
        .collect()
}

/// `acc + Σ ±PRG(seed)[offset..]` mod 2^b, computed element by element from the spec.
pub fn reference_apply(
    acc: &[u32],
    offset: u64,
    terms: &[([u8; 32], Sign)],
    prg: Prg,
    modulus: Modulus,
) -> Vec<u32> {
    let mut out = acc.to_vec();
    for (seed, sign) in terms {
        let ks = spec_stream(*seed, prg, offset, acc.len());
        for (o, k) in out.iter_mut().zip(ks) {
            *o = match sign {
                Sign::Plus => o.wrapping_add(k),
                Sign::Minus => o.wrapping_sub(k),
            };
        }
    }
    let mask = mask_of(modulus);
    out.iter_mut().for_each(|o| *o &= mask);
    out
}

/// 2^b − 1, computed here rather than trusted from the crate under test.
pub fn mask_of(modulus: Modulus) -> u32 {
    let b = modulus.bits();
    if b == 32 { u32::MAX } else { (1u32 << b) - 1 }
}

/// The index and values of the first difference, for readable failures on long vectors.
pub fn assert_same(what: &str, got: &[u32], want: &[u32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "{what}: first difference at element {i} of {}: got {:#010x}, want {:#010x}",
            got.len(),
            got[i],
            want[i]
        );
    }
}

/// Hex (whitespace ignored) to bytes.
pub fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}
