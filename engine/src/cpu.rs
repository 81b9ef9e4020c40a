//! The CPU engine: rayon over L1-sized tiles, SIMD ChaCha from the `chacha20` crate.
//!
//! A tile of the accumulator (16 KiB) is loaded once; every mask term expands its keystream for
//! that tile 64 words at a time into a 256-byte scratch that never leaves L1, adds or subtracts
//! it, and moves on; the tile is reduced mod 2^b and written back once. Each tile seeks its
//! keystream by block counter, so tiles are independent and run on every core.

use std::sync::Arc;

use chacha20::variants::Legacy;
use chacha20::{ChaChaCore, R8, R12, R20};
use rand_core::block::Generator;
use rand_core::{Rng, SeedableRng};
use rayon::prelude::*;
use zeroize::Zeroize;

use crate::{
    Backend, BackendKind, EngineError, Lane, LaneKind, MaskTerm, Modulus, Prg, Seed, Sign,
    StreamPos, check_add, check_range,
};

/// Words the SIMD core produces per call: four ChaCha blocks.
const BATCH: usize = 64;
/// Accumulator words per tile: 16 KiB, so a tile and the scratch stay in L1 across all terms.
const TILE: usize = 4096;
/// Elements per rayon task for plain element-wise addition (memory bound; larger is fine).
const ADD_TILE: usize = 1 << 16;

/// Vector arithmetic mod 2^b and fused mask expansion on the CPU.
///
/// Uses every core of the global rayon pool by default; [`CpuEngine::with_threads`] gives it a
/// pool of its own (one thread for single-core baselines). Always available: it needs no
/// device and cannot fail to open.
///
/// ```
/// use secagg_engine::{Backend, BackendKind, CpuEngine, MaskTerm, Modulus, Prg, Seed};
/// # fn main() -> Result<(), secagg_engine::EngineError> {
/// let single = CpuEngine::with_threads(1)?;
/// assert_eq!((single.threads(), single.kind()), (1, BackendKind::Cpu));
///
/// let terms = || [MaskTerm::plus(Seed::from_bytes([2; 32]))];
/// let (mut a, mut b) = (vec![0u32; 100_000], vec![0u32; 100_000]);
/// single.apply_masks(&mut a, 0, &terms(), Prg::ChaCha20, Modulus::U32)?;
/// CpuEngine::new().apply_masks(&mut b, 0, &terms(), Prg::ChaCha20, Modulus::U32)?;
/// assert_eq!(a, b); // the thread count never changes a result
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct CpuEngine {
    pool: Option<Arc<rayon::ThreadPool>>,
}

impl std::fmt::Debug for CpuEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuEngine")
            .field("threads", &self.threads())
            .finish()
    }
}

impl CpuEngine {
    /// An engine on the global rayon pool (every core unless `RAYON_NUM_THREADS` says otherwise).
    pub fn new() -> Self {
        Self { pool: None }
    }

    /// An engine with a private pool of `threads` worker threads.
    pub fn with_threads(threads: usize) -> Result<Self, EngineError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("secagg-cpu-{i}"))
            .build()
            .map_err(|e| EngineError::ThreadPool(e.to_string()))?;
        Ok(Self {
            pool: Some(Arc::new(pool)),
        })
    }

    /// The number of worker threads this engine uses.
    pub fn threads(&self) -> usize {
        match &self.pool {
            Some(p) => p.current_num_threads(),
            None => rayon::current_num_threads(),
        }
    }

    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(p) => p.install(f),
            None => f(),
        }
    }
}

/// A ChaCha keystream positioned at a block, producing 64 words per call.
///
/// Stream 0 (every mask) runs the `chacha20` crate's SIMD core directly; other streams (only
/// reached by known-answer tests) go through its buffered RNG type.
enum Keystream {
    R20(ChaChaCore<R20, Legacy>),
    R12(ChaChaCore<R12, Legacy>),
    R8(ChaChaCore<R8, Legacy>),
    Other(Box<dyn Rng + Send>),
}

