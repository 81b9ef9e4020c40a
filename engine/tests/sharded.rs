//! Sharded engines against one engine and against the plaintext model.
//!
//! A round in miniature, from a printed seed: clients mask random inputs below 2^b with the
//! keystream of their own seeds (computed from `rand_chacha`, the specification), the
//! engine takes the masked uploads the ways a server does (a whole upload as wire chunks,
//! one streamed in pieces of random length at offsets that are not multiples of 8, one
//! unpacked, one as a single packed run), removes every mask in one pass (in two ranges,
//! so the keystream offsets move), and reads the sum out. The sum must be the plaintext sum
//! of the inputs, and the sharded engine's words those of its first engine on its own.
//!
//! Every b in [`BITS`] (13, 17 and 31 do not divide 32, so shard boundaries fall inside
//! packed words of the streamed pieces) and every length in [`LENGTHS`] (1 and 63 fit on
//! one shard; the others are cut unevenly), on 1 to 4 CPU shards of uneven size, a CPU and a
//! GPU, a GPU and a CPU, two GPUs, and four mixed. The GPU cases run on whatever adapter
//! wgpu finds (lavapipe here); with `SECAGG_REQUIRE_GPU=1` they fail rather than skip when
//! none opens.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use secagg_engine::testing::sharded_or_skip;
use secagg_engine::{
    Accumulate, Backend, BackendSpec, CpuEngine, Device, Engine, EngineError, GpuEngine, MaskTerm,
    Modulus, Prg, SHARD_ALIGN, Seed, Sharded,
};
use support::{Inputs, assert_same, mask_of, pack_bits, spec_stream};

const BITS: [u32; 6] = [1, 7, 13, 17, 31, 32];
const LENGTHS: [usize; 5] = [1, 63, 1000, 4099, 1_000_003];
/// Elements per wire chunk (the codec's largest).
const WIRE_CHUNK: usize = 1 << 16;

/// One round's inputs and how the server receives them, drawn once and replayed on every
/// engine.
struct Round {
    modulus: Modulus,
    prg: Prg,
    len: usize,
    /// Each client's mask seed.
    seeds: Vec<[u8; 32]>,
    /// Each client's masked upload: input + PRG(seed) mod 2^b.
    masked: Vec<Vec<u32>>,
    /// The plaintext sum of the inputs.
    want: Vec<u32>,
    /// The streamed client's piece lengths.
    pieces: Vec<usize>,
    /// Where the unpacked upload is cut in two, and where the mask pass is.
    words_cut: usize,
    mask_cut: usize,
}

impl Round {
    fn draw(rng: &mut Inputs, bits: u32, len: usize) -> Self {
        let modulus = Modulus::new(bits).unwrap();
        let mask = mask_of(modulus);
        let prg = rng.pick(&Prg::ALL);
        let mut want = vec![0u32; len];
        let (mut seeds, mut masked) = (Vec::new(), Vec::new());
        for _ in 0..4 {
            let seed = rng.seed_bytes();
            let input: Vec<u32> = rng.vec(len).into_iter().map(|v| v & mask).collect();
            for (w, x) in want.iter_mut().zip(&input) {
                *w = w.wrapping_add(*x) & mask;
            }
            let ks = spec_stream(seed, prg, 0, len);
            masked.push(
                input
                    .iter()
                    .zip(ks)
                    .map(|(x, k)| x.wrapping_add(k) & mask)
                    .collect(),
            );
            seeds.push(seed);
        }
        // Streamed pieces: mostly odd lengths, so most pieces start off a multiple of 8.
        let mut pieces = Vec::new();
        let mut at = 0;
        while at < len {
            let n = match rng.below(3) {
                0 => 1 + rng.below(97) as usize,
                1 => 4096 + rng.below(5000) as usize,
                _ => 2 * SHARD_ALIGN * (1 + rng.below(3000) as usize) + 1,
            }
            .min(len - at);
            pieces.push(n);
            at += n;
        }
        Round {
            modulus,
            prg,
            len,
            seeds,
            masked,
            want,
            pieces,
            words_cut: rng.below(len as u64 + 1) as usize,
            mask_cut: rng.below(len as u64 + 1) as usize,
        }
    }

