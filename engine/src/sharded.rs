//! Several engines as one: the accumulator split by coordinate range.
//!
//! A server with two GPUs (or a GPU and spare cores) gives each engine a contiguous range of
//! the vector. Every upload is cut by range and each engine adds its own piece; the unmask
//! pass gives each engine the same mask terms with its range's keystream offset (the
//! keystream is seekable, so element `i` takes word `i` wherever it lives). Shards share no
//! data: each holds only its range, and in every call they run at once (one rayon task per
//! shard with work in the call), none waiting on another's result. A call returns when each
//! shard has done its part (the input it borrows is the caller's until then).
//!
//! ## Where the ranges fall
//!
//! [`Sharded::ranges`] cuts `len` elements in proportion to the shards' weights (equal by
//! default), each boundary rounded down to a multiple of [`SHARD_ALIGN`] = 64 elements: four
//! ChaCha blocks (so that no engine expands a keystream block another one also needs, and
//! the CPU engine's 64-word batches stay whole), and 2b whole 32-bit words of a packed run
//! at every b in 1..=32. A vector shorter than 64 elements sits on the last shard.
//!
//! A packed run is cut at those boundaries relative to its own start. Where the cut falls on
//! a byte at both ends (a run that starts on a multiple of 8 elements, as every wire chunk
//! does), each shard is handed the run's own bytes, borrowed; a run at any other offset (a
//! streamed piece may start anywhere) is cut by a shifting copy of the shard's part. Both
//! give the same sum; `packed::piece` is where the cut is made and tested.
//!
//! ```
//! use secagg_engine::{Accumulate, CpuEngine, MaskTerm, Modulus, Prg, Seed, Sharded};
//! # fn main() -> Result<(), secagg_engine::EngineError> {
//! let m = Modulus::new(13)?;
//! let one = CpuEngine::new();
//! let two = Sharded::new(vec![CpuEngine::new(), CpuEngine::new()])?;
//! assert_eq!(two.ranges(1000), [0..448, 448..1000]);
//!
//! let upload: Vec<u32> = (0..1000).map(|i| i * 7 % 8192).collect();
//! let terms = || [MaskTerm::minus(Seed::from_bytes([5; 32]))];
//! let (mut a, mut b) = (one.accumulator(1000, m)?, two.accumulator(1000, m)?);
//! one.add_words(&mut a, 0, &upload)?;
//! two.add_words(&mut b, 0, &upload)?;
//! one.mask_range(&mut a, 0, 1000, 0, &terms(), Prg::ChaCha20)?;
//! two.mask_range(&mut b, 0, 1000, 0, &terms(), Prg::ChaCha20)?;
//! assert_eq!(one.read_out_owned(a)?, two.read_out_owned(b)?);
//! # Ok(())
//! # }
//! ```

use std::borrow::Cow;
use std::ops::Range;

use rayon::prelude::*;

use crate::accumulator::{Accumulate, check_packed, check_span};
use crate::{
    Backend, BackendKind, EngineError, Lane, MaskTerm, Modulus, Prg, Seed, StreamPos, check_add,
    check_range,
};

/// One shard's work in a call: the shard's index, its part and what it does with it.
type Work<P, T> = (usize, (P, T));

/// Shard boundaries are multiples of this many elements (see the module docs).
pub const SHARD_ALIGN: usize = 64;

/// Several engines, each owning a contiguous range of every vector: [`Backend`] and
/// [`Accumulate`] over all of them, bit-identical to one engine (see the module docs).
///
/// The engines may differ (a CPU and a GPU through [`Engine`](crate::Engine)); the result
/// never depends on how the vector is split, only the speed does.
#[derive(Debug)]
pub struct Sharded<E> {
    shards: Vec<E>,
    weights: Vec<u32>,
}

/// The accumulator of a [`Sharded`] engine: one accumulator per shard, of its range only.
#[derive(Debug)]
pub struct ShardedAccumulator<A> {
    parts: Vec<A>,
    ranges: Vec<Range<usize>>,
    len: usize,
    modulus: Modulus,
}

impl<A> ShardedAccumulator<A> {
    /// Elements, all shards together.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Each shard's range of elements, in shard order.
    pub fn ranges(&self) -> &[Range<usize>] {
        &self.ranges
    }