impl Keystream {
    fn new(seed: &Seed, prg: Prg, pos: StreamPos) -> Self {
        let mut key = *seed.expose_secret();
        let mut ks = if pos.stream == 0 {
            match prg {
                Prg::ChaCha20 => Keystream::R20(ChaChaCore::from_seed(key)),
                Prg::ChaCha12 => Keystream::R12(ChaChaCore::from_seed(key)),
                Prg::ChaCha8 => Keystream::R8(ChaChaCore::from_seed(key)),
            }
        } else {
            fn seeked<R: Rng + Send + SeedableRng<Seed = [u8; 32]> + 'static>(
                key: [u8; 32],
                f: impl FnOnce(&mut R),
            ) -> Keystream {
                let mut r = R::from_seed(key);
                f(&mut r);
                Keystream::Other(Box::new(r))
            }
            match prg {
                Prg::ChaCha20 => seeked(key, |r: &mut chacha20::ChaCha20Rng| {
                    r.set_stream(pos.stream);
                    r.set_block_pos(pos.block);
                }),
                Prg::ChaCha12 => seeked(key, |r: &mut chacha20::ChaCha12Rng| {
                    r.set_stream(pos.stream);
                    r.set_block_pos(pos.block);
                }),
                Prg::ChaCha8 => seeked(key, |r: &mut chacha20::ChaCha8Rng| {
                    r.set_stream(pos.stream);
                    r.set_block_pos(pos.block);
                }),
            }
        };
        match &mut ks {
            Keystream::R20(c) => c.set_block_pos(pos.block),
            Keystream::R12(c) => c.set_block_pos(pos.block),
            Keystream::R8(c) => c.set_block_pos(pos.block),
            Keystream::Other(_) => {}
        }
        key.zeroize();
        ks
    }

    #[inline]
    fn next_batch(&mut self, out: &mut [u32; BATCH]) {
        match self {
            Keystream::R20(c) => c.generate(out),
            Keystream::R12(c) => c.generate(out),
            Keystream::R8(c) => c.generate(out),
            Keystream::Other(r) => {
                let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut out[..]);
                r.fill_bytes(bytes);
                for w in out.iter_mut() {
                    *w = u32::from_le(*w);
                }
            }
        }
    }
}

/// What a tile does with each keystream batch.
#[derive(Clone, Copy)]
enum Op {
    Add,
    Sub,
    Store,
}

/// A keystream batch, aligned so that its words can be read as `u64` lanes in place.
#[repr(C, align(16))]
struct Batch([u32; BATCH]);

/// Lanes of `L` made of `words` (a whole number of elements): the words themselves for `u32`
/// lanes, pairs (low, high) assembled into `scratch` for `u64` lanes.
#[inline]
fn lanes_of<'a, L: Lane>(words: &'a [u32], scratch: &'a mut [L; BATCH]) -> &'a [L] {
    if L::WORDS == 1 {
        bytemuck::cast_slice(words)
    } else {
        let n = words.len() / L::WORDS;
        for (s, w) in scratch.iter_mut().zip(words.chunks_exact(L::WORDS)) {
            *s = L::from_words(w);
        }
        &scratch[..n]
    }
}

/// Runs the keystream of `seed` over `tile`: the tile's first element starts at word `skip`
/// of block `pos` (element i takes `L::WORDS` words, low first).
fn stream_into<L: Lane>(
    tile: &mut [L],
    pos: StreamPos,
    skip: usize,
    seed: &Seed,
    prg: Prg,
    op: Op,
) {
    let mut ks = Keystream::new(seed, prg, pos);
    let mut buf = Batch([0u32; BATCH]);
    let mut scratch = [L::default(); BATCH];
    let mut skip = skip;
    let mut rest = tile;
    while !rest.is_empty() {
        ks.next_batch(&mut buf.0);
        let avail = lanes_of(&buf.0[skip..], &mut scratch);
        let n = avail.len().min(rest.len());
        let (head, tail) = rest.split_at_mut(n);
        match op {
            Op::Add => head
                .iter_mut()
                .zip(avail)
                .for_each(|(a, k)| *a = a.wrapping_add(*k)),
            Op::Sub => head
                .iter_mut()
                .zip(avail)
                .for_each(|(a, k)| *a = a.wrapping_sub(*k)),
            Op::Store => head.copy_from_slice(&avail[..n]),
        }
        rest = tail;
        skip = 0;
    }
    buf.0.zeroize();
    bytemuck::cast_slice_mut::<L, u8>(&mut scratch).zeroize();
}

