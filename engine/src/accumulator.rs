//! Accumulators that live with their engine.
//!
//! A server sums n masked inputs of m elements and then removes the masks once. With the
//! slice API ([`Backend::add`], [`Backend::apply_masks`]) a GPU engine would copy the whole
//! accumulator to the device and back for every input. An [`Accumulate`] engine keeps the
//! accumulator where it computes: plain memory on the CPU, device memory on a GPU. Inputs
//! arrive as the wire carries them, packed at b bits, and are unpacked inside the add; the
//! mask pass runs in place; the result is read out once.
//!
//! An accumulator holds the lanes of its modulus (`u32` for b ≤ 32, `u64` for b in 33..=64):
//! [`add_lanes`](Accumulate::add_lanes) and [`read_out_lanes`](Accumulate::read_out_lanes)
//! take them, and fail with [`EngineError::ModulusTooWide`] or [`EngineError::LaneTooWide`]
//! given the other kind. `add_words`, `read_out` and `read_out_owned` are their `u32` forms.
//!
//! The packed format (the wire codec's) is [`crate::packed`]'s: element i of a packed run
//! occupies bits `i·b .. (i+1)·b` of a little-endian bit stream, and a run of `count` elements
//! is exactly [`packed_len`](crate::packed::packed_len) bytes, starting at bit 0 of its first
//! byte whatever its element offset in the accumulator.

use crate::packed::check_len;
use crate::{Backend, EngineError, Lane, MaskTerm, Modulus, Prg};

/// An engine that owns accumulators. Bit-identical across engines, like [`Backend`].
///
/// A server makes one accumulator per round, adds every client's masked input as it arrives
/// (in chunks, straight from the wire), removes the masks with
/// [`mask_range`](Accumulate::mask_range), and reads the sum out once.
///
/// ```
/// use secagg_engine::{Accumulate, CpuEngine, Modulus, packed_len};
/// # fn main() -> Result<(), secagg_engine::EngineError> {
/// let engine = CpuEngine::new();
/// let mut acc = engine.accumulator(5, Modulus::new(4)?)?; // 5 elements mod 2^4
///
/// // [1, 2, 3] packed at 4 bits: element i in bits 4i..4i+4, low bits first.
/// let chunk = [0x21, 0x03];
/// assert_eq!(chunk.len(), packed_len(3, 4));
/// engine.add_packed(&mut acc, 2, &chunk, 3)?; // into elements 2..5
/// engine.add_packed(&mut acc, 2, &chunk, 3)?;
/// engine.add_words(&mut acc, 0, &[15, 15])?;
/// engine.add_words(&mut acc, 0, &[1])?; // 16 mod 2^4 = 0
///
/// let mut out = [0u32; 5];
/// engine.read_out(&acc, &mut out)?;
/// assert_eq!(out, [0, 15, 2, 4, 6]);
/// # Ok(())
/// # }
/// ```
///
/// [`Engine`](crate::Engine) implements it for whichever engine was chosen, with
/// [`EngineAccumulator`](crate::EngineAccumulator) as its accumulator.
pub trait Accumulate: Backend {
    /// The engine's accumulator: `len` elements mod 2^b, zero when made.
    type Accumulator: Send + Sync;

    /// A zeroed accumulator of `len` elements mod `modulus`.
    fn accumulator(&self, len: usize, modulus: Modulus) -> Result<Self::Accumulator, EngineError>;

    /// `acc[offset + i] = (acc[offset + i] + x_i) mod 2^b` for the `count` elements `x_i`
    /// packed at b bits in `packed` (see [`crate::packed`] for the format).
    fn add_packed(
        &self,
        acc: &mut Self::Accumulator,
        offset: usize,
        packed: &[u8],
        count: usize,
    ) -> Result<(), EngineError>;