    /// Each shard's piece of `at..at + n` (relative to the whole accumulator): the shard,
    /// its part, and where the piece starts in the part and in `at..at + n`, with its length.
    fn overlaps(&mut self, at: usize, n: usize) -> Vec<(usize, (&mut A, Piece))> {
        let end = at + n;
        self.parts
            .iter_mut()
            .zip(&self.ranges)
            .enumerate()
            .filter_map(|(i, (part, r))| {
                let (x, y) = (at.max(r.start), end.min(r.end));
                (x < y).then(|| {
                    let piece = Piece {
                        within: x - r.start,
                        from: x - at,
                        n: y - x,
                    };
                    (i, (part, piece))
                })
            })
            .collect()
    }
}

/// One shard's share of a span: `n` elements from element `within` of the shard's part,
/// which are elements `from..from + n` of the span.
#[derive(Clone, Copy, Debug)]
struct Piece {
    within: usize,
    from: usize,
    n: usize,
}

impl<E: Backend> Sharded<E> {
    /// The engines as equal shards, in order: shard 0 takes the first range.
    pub fn new(shards: Vec<E>) -> Result<Self, EngineError> {
        let weights = vec![1; shards.len()];
        Self::with_weights(shards, &weights)
    }

    /// The engines as shards sized in proportion to `weights` (one each, at least 1): a
    /// faster engine can take a larger range.
    ///
    /// ```
    /// use secagg_engine::{CpuEngine, EngineError, Sharded};
    /// # fn main() -> Result<(), EngineError> {
    /// let cpus = || vec![CpuEngine::new(), CpuEngine::new(), CpuEngine::new()];
    /// let uneven = Sharded::with_weights(cpus(), &[1, 2, 5])?;
    /// assert_eq!(uneven.ranges(8000), [0..960, 960..2944, 2944..8000]);
    /// assert!(matches!(
    ///     Sharded::with_weights(cpus(), &[1, 0, 1]),
    ///     Err(EngineError::ShardWeights { shards: 3, weights: 3 })
    /// ));
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_weights(shards: Vec<E>, weights: &[u32]) -> Result<Self, EngineError> {
        if shards.is_empty() {
            return Err(EngineError::NoShards);
        }
        if weights.len() != shards.len() || weights.contains(&0) {
            return Err(EngineError::ShardWeights {
                shards: shards.len(),
                weights: weights.len(),
            });
        }
        Ok(Self {
            shards,
            weights: weights.to_vec(),
        })
    }

    /// The engines, in shard order.
    pub fn shards(&self) -> &[E] {
        &self.shards
    }

    /// Each shard's range of a vector of `len` elements: contiguous, in shard order, from 0
    /// to `len`, every boundary but the last a multiple of [`SHARD_ALIGN`].
    pub fn ranges(&self, len: usize) -> Vec<Range<usize>> {
        let total: u128 = self.weights.iter().map(|&w| u128::from(w)).sum();
        let mut cum = 0u128;
        let mut start = 0;
        let last = self.weights.len() - 1;
        self.weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                cum += u128::from(w);
                let end = if i == last {
                    len
                } else {
                    let cut = (len as u128 * cum / total) as usize;
                    (cut / SHARD_ALIGN * SHARD_ALIGN).max(start)
                };
                let r = start..end;
                start = end;
                r
            })
            .collect()
    }

    /// Runs `f` for every shard that has work, all at once; the first error in shard order
    /// wins. One shard's work runs on the calling thread.
    fn each<T: Send>(
        &self,
        work: Vec<(usize, T)>,
        f: impl Fn(&E, T) -> Result<(), EngineError> + Sync,
    ) -> Result<(), EngineError> {
        if work.len() <= 1 {
            return work
                .into_iter()
                .try_for_each(|(i, t)| f(&self.shards[i], t));
        }
        let results: Vec<Result<(), EngineError>> = work
            .into_par_iter()
            .map(|(i, t)| f(&self.shards[i], t))
            .collect();
        results.into_iter().collect()
    }

    /// `v` cut by [`ranges`](Sharded::ranges).
    fn split_mut<'v, T>(&self, v: &'v mut [T]) -> Vec<(usize, (usize, &'v mut [T]))> {
        let ranges = self.ranges(v.len());
        split_by(v, &ranges)
    }

    fn check_parts<A>(&self, acc: &ShardedAccumulator<A>) -> Result<(), EngineError> {
        if acc.parts.len() == self.shards.len() {
            Ok(())
        } else {
            Err(EngineError::ShardMismatch {
                parts: acc.parts.len(),
                shards: self.shards.len(),
            })
        }
    }
}

