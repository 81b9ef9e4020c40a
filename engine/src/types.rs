//! The value types every engine speaks: lanes, moduli, PRG choices, seeds and mask terms.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::EngineError;

mod sealed {
    pub trait Sealed {}
    impl Sealed for u32 {}
    impl Sealed for u64 {}
}

/// Which machine word carries one vector element.
///
/// Each modulus has exactly one lane kind ([`Modulus::lane_kind`]): `u32` lanes carry 2^1 ..=
/// 2^32, `u64` lanes carry 2^33 ..= 2^64, so that a round at b ≤ 32 pays nothing for the wider
/// moduli and every modulus has one mask layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LaneKind {
    /// `u32` lanes; one keystream word per element.
    U32,
    /// `u64` lanes; two keystream words per element (low word first).
    U64,
}

/// An unsigned integer type that holds one element of a vector mod 2^b.
///
/// Sealed: implemented for `u32` (moduli 2^1 ..= 2^32) and `u64` (moduli 2^33 ..= 2^64).
pub trait Lane:
    sealed::Sealed + bytemuck::Pod + Default + Eq + Ord + fmt::Debug + Send + Sync + 'static
{
    /// Width of the lane in bits; the largest modulus it can carry is 2^BITS.
    const BITS: u32;
    /// The lane kind, for engines that dispatch to per-width kernels.
    const KIND: LaneKind;
    /// Keystream words per element: `BITS / 32`.
    const WORDS: usize;
    /// The value, widened.
    fn to_u64(self) -> u64;
    /// The low `BITS` bits of `x`.
    fn from_u64(x: u64) -> Self;
    /// Addition mod 2^BITS.
    fn wrapping_add(self, other: Self) -> Self;
    /// Subtraction mod 2^BITS.
    fn wrapping_sub(self, other: Self) -> Self;
    /// The element made of keystream words `w[0]` (low) .. `w[WORDS - 1]` (high).
    fn from_words(w: &[u32]) -> Self;
}

impl Lane for u32 {
    const BITS: u32 = 32;
    const KIND: LaneKind = LaneKind::U32;
    const WORDS: usize = 1;
    #[inline]
    fn to_u64(self) -> u64 {
        u64::from(self)
    }
    #[inline]
    fn from_u64(x: u64) -> Self {
        x as u32
    }
    #[inline]
    fn wrapping_add(self, other: Self) -> Self {
        u32::wrapping_add(self, other)
    }
    #[inline]
    fn wrapping_sub(self, other: Self) -> Self {
        u32::wrapping_sub(self, other)
    }
    #[inline]
    fn from_words(w: &[u32]) -> Self {
        w[0]
    }
}

impl Lane for u64 {
    const BITS: u32 = 64;
    const KIND: LaneKind = LaneKind::U64;
    const WORDS: usize = 2;
    #[inline]
    fn to_u64(self) -> u64 {
        self
    }
    #[inline]
    fn from_u64(x: u64) -> Self {
        x
    }
    #[inline]
    fn wrapping_add(self, other: Self) -> Self {
        u64::wrapping_add(self, other)
    }
    #[inline]
    fn wrapping_sub(self, other: Self) -> Self {
        u64::wrapping_sub(self, other)
    }
    #[inline]
    fn from_words(w: &[u32]) -> Self {
        u64::from(w[0]) | u64::from(w[1]) << 32
    }
}

/// The modulus 2^b of the aggregation group.
///
/// Any b in 1..=64 is a modulus. Its lane is `u32` for b ≤ 32 and `u64` above
/// ([`Modulus::lane_kind`]); engines check it where the modulus is used.
///
/// ```
/// use secagg_engine::{EngineError, Modulus};
/// # fn main() -> Result<(), EngineError> {
/// let m = Modulus::new(20)?;
/// assert_eq!((m.bits(), m.mask_u32()), (20, 0xf_ffff));
/// assert_eq!(m.to_string(), "2^20");
/// assert_eq!(Modulus::U32.mask_u32(), u32::MAX);
///
/// assert!(matches!(Modulus::new(0), Err(EngineError::InvalidModulus { bits: 0 })));
/// let wide = Modulus::new(40)?.check_lane::<u32>();
/// assert!(matches!(wide, Err(EngineError::ModulusTooWide { bits: 40, lane_bits: 32 })));
/// assert!(Modulus::new(40)?.check_lane::<u64>().is_ok());
/// let narrow = Modulus::new(20)?.check_lane::<u64>();
/// assert!(matches!(narrow, Err(EngineError::LaneTooWide { bits: 20, lane_bits: 64 })));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Modulus {
    bits: u32,
}

impl Modulus {
    /// The largest exponent any lane type can carry.
    pub const MAX_BITS: u32 = 64;