/// The block and the word within it where element `element` of a mask with `words` keystream
/// words per element starts (masks use stream 0).
fn mask_pos(element: u64, words: usize) -> (StreamPos, usize) {
    let word = u128::from(element) * words as u128;
    let pos = StreamPos {
        block: (word / 16) as u64,
        stream: 0,
    };
    (pos, (word % 16) as usize)
}

fn reduce<L: Lane>(tile: &mut [L], mask: u64) {
    if mask != L::from_u64(u64::MAX).to_u64() {
        tile.iter_mut()
            .for_each(|a| *a = L::from_u64(a.to_u64() & mask));
    }
}

/// Splits `v` (whose first element is element `offset` of the mask) into a head that ends on
/// a 64-word boundary of the keystream, followed by the rest, so that every tile after the
/// head starts on a four-block batch boundary and wastes no keystream.
fn aligned_split<L: Lane>(v: &mut [L], offset: u64) -> (&mut [L], &mut [L]) {
    let per_batch = (BATCH / L::WORDS) as u64;
    let head = ((per_batch - offset % per_batch) % per_batch) as usize;
    let head = head.min(v.len());
    v.split_at_mut(head)
}

impl CpuEngine {
    /// Calls `f(tile, first_element)` for every tile of `v`, in parallel (a tile is
    /// [`TILE`] words, whatever the lane).
    fn for_tiles<L: Lane>(
        &self,
        v: &mut [L],
        offset: u64,
        f: impl Fn(&mut [L], u64) + Sync + Send,
    ) {
        let tile_len = TILE / L::WORDS;
        self.run(|| {
            let (head, rest) = aligned_split(v, offset);
            let head_len = head.len() as u64;
            if !head.is_empty() {
                f(head, offset);
            }
            rest.par_chunks_mut(tile_len)
                .enumerate()
                .for_each(|(i, tile)| f(tile, offset + head_len + (i * tile_len) as u64));
        })
    }

    /// The fused mask pass over lanes of `L` (whose kind `modulus` has checked).
    fn mask_lanes<L: Lane>(
        &self,
        acc: &mut [L],
        offset: u64,
        terms: &[MaskTerm],
        prg: Prg,
        mask: u64,
    ) {
        self.for_tiles(acc, offset, |tile, start| {
            let (pos, skip) = mask_pos(start, L::WORDS);
            for term in terms {
                let op = match term.sign {
                    Sign::Plus => Op::Add,
                    Sign::Minus => Op::Sub,
                };
                stream_into(tile, pos, skip, &term.seed, prg, op);
            }
            reduce(tile, mask);
        });
    }

    /// One mask, written over `out`.
    fn expand_lanes<L: Lane>(&self, seed: &Seed, prg: Prg, offset: u64, out: &mut [L], mask: u64) {
        self.for_tiles(out, offset, |tile, start| {
            let (pos, skip) = mask_pos(start, L::WORDS);
            stream_into(tile, pos, skip, seed, prg, Op::Store);
            reduce(tile, mask);
        });
    }

    /// `acc = (acc + input) mod 2^b` over lanes of `L`.
    fn add_lanes<L: Lane>(&self, acc: &mut [L], input: &[L], mask: u64) {
        self.run(|| {
            acc.par_chunks_mut(ADD_TILE)
                .zip(input.par_chunks(ADD_TILE))
                .for_each(|(a, b)| {
                    a.iter_mut()
                        .zip(b)
                        .for_each(|(a, b)| *a = L::from_u64(a.wrapping_add(*b).to_u64() & mask))
                })
        });
    }
}

impl Backend for CpuEngine {
    fn kind(&self) -> BackendKind {
        BackendKind::Cpu
    }

    fn describe(&self) -> String {
        format!("cpu ({} threads, chacha20 crate SIMD core)", self.threads())
    }

    fn add<L: Lane>(
        &self,
        acc: &mut [L],
        input: &[L],
        modulus: Modulus,
    ) -> Result<(), EngineError> {
        check_add(acc, input, modulus)?;
        self.add_lanes(acc, input, modulus.mask_u64());
        Ok(())
    }

    fn apply_masks<L: Lane>(
        &self,
        acc: &mut [L],
        offset: u64,
        terms: &[MaskTerm],
        prg: Prg,
        modulus: Modulus,
    ) -> Result<(), EngineError> {
        modulus.check_lane::<L>()?;
        check_range(offset, acc.len())?;
        self.mask_lanes(acc, offset, terms, prg, modulus.mask_u64());
        Ok(())
    }