    /// The server's side on `e`: ingest, unmask, read out (both ways).
    fn run<E: Accumulate>(&self, e: &E) -> Vec<u32> {
        let bits = self.modulus.bits();
        let mut acc = e.accumulator(self.len, self.modulus).unwrap();
        // Client 0: a whole upload as wire chunks, handed over together.
        let chunks: Vec<(usize, Vec<u8>, usize)> = (0..self.len)
            .step_by(WIRE_CHUNK)
            .map(|at| {
                let n = WIRE_CHUNK.min(self.len - at);
                (at, pack_bits(&self.masked[0][at..at + n], bits), n)
            })
            .collect();
        let runs: Vec<(usize, &[u8], usize)> = chunks
            .iter()
            .map(|(o, p, n)| (*o, p.as_slice(), *n))
            .collect();
        e.add_packed_runs(&mut acc, &runs).unwrap();
        // Client 1: streamed, piece by piece.
        let mut at = 0;
        for &n in &self.pieces {
            let piece = pack_bits(&self.masked[1][at..at + n], bits);
            e.add_packed(&mut acc, at, &piece, n).unwrap();
            at += n;
        }
        // Client 2: unpacked, in two parts.
        let (head, tail) = self.masked[2].split_at(self.words_cut);
        e.add_words(&mut acc, 0, head).unwrap();
        e.add_words(&mut acc, self.words_cut, tail).unwrap();
        // Client 3: one packed run.
        e.add_packed(&mut acc, 0, &pack_bits(&self.masked[3], bits), self.len)
            .unwrap();
        // Unmask: every client's mask subtracted, over two ranges at their own offsets.
        let terms = || -> Vec<MaskTerm> {
            self.seeds
                .iter()
                .map(|s| MaskTerm::minus(Seed::from_bytes(*s)))
                .collect()
        };
        let cut = self.mask_cut;
        e.mask_range(&mut acc, 0, cut, 0, &terms(), self.prg)
            .unwrap();
        e.mask_range(
            &mut acc,
            cut,
            self.len - cut,
            cut as u64,
            &terms(),
            self.prg,
        )
        .unwrap();
        e.settle().unwrap();
        let mut copied = vec![0u32; self.len];
        e.read_out(&acc, &mut copied).unwrap();
        let owned = e.read_out_owned(acc).unwrap();
        assert_same("read_out against read_out_owned", &copied, &owned);
        owned
    }
}

/// Every b and length on `sharded`: the plaintext sum, and its first engine's words alone.
fn rounds_match(sharded: &Sharded<Engine>, test: &str) {
    let mut rng = Inputs::new(test);
    let alone = &sharded.shards()[0];
    for bits in BITS {
        for len in LENGTHS {
            let round = Round::draw(&mut rng, bits, len);
            let what = format!(
                "b = {bits}, {len} elements, {} in {:?}",
                round.prg,
                sharded.ranges(len)
            );
            let got = round.run(sharded);
            assert_same(&format!("{what}: sharded vs plaintext"), &got, &round.want);
            let one = round.run(alone);
            assert_same(&format!("{what}: sharded vs one engine"), &got, &one);
        }
    }
}

macro_rules! sharded {
    ($name:ident, $devices:expr, $weights:expr) => {
        #[test]
        fn $name() {
            let test = concat!("sharded::", stringify!($name));
            let Some(engine) = sharded_or_skip(test, &$devices, &$weights) else {
                return;
            };
            rounds_match(&engine, test);
        }
    };
}

use Device::{Cpu, Gpu};

sharded!(one_cpu_shard, [Cpu], [1]);
sharded!(two_cpu_shards, [Cpu, Cpu], [1, 2]);
sharded!(three_cpu_shards, [Cpu, Cpu, Cpu], [3, 1, 2]);
sharded!(four_cpu_shards, [Cpu, Cpu, Cpu, Cpu], [2, 1, 1, 5]);
sharded!(cpu_and_gpu, [Cpu, Gpu], [1, 3]);
sharded!(gpu_and_cpu, [Gpu, Cpu], [2, 1]);
sharded!(two_gpus, [Gpu, Gpu], [1, 1]);
sharded!(four_mixed, [Gpu, Cpu, Gpu, Cpu], [1, 2, 1, 3]);