    /// The modulus 2^`bits`, for `bits` in 1..=64. Whether a given lane can carry it is checked
    /// when the modulus is used ([`Modulus::check_lane`]).
    pub fn new(bits: u32) -> Result<Self, EngineError> {
        if (1..=Self::MAX_BITS).contains(&bits) {
            Ok(Self { bits })
        } else {
            Err(EngineError::InvalidModulus { bits })
        }
    }

    /// 2^32: plain wrapping `u32` arithmetic.
    pub const U32: Modulus = Modulus { bits: 32 };

    /// The exponent b.
    pub fn bits(self) -> u32 {
        self.bits
    }

    /// The all-ones mask 2^b − 1, as a `u64`.
    pub fn mask_u64(self) -> u64 {
        if self.bits >= 64 {
            u64::MAX
        } else {
            (1u64 << self.bits) - 1
        }
    }

    /// The all-ones mask 2^b − 1 for a 32-bit lane. Only meaningful when `bits <= 32`.
    pub fn mask_u32(self) -> u32 {
        if self.bits >= 32 {
            u32::MAX
        } else {
            (1u32 << self.bits) - 1
        }
    }

    /// The lane that carries this modulus: `u32` for b ≤ 32, `u64` for b in 33..=64.
    pub fn lane_kind(self) -> LaneKind {
        if self.bits <= 32 {
            LaneKind::U32
        } else {
            LaneKind::U64
        }
    }

    /// Keystream words per element at this modulus: 1 for b ≤ 32, 2 above (see the mask
    /// specification in the crate docs).
    pub fn words_per_element(self) -> usize {
        match self.lane_kind() {
            LaneKind::U32 => 1,
            LaneKind::U64 => 2,
        }
    }

    /// Fails unless `L` is this modulus's lane ([`Modulus::lane_kind`]): too narrow to carry
    /// it, or a `u64` lane for b ≤ 32 (whose masks take one keystream word per element).
    pub fn check_lane<L: Lane>(self) -> Result<(), EngineError> {
        if self.bits > L::BITS {
            Err(EngineError::ModulusTooWide {
                bits: self.bits,
                lane_bits: L::BITS,
            })
        } else if L::KIND != self.lane_kind() {
            Err(EngineError::LaneTooWide {
                bits: self.bits,
                lane_bits: L::BITS,
            })
        } else {
            Ok(())
        }
    }
}

impl fmt::Debug for Modulus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "2^{}", self.bits)
    }
}

impl fmt::Display for Modulus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "2^{}", self.bits)
    }
}

/// The pseudo-random generator that expands a seed into a mask: ChaCha with 20, 12 or 8 rounds.
///
/// Element i of PRG(seed) is word i of `rand_chacha::ChaCha{20,12,8}Rng::from_seed(seed)`
/// (64-bit block counter from 0, stream 0, read with `next_u32`), reduced mod 2^b.
///
/// ```
/// use rand_chacha::rand_core::{Rng, SeedableRng};
/// use secagg_engine::{Backend, CpuEngine, Modulus, Prg, Seed};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let prg: Prg = "chacha8".parse()?;
/// assert_eq!((prg, prg.rounds()), (Prg::ChaCha8, 8));
/// assert_eq!(Prg::default().to_string(), "chacha20");
///
/// let mut mask = [0u32; 40];
/// CpuEngine::new().expand(&Seed::from_bytes([9; 32]), prg, 0, &mut mask, Modulus::U32)?;
/// let mut rng = rand_chacha::ChaCha8Rng::from_seed([9; 32]);
/// assert!(mask.iter().all(|&w| w == rng.next_u32()));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Prg {
    /// ChaCha with 20 rounds (the default).
    #[default]
    ChaCha20,
    /// ChaCha with 12 rounds.
    ChaCha12,
    /// ChaCha with 8 rounds.
    ChaCha8,
}

impl Prg {
    /// The number of rounds (20, 12 or 8).
    pub fn rounds(self) -> u32 {
        match self {
            Prg::ChaCha20 => 20,
            Prg::ChaCha12 => 12,
            Prg::ChaCha8 => 8,
        }
    }

    /// All variants, strongest first.
    pub const ALL: [Prg; 3] = [Prg::ChaCha20, Prg::ChaCha12, Prg::ChaCha8];

    /// The name used on the command line: `chacha20`, `chacha12` or `chacha8`.
    pub fn name(self) -> &'static str {
        match self {
            Prg::ChaCha20 => "chacha20",
            Prg::ChaCha12 => "chacha12",
            Prg::ChaCha8 => "chacha8",
        }
    }
}

impl fmt::Display for Prg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Prg {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "chacha20" => Ok(Prg::ChaCha20),
            "chacha12" => Ok(Prg::ChaCha12),
            "chacha8" => Ok(Prg::ChaCha8),
            _ => Err(EngineError::UnknownPrg(s.to_owned())),
        }
    }
}