    fn expand<L: Lane>(
        &self,
        seed: &Seed,
        prg: Prg,
        offset: u64,
        out: &mut [L],
        modulus: Modulus,
    ) -> Result<(), EngineError> {
        modulus.check_lane::<L>()?;
        check_range(offset, out.len())?;
        self.expand_lanes(seed, prg, offset, out, modulus.mask_u64());
        Ok(())
    }

    fn keystream_blocks(
        &self,
        seed: &Seed,
        prg: Prg,
        pos: StreamPos,
        out: &mut [u32],
    ) -> Result<(), EngineError> {
        if out.len() % 16 != 0 {
            return Err(EngineError::PartialBlock { len: out.len() });
        }
        // Block counters wrap mod 2^64, as in ChaCha's 64-bit-counter layout; tiles are
        // independent so each seeks on its own.
        self.run(|| {
            out.par_chunks_mut(TILE).enumerate().for_each(|(i, tile)| {
                let start = StreamPos {
                    block: pos.block.wrapping_add((i * TILE / 16) as u64),
                    stream: pos.stream,
                };
                stream_into(tile, start, 0, seed, prg, Op::Store);
            })
        });
        Ok(())
    }
}

/// Elements per rayon task of `add_packed`: a multiple of 8, so that every task's first
/// element starts on a byte of the packed run.
const PACKED_TILE: usize = 1 << 14;
/// Up to this many elements at b = 32 `add_packed` runs on the calling thread (a wire chunk
/// holds at most 65,536: splitting that over the pool cost more than it saved, measured by
/// `secagg bench`: 8.3 against 13.7 GB/s at 100 x 1e8).
const PACKED_SERIAL: usize = 1 << 17;

/// The CPU engine's accumulator: plain memory, made by
/// [`Accumulate::accumulator`](crate::Accumulate::accumulator) on a [`CpuEngine`].
#[derive(Clone, Debug)]
pub struct CpuAccumulator {
    data: Lanes,
    modulus: Modulus,
}

/// The accumulator's memory, in its modulus's lanes.
#[derive(Clone, Debug)]
enum Lanes {
    U32(Vec<u32>),
    U64(Vec<u64>),
}

