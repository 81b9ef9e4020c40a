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
//! * [`Accumulate`] keeps a server's running sum where the engine computes (device memory on
//!   a GPU) and adds inputs in their packed wire format.
//! * [`packed`] owns that format (packing, unpacking, lengths, padding), for the wire codec
//!   and both engines.
//!
//! ## Example
//!
//! Two clients that agreed on a seed mask their inputs with opposite terms: each masked
//! vector alone looks random, and the masks cancel in the sum the server computes.
//!
//! ```
//! use secagg_engine::{Backend, CpuEngine, MaskTerm, Modulus, Prg, Seed};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = CpuEngine::new();
//! let m = Modulus::new(20)?; // arithmetic mod 2^20
//! let s = [7u8; 32]; // the seed clients u and v agreed on
//!
//! let (mut y_u, mut y_v) = (vec![1u32, 2, 3, 4], vec![10u32, 20, 30, 40]);
//! let plus = [MaskTerm::plus(Seed::from_bytes(s))];
//! let minus = [MaskTerm::minus(Seed::from_bytes(s))];
//! engine.apply_masks(&mut y_u, 0, &plus, Prg::ChaCha20, m)?;
//! engine.apply_masks(&mut y_v, 0, &minus, Prg::ChaCha20, m)?;
//! assert_ne!(y_u, [1, 2, 3, 4]);
//!
//! let mut sum = vec![0u32; 4];
//! engine.add(&mut sum, &y_u, m)?;
//! engine.add(&mut sum, &y_v, m)?;
//! assert_eq!(sum, [11, 22, 33, 44]);
//!
//! // The mask is the ChaCha20 keystream of the seed, word by word, reduced mod 2^b.
//! use rand_chacha::rand_core::{Rng, SeedableRng};
//! let mut rng = rand_chacha::ChaCha20Rng::from_seed(s);
//! assert_eq!(y_u[0], rng.next_u32().wrapping_add(1) & m.mask_u32()); // y_u[0] = 1 + mask[0]
//! # Ok(())
//! # }
//! ```
//!
//! The same on whichever engine the machine offers: [`BackendChoice::Auto`] opens a GPU
//! adapter when there is one and falls back to the CPU engine (logging why) when there is
//! none. [`Engine::auto`] does the same, unless `SECAGG_BACKEND` asks otherwise.
//!
//! ```
//! use secagg_engine::{Backend, BackendChoice, Engine, MaskTerm, Modulus, Prg, Seed};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::choose(BackendChoice::Auto)?;
//! println!("running on {}", engine.describe());
//!
//! let s = Seed::from_bytes([7; 32]);
//! let terms = [MaskTerm::plus(s.duplicate()), MaskTerm::minus(s)];
//! let mut acc: Vec<u32> = (0..10_000).collect();
//! engine.apply_masks(&mut acc, 0, &terms, Prg::ChaCha20, Modulus::new(20)?)?;
//! assert!(acc.iter().copied().eq(0..10_000));
//! # Ok(())
//! # }
//! ```
//!
//! ## The mask specification
//!
//! PRG(seed), for a 32-byte seed, is the ChaCha keystream with the seed as key, a 64-bit block
//! counter starting at 0 and stream id 0 — exactly `rand_chacha::ChaCha20Rng::from_seed(seed)`
//! read with `next_u32` (or `ChaCha12Rng` / `ChaCha8Rng` for the reduced-round variants).
//! For b ≤ 32, element i of the mask is keystream word i reduced mod 2^b (one `u32` lane per
//! element). For b in 33..=64, element i is keystream words 2i (low) and 2i + 1 (high), that
//! is `next_u64` of the same generator, reduced mod 2^b (one `u64` lane per element). Because
//! the keystream is seekable by block counter, any slice of a vector can be masked on its own.
//!
//! ```
//! use rand_chacha::rand_core::{Rng, SeedableRng};
//! use secagg_engine::{Backend, CpuEngine, Modulus, Prg, Seed};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut mask = [0u64; 4];
//! CpuEngine::new().expand(&Seed::from_bytes([7; 32]), Prg::ChaCha20, 0, &mut mask, Modulus::new(48)?)?;
//! let mut rng = rand_chacha::ChaCha20Rng::from_seed([7; 32]);
//! assert!(mask.iter().all(|&x| x == rng.next_u64() & ((1 << 48) - 1)));
//! # Ok(())
//! # }
//! ```
//!
//! Each modulus has one lane type ([`Modulus::lane_kind`]): `u32` for b ≤ 32, `u64` above, so
//! rounds at b ≤ 32 run exactly as before. The GPU kernels, which have no 64-bit integers, hold
//! a `u64` lane as two `u32` words and carry between them.
//!
//! Two implementations follow one contract and are tested against each other bit for bit:
//! [`CpuEngine`] (rayon + SIMD ChaCha) and [`GpuEngine`] (WGSL compute shaders through wgpu).
//! [`Engine`] picks one at run time.
//!
//! ## Features
//!
//! | feature | adds | default |
//! |---------|------|---------|
//! | `gpu` | [`GpuEngine`] (WGSL kernels through wgpu). Without it the crate is CPU-only: [`BackendChoice::Auto`] takes the CPU engine and [`BackendChoice::Gpu`] fails with [`EngineError::GpuNotBuilt`] | yes |
//! | `testing` | `testing`: printed test seeds, and GPU engines that skip or fail by policy (`SECAGG_REQUIRE_GPU`), for test suites | no |