/// The ranges cover the vector in order, every inner boundary on [`SHARD_ALIGN`], each
/// range near its weight's share.
#[test]
fn ranges_cover_in_order_on_aligned_boundaries() {
    let mut rng = Inputs::new("sharded::ranges_cover_in_order_on_aligned_boundaries");
    for _ in 0..500 {
        let shards = 1 + rng.below(6) as usize;
        let weights: Vec<u32> = (0..shards).map(|_| 1 + rng.below(9) as u32).collect();
        let len = match rng.below(3) {
            0 => rng.below(200) as usize,
            1 => rng.below(1 << 20) as usize,
            _ => rng.below(1 << 40) as usize,
        };
        let engines = vec![CpuEngine::new(); shards];
        let ranges = Sharded::with_weights(engines, &weights)
            .unwrap()
            .ranges(len);
        assert_eq!(ranges.len(), shards);
        assert_eq!(ranges[0].start, 0);
        assert_eq!(ranges[shards - 1].end, len);
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut cum = 0;
        for (i, r) in ranges.iter().enumerate() {
            assert!(r.start <= r.end, "{ranges:?}");
            if i + 1 < shards {
                assert_eq!(r.end, ranges[i + 1].start, "{ranges:?}");
                assert_eq!(r.end % SHARD_ALIGN, 0, "{ranges:?}");
                // The boundary is the weighted cut rounded down to SHARD_ALIGN.
                cum += u64::from(weights[i]);
                let exact = (len as u128 * u128::from(cum) / u128::from(total)) as usize;
                assert!(r.end <= exact && exact - r.end < SHARD_ALIGN, "{ranges:?}");
            }
        }
    }
}

#[test]
fn foreign_and_mismatched_accumulators_are_refused() {
    let m = Modulus::new(9).unwrap();
    let two = Engine::open(&"cpu,cpu".parse().unwrap()).unwrap();
    let three = Engine::open(&"cpu,cpu,cpu".parse().unwrap()).unwrap();
    let one = Engine::open(&"cpu".parse().unwrap()).unwrap();
    let mut acc = two.accumulator(1000, m).unwrap();
    assert!(matches!(
        three.add_words(&mut acc, 0, &[1]),
        Err(EngineError::ShardMismatch {
            parts: 2,
            shards: 3
        })
    ));
    assert!(matches!(
        one.add_words(&mut acc, 0, &[1]),
        Err(EngineError::ForeignAccumulator {
            owner: "sharded",
            engine: "cpu"
        })
    ));
    assert!(matches!(
        Sharded::<CpuEngine>::new(Vec::new()),
        Err(EngineError::NoShards)
    ));
    // A run whose bytes do not match its count is refused before any shard adds anything.
    let runs = [
        (0usize, &[0xffu8; 1200][..], 1000usize),
        (0, &[0u8; 3][..], 64),
    ];
    assert!(matches!(
        two.add_packed_runs(&mut acc, &runs),
        Err(EngineError::PackedLength { .. })
    ));
    assert!(two.read_out_owned(acc).unwrap().iter().all(|&w| w == 0));
}

/// `gpu:0` opens the first adapter of wgpu's list (lavapipe here); an index past the list
/// fails with the list.
#[test]
fn gpu_adapters_open_by_index() {
    let test = "sharded::gpu_adapters_open_by_index";
    let adapters = GpuEngine::adapters();
    if adapters.is_empty() {
        assert!(
            !secagg_engine::testing::gpu_required(),
            "[{test}] SECAGG_REQUIRE_GPU=1 but wgpu lists no adapter"
        );
        eprintln!("[{test}] skipped: wgpu lists no adapter");
        return;
    }
    let spec: BackendSpec = "gpu:0".parse().unwrap();
    let engine = Engine::open(&spec).unwrap();
    assert!(
        engine.describe().contains(&adapters[0].name),
        "{}",
        engine.describe()
    );
    let past = format!("gpu:{}", adapters.len());
    match Engine::open(&past.parse().unwrap()) {
        Err(EngineError::NoAdapter(why)) => {
            assert!(why.contains(&adapters[0].name), "{why}")
        }
        other => panic!("{past}: {other:?}"),
    }
}