/// `v` (of `ranges`' total length) cut at `ranges`' boundaries: each non-empty piece with
/// its shard and its first element.
fn split_by<'v, T>(v: &'v mut [T], ranges: &[Range<usize>]) -> Vec<(usize, (usize, &'v mut [T]))> {
    let mut rest = v;
    let mut out = Vec::with_capacity(ranges.len());
    for (i, r) in ranges.iter().enumerate() {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(r.len());
        rest = tail;
        if !head.is_empty() {
            out.push((i, (r.start, head)));
        }
    }
    out
}

impl<E: Backend> Backend for Sharded<E> {
    /// [`BackendKind::Gpu`] when any shard runs on a GPU, else [`BackendKind::Cpu`].
    fn kind(&self) -> BackendKind {
        if self.shards.iter().any(|e| e.kind() == BackendKind::Gpu) {
            BackendKind::Gpu
        } else {
            BackendKind::Cpu
        }
    }

    fn describe(&self) -> String {
        let each: Vec<String> = self
            .shards
            .iter()
            .zip(&self.weights)
            .map(|(e, w)| format!("{} [weight {w}]", e.describe()))
            .collect();
        format!(
            "{} shards by coordinate range: {}",
            self.shards.len(),
            each.join(" | ")
        )
    }

    fn add<L: Lane>(
        &self,
        acc: &mut [L],
        input: &[L],
        modulus: Modulus,
    ) -> Result<(), EngineError> {
        check_add(acc, input, modulus)?;
        self.each(self.split_mut(acc), |e, (at, part)| {
            e.add(part, &input[at..at + part.len()], modulus)
        })
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
        self.each(self.split_mut(acc), |e, (at, part)| {
            e.apply_masks(part, offset + at as u64, terms, prg, modulus)
        })
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
        self.each(self.split_mut(out), |e, (at, part)| {
            e.expand(seed, prg, offset + at as u64, part, modulus)
        })
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
        // Every boundary is a multiple of 64 words: whole blocks on each side.
        self.each(self.split_mut(out), |e, (at, part)| {
            let pos = StreamPos {
                block: pos.block.wrapping_add((at / 16) as u64),
                stream: pos.stream,
            };
            e.keystream_blocks(seed, prg, pos, part)
        })
    }
}

impl<E: Accumulate> Accumulate for Sharded<E> {
    type Accumulator = ShardedAccumulator<E::Accumulator>;

    fn accumulator(
        &self,
        len: usize,
        modulus: Modulus,
    ) -> Result<ShardedAccumulator<E::Accumulator>, EngineError> {
        let ranges = self.ranges(len);
        // Each engine makes (and on the CPU, maps) its own part at once.
        let parts: Vec<Result<E::Accumulator, EngineError>> = self
            .shards
            .par_iter()
            .zip(&ranges)
            .map(|(e, r)| e.accumulator(r.len(), modulus))
            .collect();
        Ok(ShardedAccumulator {
            parts: parts.into_iter().collect::<Result<_, _>>()?,
            ranges,
            len,
            modulus,
        })
    }

    fn add_packed(
        &self,
        acc: &mut Self::Accumulator,
        offset: usize,
        packed: &[u8],
        count: usize,
    ) -> Result<(), EngineError> {
        check_packed(acc.len, offset, packed, count, acc.modulus)?;
        self.check_parts(acc)?;
        let bits = acc.modulus.bits();
        self.each(acc.overlaps(offset, count), |e, (part, p)| {
            let bytes = crate::packed::piece(packed, count, p.from, p.n, bits);
            e.add_packed(part, p.within, &bytes, p.n)
        })
    }

    fn add_packed_runs(
        &self,
        acc: &mut Self::Accumulator,
        runs: &[(usize, &[u8], usize)],
    ) -> Result<(), EngineError> {
        // Every run is checked before any is added.
        for &(offset, packed, count) in runs {
            check_packed(acc.len, offset, packed, count, acc.modulus)?;
        }
        self.check_parts(acc)?;
        let bits = acc.modulus.bits();
        let work: Vec<Work<&mut E::Accumulator, &Range<usize>>> = acc
            .parts
            .iter_mut()
            .zip(&acc.ranges)
            .enumerate()
            .filter(|(_, (_, r))| !r.is_empty())
            .collect();
        // Each shard cuts its own pieces of every run, in the runs' order (an engine may join
        // consecutive ones), and adds them.
        self.each(work, |e, (part, r)| {
            let pieces: Vec<(usize, Cow<'_, [u8]>, usize)> = runs
                .iter()
                .filter_map(|&(offset, packed, count)| {
                    let (x, y) = (offset.max(r.start), (offset + count).min(r.end));
                    (x < y).then(|| {
                        let bytes = crate::packed::piece(packed, count, x - offset, y - x, bits);
                        (x - r.start, bytes, y - x)
                    })
                })
                .collect();
            let slices: Vec<(usize, &[u8], usize)> = pieces
                .iter()
                .map(|(at, bytes, n)| (*at, bytes.as_ref(), *n))
                .collect();
            if slices.is_empty() {
                return Ok(());
            }
            e.add_packed_runs(part, &slices)
        })
    }

    fn add_lanes<L: Lane>(
        &self,
        acc: &mut Self::Accumulator,
        offset: usize,
        lanes: &[L],
    ) -> Result<(), EngineError> {
        check_span(acc.len, offset, lanes.len())?;
        acc.modulus.check_lane::<L>()?;
        self.check_parts(acc)?;
        self.each(acc.overlaps(offset, lanes.len()), |e, (part, p)| {
            e.add_lanes(part, p.within, &lanes[p.from..p.from + p.n])
        })
    }

    fn mask_range(
        &self,
        acc: &mut Self::Accumulator,
        start: usize,
        len: usize,
        offset: u64,
        terms: &[MaskTerm],
        prg: Prg,
    ) -> Result<(), EngineError> {
        check_span(acc.len, start, len)?;
        check_range(offset, len)?;
        self.check_parts(acc)?;
        // The same terms on every shard, each at its range's keystream offset.
        self.each(acc.overlaps(start, len), |e, (part, p)| {
            e.mask_range(part, p.within, p.n, offset + p.from as u64, terms, prg)
        })
    }

    fn read_out_lanes<L: Lane>(
        &self,
        acc: &Self::Accumulator,
        out: &mut [L],
    ) -> Result<(), EngineError> {
        acc.modulus.check_lane::<L>()?;
        if out.len() != acc.len {
            return Err(EngineError::LengthMismatch {
                acc: acc.len,
                input: out.len(),
            });
        }
        self.check_parts(acc)?;
        let work: Vec<Work<&E::Accumulator, &mut [L]>> = split_by(out, &acc.ranges)
            .into_iter()
            .map(|(i, (_, slice))| (i, (&acc.parts[i], slice)))
            .collect();
        self.each(work, |e, (part, slice)| e.read_out_lanes(part, slice))
    }

    fn accumulator_len(&self, acc: &Self::Accumulator) -> usize {
        acc.len
    }

    /// Shard by shard, each part dropped once it is copied: the host holds the result and at
    /// most one shard's part besides (shard 0's memory becomes the result's start without a
    /// copy where that engine hands its memory over).
    fn read_out_owned_lanes<L: Lane>(&self, acc: Self::Accumulator) -> Result<Vec<L>, EngineError> {
        acc.modulus.check_lane::<L>()?;
        self.check_parts(&acc)?;
        let len = acc.len;
        let mut parts = self.shards.iter().zip(acc.parts);
        let mut out = match parts.next() {
            Some((e, first)) => e.read_out_owned_lanes(first)?,
            None => Vec::new(),
        };
        out.reserve_exact(len - out.len());
        for (e, part) in parts {
            let at = out.len();
            out.resize(at + e.accumulator_len(&part), L::default());
            e.read_out_lanes(&part, &mut out[at..])?;
        }
        Ok(out)
    }

    fn settle(&self) -> Result<(), EngineError> {
        let all = (0..self.shards.len()).map(|i| (i, ())).collect();
        self.each(all, |e, ()| e.settle())
    }
}