#![deny(missing_docs)]

pub mod accumulator;
mod cpu;
mod error;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod packed;
mod select;
pub mod sharded;
#[cfg(feature = "testing")]
pub mod testing;
mod types;

pub use accumulator::Accumulate;
pub use cpu::{CpuAccumulator, CpuEngine};
pub use error::EngineError;
#[cfg(feature = "gpu")]
pub use gpu::{GpuAccumulator, GpuEngine, GpuOptions};
pub use packed::packed_len;
pub use select::{BackendChoice, BackendSpec, Device, Engine, EngineAccumulator};
pub use sharded::{SHARD_ALIGN, Sharded, ShardedAccumulator};
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
///
/// Code written against the trait runs on [`CpuEngine`], [`GpuEngine`] and [`Engine`] alike
/// (and on a reference to any of them):
///
/// ```
/// use secagg_engine::{Backend, CpuEngine, EngineError, Modulus};
///
/// /// Sums equal-length inputs mod 2^b on any engine.
/// fn sum<B: Backend>(engine: B, xs: &[&[u32]], m: Modulus) -> Result<Vec<u32>, EngineError> {
///     let mut acc = vec![0; xs[0].len()];
///     for x in xs {
///         engine.add(&mut acc, x, m)?;
///     }
///     Ok(acc)
/// }
///
/// # fn main() -> Result<(), EngineError> {
/// let engine = CpuEngine::new();
/// let total = sum(&engine, &[&[250, 3], &[10, 4]], Modulus::new(8)?)?;
/// assert_eq!(total, [4, 7]); // 260 mod 2^8 = 4
/// # Ok(())
/// # }
/// ```
pub trait Backend: Send + Sync {
    /// CPU or GPU.
    fn kind(&self) -> BackendKind;

    /// A one-line description for logs: device name, driver, threads.
    fn describe(&self) -> String;

    /// `acc[i] = (acc[i] + input[i]) mod 2^b`.
    ///
    /// Fails with [`EngineError::LengthMismatch`] when the lengths differ and with
    /// [`EngineError::ModulusTooWide`] when `L` cannot carry the modulus.
    ///
    /// ```
    /// use secagg_engine::{Backend, CpuEngine, EngineError, Modulus};
    /// # fn main() -> Result<(), EngineError> {
    /// let engine = CpuEngine::new();
    /// let m = Modulus::new(8)?;
    /// let mut acc = vec![200u32, 1];
    /// engine.add(&mut acc, &[100, 2], m)?;
    /// assert_eq!(acc, [44, 3]); // 300 mod 256 = 44
    ///
    /// let err = engine.add(&mut acc, &[1], m).unwrap_err();
    /// assert!(matches!(err, EngineError::LengthMismatch { acc: 2, input: 1 }));
    /// # Ok(())
    /// # }
    /// ```
    fn add<L: Lane>(&self, acc: &mut [L], input: &[L], modulus: Modulus)
    -> Result<(), EngineError>;