/// A 32-byte ChaCha key that expands into one mask. Zeroized on drop; never printed.
///
/// Not `Clone`: a second owner of the secret is made with [`Seed::duplicate`], visibly.
///
/// ```
/// use secagg_engine::{MaskTerm, Seed, Sign};
///
/// let seed = Seed::from_bytes([42; 32]);
/// assert_eq!(format!("{seed:?}"), "Seed(<redacted>)");
///
/// let term = MaskTerm::minus(seed.duplicate());
/// assert_eq!(term.sign, Sign::Minus);
/// assert_eq!(term.seed.expose_secret(), seed.expose_secret());
/// ```
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Seed([u8; 32]);

impl Seed {
    /// Wraps 32 key bytes. The caller should zeroize its own copy.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The key bytes. Handle with care: this is secret material.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key as eight little-endian words, the layout of ChaCha state words 4..12 (for the
    /// GPU engine's uniforms).
    #[cfg(feature = "gpu")]
    pub(crate) fn key_words(&self) -> [u32; 8] {
        let mut words = [0u32; 8];
        for (w, chunk) in words.iter_mut().zip(self.0.chunks_exact(4)) {
            *w = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        words
    }

    /// A copy, for callers that must hand the same secret to two owners. Deliberately not
    /// `Clone`, so that copies of secrets are visible at the call site.
    pub fn duplicate(&self) -> Self {
        Self(self.0)
    }
}

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Seed(<redacted>)")
    }
}

/// Whether a mask is added to or subtracted from the accumulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sign {
    /// Add the mask.
    Plus,
    /// Subtract the mask.
    Minus,
}

/// One signed mask: PRG(seed), added or subtracted.
///
/// A list of terms is one mask job for [`Backend::apply_masks`](crate::Backend::apply_masks)
/// (or [`Accumulate::mask_range`](crate::Accumulate::mask_range)), applied in one pass. A
/// term and its opposite cancel:
///
/// ```
/// use secagg_engine::{Backend, CpuEngine, MaskTerm, Modulus, Prg, Seed};
/// # fn main() -> Result<(), secagg_engine::EngineError> {
/// let s = Seed::from_bytes([1; 32]);
/// let terms = [MaskTerm::plus(s.duplicate()), MaskTerm::minus(s)];
///
/// let mut acc = vec![1u32, 2, 3];
/// CpuEngine::new().apply_masks(&mut acc, 0, &terms, Prg::ChaCha20, Modulus::U32)?;
/// assert_eq!(acc, [1, 2, 3]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct MaskTerm {
    /// The seed to expand.
    pub seed: Seed,
    /// Add or subtract.
    pub sign: Sign,
}

impl MaskTerm {
    /// PRG(seed) to be added.
    pub fn plus(seed: Seed) -> Self {
        Self {
            seed,
            sign: Sign::Plus,
        }
    }

    /// PRG(seed) to be subtracted.
    pub fn minus(seed: Seed) -> Self {
        Self {
            seed,
            sign: Sign::Minus,
        }
    }
}

/// Where a raw ChaCha keystream starts: the block counter and the 64-bit stream (nonce) id.
///
/// Masks always use stream 0; other streams exist so that known-answer tests (RFC 8439) can
/// exercise every state word of the block function in both engines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StreamPos {
    /// The 64-bit block counter of the first block (state words 12 and 13).
    pub block: u64,
    /// The 64-bit stream id (state words 14 and 15).
    pub stream: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modulus_bounds() {
        assert!(Modulus::new(0).is_err());
        assert!(Modulus::new(65).is_err());
        let m = Modulus::new(17).unwrap();
        assert_eq!(m.mask_u32(), 0x1_ffff);
        assert_eq!(Modulus::new(32).unwrap().mask_u32(), u32::MAX);
        assert!(Modulus::new(33).unwrap().check_lane::<u32>().is_err());
        assert!(Modulus::new(32).unwrap().check_lane::<u32>().is_ok());
        assert!(Modulus::new(32).unwrap().check_lane::<u64>().is_err());
        assert!(Modulus::new(33).unwrap().check_lane::<u64>().is_ok());
        assert!(Modulus::new(64).unwrap().check_lane::<u64>().is_ok());
        assert_eq!(Modulus::new(33).unwrap().words_per_element(), 2);
        assert_eq!(Modulus::new(32).unwrap().words_per_element(), 1);
    }

    #[test]
    fn seed_debug_is_redacted() {
        let s = Seed::from_bytes([0xAB; 32]);
        let text = format!("{s:?} {:?}", MaskTerm::plus(s.duplicate()));
        assert!(!text.to_lowercase().contains("ab"), "{text}");
        assert!(!text.contains("171"), "{text}");
    }

    #[test]
    fn prg_names_round_trip() {
        for p in Prg::ALL {
            assert_eq!(p.name().parse::<Prg>().unwrap(), p);
        }
        assert!("aes".parse::<Prg>().is_err());
    }
}