    /// [`add_packed`](Accumulate::add_packed) for each of `runs` in order, as `(offset,
    /// packed, count)`: an upload as it arrived, chunk by chunk. An engine may batch
    /// consecutive runs (the GPU engine stages several into one buffer and one dispatch
    /// instead of one per 65,536-element wire chunk); the result is the same. On an error
    /// some runs may already be added.
    fn add_packed_runs(
        &self,
        acc: &mut Self::Accumulator,
        runs: &[(usize, &[u8], usize)],
    ) -> Result<(), EngineError> {
        runs.iter()
            .try_for_each(|&(offset, packed, count)| self.add_packed(acc, offset, packed, count))
    }

    /// `acc[offset + i] = (acc[offset + i] + lanes[i]) mod 2^b`: an input already unpacked, in
    /// the modulus's lanes (`u32` for b ≤ 32, `u64` above; see
    /// [`Modulus::lane_kind`](crate::Modulus::lane_kind)). Higher bits are dropped by the
    /// reduction.
    ///
    /// ```
    /// use secagg_engine::{Accumulate, CpuEngine, Modulus};
    /// # fn main() -> Result<(), secagg_engine::EngineError> {
    /// let engine = CpuEngine::new();
    /// let mut acc = engine.accumulator(2, Modulus::new(40)?)?;
    /// engine.add_lanes(&mut acc, 0, &[(1u64 << 40) - 1, 7])?;
    /// engine.add_lanes(&mut acc, 0, &[2u64, 1 << 35])?;
    /// assert_eq!(engine.read_out_owned_lanes::<u64>(acc)?, [1, 7 + (1 << 35)]);
    /// # Ok(())
    /// # }
    /// ```
    fn add_lanes<L: Lane>(
        &self,
        acc: &mut Self::Accumulator,
        offset: usize,
        lanes: &[L],
    ) -> Result<(), EngineError>;

    /// [`add_lanes`](Accumulate::add_lanes) with `u32` lanes (moduli up to 2^32).
    fn add_words(
        &self,
        acc: &mut Self::Accumulator,
        offset: usize,
        words: &[u32],
    ) -> Result<(), EngineError> {
        self.add_lanes(acc, offset, words)
    }

    /// The fused mask pass of [`Backend::apply_masks`] over `acc[start..start + len]`, in
    /// place: element `start + j` takes keystream word `offset + j` of every term.
    ///
    /// ```
    /// use secagg_engine::{Accumulate, Backend, CpuEngine, MaskTerm, Modulus, Prg, Seed};
    /// # fn main() -> Result<(), secagg_engine::EngineError> {
    /// let (engine, m) = (CpuEngine::new(), Modulus::new(16)?);
    /// let mut masked = vec![0u32; 8];
    /// engine.expand(&Seed::from_bytes([4; 32]), Prg::ChaCha20, 0, &mut masked, m)?;
    ///
    /// let mut acc = engine.accumulator(8, m)?;
    /// engine.add_words(&mut acc, 0, &masked)?;
    /// let unmask = [MaskTerm::minus(Seed::from_bytes([4; 32]))];
    /// engine.mask_range(&mut acc, 0, 8, 0, &unmask, Prg::ChaCha20)?;
    /// assert_eq!(engine.read_out_owned(acc)?, [0; 8]);
    /// # Ok(())
    /// # }
    /// ```
    #[allow(clippy::too_many_arguments)]
    fn mask_range(
        &self,
        acc: &mut Self::Accumulator,
        start: usize,
        len: usize,
        offset: u64,
        terms: &[MaskTerm],
        prg: Prg,
    ) -> Result<(), EngineError>;

    /// Copies the accumulator into `out` (which must have its length), in the modulus's lanes.
    fn read_out_lanes<L: Lane>(
        &self,
        acc: &Self::Accumulator,
        out: &mut [L],
    ) -> Result<(), EngineError>;

    /// [`read_out_lanes`](Accumulate::read_out_lanes) into `u32` lanes (moduli up to 2^32).
    fn read_out(&self, acc: &Self::Accumulator, out: &mut [u32]) -> Result<(), EngineError> {
        self.read_out_lanes(acc, out)
    }