    /// `acc[j] = (acc[j] + Σ ±PRG(seed)[offset + j]) mod 2^b` over every term, in one pass.
    ///
    /// With no terms this reduces `acc` mod 2^b.
    ///
    /// Because the offset seeks the keystream, a slice of a long vector can be masked on its
    /// own (in chunks, or on several machines) and matches the same slice of the whole:
    ///
    /// ```
    /// use secagg_engine::{Backend, CpuEngine, MaskTerm, Modulus, Prg, Seed};
    /// # fn main() -> Result<(), secagg_engine::EngineError> {
    /// let engine = CpuEngine::new();
    /// let m = Modulus::new(16)?;
    /// let term = || [MaskTerm::plus(Seed::from_bytes([3; 32]))];
    ///
    /// let mut whole = vec![0u32; 256];
    /// engine.apply_masks(&mut whole, 0, &term(), Prg::ChaCha20, m)?;
    /// let mut part = vec![0u32; 64]; // elements 100..164, keystream words 100..164
    /// engine.apply_masks(&mut part, 100, &term(), Prg::ChaCha20, m)?;
    /// assert_eq!(part, whole[100..164]);
    ///
    /// let mut acc = vec![70_000u32];
    /// engine.apply_masks(&mut acc, 0, &[], Prg::ChaCha20, m)?; // no terms: reduce only
    /// assert_eq!(acc, [70_000 - 65_536]);
    /// # Ok(())
    /// # }
    /// ```
    fn apply_masks<L: Lane>(
        &self,
        acc: &mut [L],
        offset: u64,
        terms: &[MaskTerm],
        prg: Prg,
        modulus: Modulus,
    ) -> Result<(), EngineError>;

    /// `out[j] = PRG(seed)[offset + j] mod 2^b`.
    ///
    /// The same as [`apply_masks`](Backend::apply_masks) with one `+` term on zeros:
    ///
    /// ```
    /// use secagg_engine::{Backend, CpuEngine, MaskTerm, Modulus, Prg, Seed};
    /// # fn main() -> Result<(), secagg_engine::EngineError> {
    /// let engine = CpuEngine::new();
    /// let (seed, m) = (Seed::from_bytes([5; 32]), Modulus::new(12)?);
    /// let mut mask = vec![0u32; 100];
    /// engine.expand(&seed, Prg::ChaCha12, 7, &mut mask, m)?;
    /// assert!(mask.iter().all(|&w| w < 1 << 12));
    ///
    /// let mut acc = vec![0u32; 100];
    /// engine.apply_masks(&mut acc, 7, &[MaskTerm::plus(seed)], Prg::ChaCha12, m)?;
    /// assert_eq!(acc, mask);
    /// # Ok(())
    /// # }
    /// ```
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
    ///
    /// In stream 0, block `i` is mask words `16 i .. 16 i + 16` at modulus 2^32:
    ///
    /// ```
    /// use secagg_engine::{Backend, CpuEngine, EngineError, Modulus, Prg, Seed, StreamPos};
    /// # fn main() -> Result<(), EngineError> {
    /// let (engine, seed) = (CpuEngine::new(), Seed::from_bytes([1; 32]));
    /// let mut block = [0u32; 16];
    /// let pos = StreamPos { block: 2, stream: 0 };
    /// engine.keystream_blocks(&seed, Prg::ChaCha20, pos, &mut block)?;
    /// let mut mask = [0u32; 16];
    /// engine.expand(&seed, Prg::ChaCha20, 32, &mut mask, Modulus::U32)?;
    /// assert_eq!(block, mask);
    ///
    /// let err = engine.keystream_blocks(&seed, Prg::ChaCha20, pos, &mut [0; 15]);
    /// assert!(matches!(err, Err(EngineError::PartialBlock { len: 15 })));
    /// # Ok(())
    /// # }
    /// ```
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

/// A lane slice as the 32-bit words the GPU kernels read: one per `u32` lane, two per `u64`
/// lane (low word first, which is the memory order of a `u64` only on little-endian hosts).
#[cfg(feature = "gpu")]
pub(crate) fn words_mut<L: Lane>(s: &mut [L]) -> Result<&mut [u32], EngineError> {
    match L::KIND {
        LaneKind::U64 if cfg!(target_endian = "big") => Err(EngineError::UnsupportedLane {
            engine: "gpu",
            lane: L::KIND,
        }),
        _ => Ok(bytemuck::cast_slice_mut(s)),
    }
}

/// Read-only twin of [`words_mut`].
#[cfg(feature = "gpu")]
pub(crate) fn words<L: Lane>(s: &[L]) -> Result<&[u32], EngineError> {
    match L::KIND {
        LaneKind::U64 if cfg!(target_endian = "big") => Err(EngineError::UnsupportedLane {
            engine: "gpu",
            lane: L::KIND,
        }),
        _ => Ok(bytemuck::cast_slice(s)),
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