impl CpuAccumulator {
    /// The elements, mod 2^b, read in place (no copy, unlike
    /// [`Accumulate::read_out`](crate::Accumulate::read_out)), in the modulus's lanes.
    ///
    /// ```
    /// use secagg_engine::{Accumulate, CpuEngine, Modulus};
    /// # fn main() -> Result<(), secagg_engine::EngineError> {
    /// let engine = CpuEngine::new();
    /// let mut acc = engine.accumulator(3, Modulus::new(8)?)?;
    /// engine.add_words(&mut acc, 1, &[255, 2])?;
    /// engine.add_words(&mut acc, 1, &[1, 2])?;
    /// assert_eq!(acc.as_slice::<u32>()?, [0, 0, 4]);
    /// assert!(acc.as_slice::<u64>().is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn as_slice<L: Lane>(&self) -> Result<&[L], EngineError> {
        self.modulus.check_lane::<L>()?;
        Ok(match &self.data {
            Lanes::U32(v) => bytemuck::cast_slice(v),
            Lanes::U64(v) => bytemuck::cast_slice(v),
        })
    }

    fn as_mut_slice<L: Lane>(&mut self) -> Result<&mut [L], EngineError> {
        self.modulus.check_lane::<L>()?;
        Ok(match &mut self.data {
            Lanes::U32(v) => bytemuck::cast_slice_mut(v),
            Lanes::U64(v) => bytemuck::cast_slice_mut(v),
        })
    }

    /// Its length in elements.
    pub fn len(&self) -> usize {
        match &self.data {
            Lanes::U32(v) => v.len(),
            Lanes::U64(v) => v.len(),
        }
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A zeroed vector with every page touched, on every core.
fn touched<L: Lane>(engine: &CpuEngine, len: usize) -> Vec<L> {
    let mut data = vec![L::default(); len];
    // Fresh zeroed memory is mapped lazily: the first write to each page faults. Touch
    // every page now, on every core, so that the faults are paid while the server
    // waits for its first upload and not inside the first add (measured by `secagg
    // bench` at 10^9 elements: 4 uploads ingested in 4.40 s before, most of it the
    // first one's page faults).
    engine.run(|| {
        data.par_chunks_mut(PACKED_TILE)
            .for_each(|tile| tile.fill(L::default()))
    });
    data
}

impl CpuEngine {
    /// `add_packed` on lanes of `L`, whose lengths the caller has checked.
    fn add_packed_lanes<L: Lane>(&self, target: &mut [L], packed: &[u8], modulus: Modulus) {
        let bits = modulus.bits();
        let mask = modulus.mask_u64();
        let count = target.len();
        if count <= PACKED_SERIAL && (bits == 32 || count <= PACKED_TILE) {
            // A wire chunk of whole words is too little work to be worth waking the pool
            // (narrower widths spend more time unpacking, and do gain from it).
            crate::packed::add_unpacked(target, packed, 0, bits, mask);
            return;
        }
        self.run(|| {
            target
                .par_chunks_mut(PACKED_TILE)
                .enumerate()
                .for_each(|(i, tile)| {
                    let bit0 = i * PACKED_TILE * bits as usize;
                    crate::packed::add_unpacked(tile, packed, bit0, bits, mask);
                });
        });
    }
}

impl crate::Accumulate for CpuEngine {
    type Accumulator = CpuAccumulator;

    fn accumulator(&self, len: usize, modulus: Modulus) -> Result<CpuAccumulator, EngineError> {
        let data = match modulus.lane_kind() {
            LaneKind::U32 => Lanes::U32(touched(self, len)),
            LaneKind::U64 => Lanes::U64(touched(self, len)),
        };
        Ok(CpuAccumulator { data, modulus })
    }

    fn add_packed(
        &self,
        acc: &mut CpuAccumulator,
        offset: usize,
        packed: &[u8],
        count: usize,
    ) -> Result<(), EngineError> {
        crate::accumulator::check_packed(acc.len(), offset, packed, count, acc.modulus)?;
        let modulus = acc.modulus;
        let span = offset..offset + count;
        match &mut acc.data {
            Lanes::U32(v) => self.add_packed_lanes(&mut v[span], packed, modulus),
            Lanes::U64(v) => self.add_packed_lanes(&mut v[span], packed, modulus),
        }
        Ok(())
    }

    fn add_lanes<L: Lane>(
        &self,
        acc: &mut CpuAccumulator,
        offset: usize,
        lanes: &[L],
    ) -> Result<(), EngineError> {
        crate::accumulator::check_span(acc.len(), offset, lanes.len())?;
        let modulus = acc.modulus;
        let data = acc.as_mut_slice::<L>()?;
        self.add(&mut data[offset..offset + lanes.len()], lanes, modulus)
    }

    fn mask_range(
        &self,
        acc: &mut CpuAccumulator,
        start: usize,
        len: usize,
        offset: u64,
        terms: &[MaskTerm],
        prg: Prg,
    ) -> Result<(), EngineError> {
        crate::accumulator::check_span(acc.len(), start, len)?;
        let modulus = acc.modulus;
        let span = start..start + len;
        match &mut acc.data {
            Lanes::U32(v) => self.apply_masks(&mut v[span], offset, terms, prg, modulus),
            Lanes::U64(v) => self.apply_masks(&mut v[span], offset, terms, prg, modulus),
        }
    }

    fn read_out_owned_lanes<L: Lane>(&self, acc: CpuAccumulator) -> Result<Vec<L>, EngineError> {
        acc.modulus.check_lane::<L>()?;
        // The lane kind matches, so the vector is already a `Vec<L>`: hand it over uncopied.
        let data: Box<dyn std::any::Any> = match acc.data {
            Lanes::U32(v) => Box::new(v),
            Lanes::U64(v) => Box::new(v),
        };
        data.downcast::<Vec<L>>()
            .map(|v| *v)
            .map_err(|_| EngineError::UnsupportedLane {
                engine: "cpu",
                lane: L::KIND,
            })
    }

    fn read_out_lanes<L: Lane>(
        &self,
        acc: &CpuAccumulator,
        out: &mut [L],
    ) -> Result<(), EngineError> {
        let data = acc.as_slice::<L>()?;
        if out.len() != data.len() {
            return Err(EngineError::LengthMismatch {
                acc: data.len(),
                input: out.len(),
            });
        }
        out.copy_from_slice(data);
        Ok(())
    }

    fn accumulator_len(&self, acc: &CpuAccumulator) -> usize {
        acc.len()
    }
}
