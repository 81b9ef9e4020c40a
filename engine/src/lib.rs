//! # secagg-engine
//!
//! The arithmetic a secure-aggregation server spends its time on, with nothing of the protocol:
//! vectors of integers mod 2^b, and masks expanded from ChaCha keystreams.
//!
//! * [`Backend::add`] adds a vector into an accumulator mod 2^b.
//! * [`Backend::apply_masks`] applies a list of signed masks (seed, ±) to an accumulator slice
//!   that starts at element offset `o`, in one fused pass: every keystream is generated next to
//!   the accumulator tile it lands in and never stored; the accumulator is read and written once.
//! * [`Backend::expand`] writes one mask (for clients and tests).
//!
//! ## The mask specification
//!
//! PRG(seed), for a 32-byte seed, is the ChaCha keystream with the seed as key, a 64-bit block
//! counter starting at 0 and stream id 0 — exactly `rand_chacha::ChaCha20Rng::from_seed(seed)`
//! read with `next_u32` (or `ChaCha12Rng` / `ChaCha8Rng` for the reduced-round variants).
//! Element i of the mask is keystream word i reduced mod 2^b. Because the keystream is seekable
//! by block counter, any slice of a vector can be masked on its own.
//!
//! Two implementations follow one contract and are tested against each other bit for bit:
//! [`CpuEngine`] (rayon + SIMD ChaCha) and [`GpuEngine`] (WGSL compute shaders through wgpu).
//! [`Engine`] picks one at run time.

#![deny(missing_docs)]

pub mod accumulator;
mod cpu;
mod error;
pub mod gpu;
mod select;
pub mod testing;
mod types;

pub use accumulator::{Accumulate, packed_len};
pub use cpu::{CpuAccumulator, CpuEngine};
pub use error::EngineError;
pub use gpu::{GpuAccumulator, GpuEngine, GpuOptions};
pub use select::{BackendChoice, Engine, EngineAccumulator};
pub use types::{Lane, LaneKind, MaskTerm, Modulus, Prg, Seed, Sign, StreamPos};

/// Which kind of hardware an engine runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// The CPU engine.
    Cpu,
    /// The GPU engine (which may be a software Vulkan driver such as lavapipe).
    Gpu,
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Gpu => "gpu",
        })
    }
}

/// The engine contract. Every implementation gives bit-identical results.
///
/// All lengths and offsets are in elements. Offsets are keystream word positions: element `j`
/// of a slice at offset `o` takes mask word `o + j`.
pub trait Backend: Send + Sync {
    /// CPU or GPU.
    fn kind(&self) -> BackendKind;

    /// A one-line description for logs: device name, driver, threads.
    fn describe(&self) -> String;

    /// `acc[i] = (acc[i] + input[i]) mod 2^b`.
    fn add<L: Lane>(&self, acc: &mut [L], input: &[L], modulus: Modulus)
    -> Result<(), EngineError>;

    /// `acc[j] = (acc[j] + Σ ±PRG(seed)[offset + j]) mod 2^b` over every term, in one pass.
    ///
    /// With no terms this reduces `acc` mod 2^b.
    fn apply_masks<L: Lane>(
        &self,
        acc: &mut [L],
        offset: u64,
        terms: &[MaskTerm],
        prg: Prg,
        modulus: Modulus,
    ) -> Result<(), EngineError>;

    /// `out[j] = PRG(seed)[offset + j] mod 2^b`.
    fn expand<L: Lane>(
        &self,
        seed: &Seed,
        prg: Prg,
        offset: u64,
        out: &mut [L],
        modulus: Modulus,
    ) -> Result<(), EngineError>;

    /// Raw keystream blocks at any block counter and stream id, unreduced: `out.len()` must be
    /// a multiple of 16. Exists for known-answer tests of the block function (RFC 8439).
    fn keystream_blocks(
        &self,
        seed: &Seed,
        prg: Prg,
        pos: StreamPos,
        out: &mut [u32],
    ) -> Result<(), EngineError>;
}

/// Fails unless `offset + len` stays inside the 2^64-element keystream space.
pub(crate) fn check_range(offset: u64, len: usize) -> Result<(), EngineError> {
    match offset.checked_add(len as u64) {
        Some(_) => Ok(()),
        None => Err(EngineError::OffsetOverflow { offset, len }),
    }
}

/// The checks every `add` makes before touching memory.
pub(crate) fn check_add<L: Lane>(
    acc: &[L],
    input: &[L],
    modulus: Modulus,
) -> Result<(), EngineError> {
    modulus.check_lane::<L>()?;
    if acc.len() != input.len() {
        return Err(EngineError::LengthMismatch {
            acc: acc.len(),
            input: input.len(),
        });
    }
    Ok(())
}

/// The lanes of a `u32`-lane slice as words; other lane kinds have no kernels yet.
pub(crate) fn words_mut<L: Lane>(s: &mut [L]) -> Result<&mut [u32], EngineError> {
    match L::KIND {
        LaneKind::U32 => Ok(bytemuck::cast_slice_mut(s)),
    }
}

/// Read-only twin of [`words_mut`].
pub(crate) fn words<L: Lane>(s: &[L]) -> Result<&[u32], EngineError> {
    match L::KIND {
        LaneKind::U32 => Ok(bytemuck::cast_slice(s)),
    }
}

impl<B: Backend> Backend for &B {
    fn kind(&self) -> BackendKind {
        (**self).kind()
    }

    fn describe(&self) -> String {
        (**self).describe()
    }

    fn add<L: Lane>(
        &self,
        acc: &mut [L],
        input: &[L],
        modulus: Modulus,
    ) -> Result<(), EngineError> {
        (**self).add(acc, input, modulus)
    }

    fn apply_masks<L: Lane>(
        &self,
        acc: &mut [L],
        offset: u64,
        terms: &[MaskTerm],
        prg: Prg,
        modulus: Modulus,
    ) -> Result<(), EngineError> {
        (**self).apply_masks(acc, offset, terms, prg, modulus)
    }

    fn expand<L: Lane>(
        &self,
        seed: &Seed,
        prg: Prg,
        offset: u64,
        out: &mut [L],
        modulus: Modulus,
    ) -> Result<(), EngineError> {
        (**self).expand(seed, prg, offset, out, modulus)
    }

    fn keystream_blocks(
        &self,
        seed: &Seed,
        prg: Prg,
        pos: StreamPos,
        out: &mut [u32],
    ) -> Result<(), EngineError> {
        (**self).keystream_blocks(seed, prg, pos, out)
    }
}