    /// The accumulator's length in elements.
    fn accumulator_len(&self, acc: &Self::Accumulator) -> usize;

    /// The accumulator's elements, consuming it: the CPU engine hands its memory over
    /// without a copy (so a round's result never needs twice the accumulator's size in host
    /// memory); a GPU engine reads the device buffer out once.
    fn read_out_owned_lanes<L: Lane>(&self, acc: Self::Accumulator) -> Result<Vec<L>, EngineError> {
        let mut out = vec![L::default(); self.accumulator_len(&acc)];
        self.read_out_lanes(&acc, &mut out)?;
        Ok(out)
    }

    /// [`read_out_owned_lanes`](Accumulate::read_out_owned_lanes) in `u32` lanes (moduli up
    /// to 2^32).
    fn read_out_owned(&self, acc: Self::Accumulator) -> Result<Vec<u32>, EngineError> {
        self.read_out_owned_lanes(acc)
    }

    /// Waits until every operation queued so far has run (a GPU queues its work; the CPU
    /// engine has nothing to wait for). For timing; results never need it.
    fn settle(&self) -> Result<(), EngineError> {
        Ok(())
    }
}

/// The checks every `add_packed` makes before touching memory.
pub(crate) fn check_packed(
    capacity: usize,
    offset: usize,
    packed: &[u8],
    count: usize,
    modulus: Modulus,
) -> Result<(), EngineError> {
    check_span(capacity, offset, count)?;
    check_len(packed, count, modulus.bits()).map_err(|_| EngineError::PackedLength {
        bytes: packed.len(),
        count,
        bits: modulus.bits(),
    })
}

/// `start..start + len` lies inside `capacity` elements.
pub(crate) fn check_span(capacity: usize, start: usize, len: usize) -> Result<(), EngineError> {
    match start.checked_add(len) {
        Some(end) if end <= capacity => Ok(()),
        _ => Err(EngineError::OutOfRange {
            start,
            len,
            capacity,
        }),
    }
}

impl<A: Accumulate> Accumulate for &A {
    type Accumulator = A::Accumulator;

    fn accumulator(&self, len: usize, modulus: Modulus) -> Result<A::Accumulator, EngineError> {
        (**self).accumulator(len, modulus)
    }

    fn add_packed(
        &self,
        acc: &mut A::Accumulator,
        offset: usize,
        packed: &[u8],
        count: usize,
    ) -> Result<(), EngineError> {
        (**self).add_packed(acc, offset, packed, count)
    }

    fn add_lanes<L: Lane>(
        &self,
        acc: &mut A::Accumulator,
        offset: usize,
        lanes: &[L],
    ) -> Result<(), EngineError> {
        (**self).add_lanes(acc, offset, lanes)
    }

    fn mask_range(
        &self,
        acc: &mut A::Accumulator,
        start: usize,
        len: usize,
        offset: u64,
        terms: &[MaskTerm],
        prg: Prg,
    ) -> Result<(), EngineError> {
        (**self).mask_range(acc, start, len, offset, terms, prg)
    }

    fn read_out_lanes<L: Lane>(
        &self,
        acc: &A::Accumulator,
        out: &mut [L],
    ) -> Result<(), EngineError> {
        (**self).read_out_lanes(acc, out)
    }

    fn accumulator_len(&self, acc: &A::Accumulator) -> usize {
        (**self).accumulator_len(acc)
    }

    fn read_out_owned_lanes<L: Lane>(&self, acc: A::Accumulator) -> Result<Vec<L>, EngineError> {
        (**self).read_out_owned_lanes(acc)
    }

    fn add_packed_runs(
        &self,
        acc: &mut A::Accumulator,
        runs: &[(usize, &[u8], usize)],
    ) -> Result<(), EngineError> {
        (**self).add_packed_runs(acc, runs)
    }

    fn settle(&self) -> Result<(), EngineError> {
        (**self).settle()
    }
}
