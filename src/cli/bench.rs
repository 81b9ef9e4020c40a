//! `secagg bench`: a server's large-model round on the hardware it runs on, no toolchain
//! needed.
//!
//! Ingest: n masked uploads of m elements arrive as the wire carries them (chunks of at most
//! 65,536 elements packed at b bits) and each, once whole, is added into the engine's
//! accumulator (`Accumulate::add_packed_runs`: device memory on a GPU, which stages several
//! chunks per dispatch). Unmask: one fused mask pass over the
//! whole accumulator with the terms a dropout pattern needs (the survivors' self masks, and
//! each dropped client's pairwise masks with its surviving neighbours on a ring of k), then
//! one read-out. The uploads are drawn from a pool of distinct random chunks, so that the
//! bench holds O(pool) input memory whatever n and m are. Three slices of the result
//! (start, middle, end) are checked against a computation that shares no code with the
//! engines: the codec's unpacker, and the mask specification through `rand_chacha`.
//!
//! With `--against` the same uploads and terms run first on a second engine (one CPU engine
//! against two CPU shards, say), each checked, and the report gives both and their ratios.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use rand_chacha::{ChaCha8Rng, ChaCha12Rng, ChaCha20Rng};
use rand_core::{Rng, SeedableRng};
use secagg::process::peak_rss_bytes;
use secagg_engine::{
    Accumulate, Backend, BackendSpec, CpuEngine, Engine, MaskTerm, Modulus, Prg, Seed,
};
use secagg_host::codec;
use serde_json::json;

use super::{EXIT_CHECK_FAILED, human_bytes};

/// Elements per uploaded chunk (the wire's largest).
const CHUNK: usize = codec::CHUNK_ELEMS;
/// Distinct random chunks the uploads are drawn from.
const POOL: usize = 61;
/// Elements checked per slice.
const CHECK: usize = 4096;

/// Arguments of `secagg bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Engine: auto (a hardware GPU adapter if one opens, else the CPU), cpu, gpu, gpu:N
    /// (adapter N of wgpu's list), or several of cpu, gpu and gpu:N separated by commas
    /// (e.g. cpu,cpu or gpu:0,gpu:1): the accumulator split by coordinate range between them.
    #[arg(long, default_value = "auto")]
    backend: BackendSpec,
    /// Also run the same uploads and mask terms on this engine (same syntax as --backend),
    /// first, and print how --backend compares (e.g. --backend cpu,cpu --against cpu).
    #[arg(long)]
    against: Option<BackendSpec>,
    /// Clients whose uploads are ingested.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Parameters per upload (1e8 notation accepted).
    #[arg(long, default_value = "1e7", value_parser = parse_count)]
    params: usize,
    /// Neighbours per client on the ring used for the dropout pattern (SecAgg+ k).
    #[arg(long, default_value_t = 21)]
    neighbors: usize,
    /// Fraction of clients dropped before their masked input (their pairwise masks with
    /// surviving neighbours are removed in the unmask pass).
    #[arg(long, default_value_t = 0.1)]
    dropout: f64,
    /// Modulus bits b (uploads are packed at b bits).
    #[arg(long, default_value_t = 32)]
    bits: u32,
    /// Mask PRG: chacha20, chacha12 or chacha8.
    #[arg(long, default_value = "chacha20")]
    prg: Prg,
    /// Seed of the uploads and mask keys. Default: random (printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// A count in plain or scientific notation: 100000000, 1e8, 2.5e6.
fn parse_count(s: &str) -> Result<usize, String> {
    if let Ok(n) = s.parse::<usize>() {
        return Ok(n);
    }
    let x: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a count (e.g. 100000000 or 1e8)"))?;
    if !(x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x <= usize::MAX as f64) {
        return Err(format!("{s:?} is not a whole number of elements"));
    }
    Ok(x as usize)
}

/// The spec's keystream word `offset + j` of `seed` for j < len, reduced by `mask`.
fn spec_words(seed: &[u8; 32], prg: Prg, offset: u64, len: usize, mask: u32) -> Vec<u32> {
    macro_rules! read {
        ($rng:ty) => {{
            let mut r = <$rng>::from_seed(*seed);
            r.set_word_pos(u128::from(offset));
            (0..len).map(|_| r.next_u32() & mask).collect()
        }};
    }
    match prg {
        Prg::ChaCha20 => read!(ChaCha20Rng),
        Prg::ChaCha12 => read!(ChaCha12Rng),
        Prg::ChaCha8 => read!(ChaCha8Rng),
    }
}

/// The pool chunk client `c`'s chunk `j` is drawn from.
fn pick(c: usize, j: usize) -> usize {
    (c * 7 + j * 13 + c * j) % POOL
}

/// Single-thread ChaCha fill rate on this machine, in bytes of keystream per second.
fn single_thread_rate(prg: Prg, modulus: Modulus) -> Result<f64, String> {
    let one = CpuEngine::with_threads(1).map_err(|e| e.to_string())?;
    let mut v = vec![0u32; 1 << 22];
    let term = [MaskTerm::plus(Seed::from_bytes([7; 32]))];
    one.apply_masks(&mut v, 0, &term, prg, modulus)
        .map_err(|e| e.to_string())?;
    let t = Instant::now();
    let mut rounds = 0u64;
    while t.elapsed() < Duration::from_millis(400) {
        one.apply_masks(&mut v, 0, &term, prg, modulus)
            .map_err(|e| e.to_string())?;
        rounds += 1;
    }
    Ok(rounds as f64 * v.len() as f64 * 4.0 / t.elapsed().as_secs_f64())
}

/// This machine's memory-copy bandwidth (one `copy_from_slice` of 64 MiB per core, all cores
/// at once, best of three; measured after the peak memory is read), in bytes copied per second: what an ingest, which reads two streams and writes
/// one, is compared with.
fn copy_bandwidth(cores: usize) -> f64 {
    use rayon::prelude::*;
    let per = 16usize << 20; // u32 words: 64 MiB, twice the largest L3 here
    let src: Vec<Vec<u32>> = (0..cores).map(|i| vec![i as u32; per]).collect();
    let mut dst: Vec<Vec<u32>> = (0..cores).map(|_| vec![0u32; per]).collect();
    let mut best = 0.0f64;
    for _ in 0..3 {
        let t = Instant::now();
        dst.par_iter_mut()
            .zip(src.par_iter())
            .for_each(|(d, s)| d.copy_from_slice(s));
        let rate = (cores * per * 4) as f64 / t.elapsed().as_secs_f64();
        best = best.max(rate);
    }
    std::hint::black_box(&dst);
    best
}

/// What every engine in one bench run ingests and unmasks: drawn once from the seed.
struct Workload {
    n: usize,
    m: usize,
    modulus: Modulus,
    prg: Prg,
    /// Random chunks of CHUNK elements below 2^b, and each packed whole and cut to the tail.
    pool_values: Vec<Vec<u32>>,
    pool_packed: Vec<Vec<u8>>,
    tail_packed: Vec<Vec<u8>>,
    /// The unmask pass's terms: seed and whether it is added.
    raw: Vec<([u8; 32], bool)>,
    dropped: usize,
}

impl Workload {
    fn draw(a: &BenchArgs, k: usize, modulus: Modulus, seed: u64) -> Self {
        let (n, m, mask) = (a.clients, a.params, modulus.mask_u32());
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let pool_values: Vec<Vec<u32>> = (0..POOL)
            .map(|_| (0..CHUNK).map(|_| rng.next_u32() & mask).collect())
            .collect();
        let pack = |v: &[u32]| {
            let mut out = Vec::new();
            codec::pack(v, a.bits, &mut out);
            out
        };
        let pool_packed = pool_values.iter().map(|v| pack(v)).collect();
        // The last chunk of each upload is shorter when m is not a multiple of CHUNK.
        let tail = m % CHUNK;
        let tail_packed = pool_values.iter().map(|v| pack(&v[..tail])).collect();
        // Survivors' self masks, and dropped clients' pairwise masks with surviving
        // neighbours on a ring of k.
        let dropped: Vec<bool> = {
            let d = (a.dropout * n as f64).round() as usize;
            let mut v = vec![false; n];
            let step = n.checked_div(d).unwrap_or(n + 1);
            for i in 0..d {
                v[(i * step) % n] = true;
            }
            v
        };
        let mut raw: Vec<([u8; 32], bool)> = Vec::new();
        for (c, gone) in dropped.iter().enumerate() {
            if !gone {
                let mut s = [0u8; 32];
                rng.fill_bytes(&mut s);
                raw.push((s, false));
            } else {
                for d in 1..=k.div_ceil(2) {
                    for v in [(c + d) % n, (c + n - d % n) % n] {
                        if v != c && !dropped[v] {
                            let mut s = [0u8; 32];
                            rng.fill_bytes(&mut s);
                            raw.push((s, v < c));
                        }
                    }
                }
            }
        }
        Workload {
            n,
            m,
            modulus,
            prg: a.prg,
            pool_values,
            pool_packed,
            tail_packed,
            raw,
            dropped: dropped.iter().filter(|d| **d).count(),
        }
    }

    fn terms(&self) -> Vec<MaskTerm> {
        self.raw
            .iter()
            .map(|(s, plus)| {
                if *plus {
                    MaskTerm::plus(Seed::from_bytes(*s))
                } else {
                    MaskTerm::minus(Seed::from_bytes(*s))
                }
            })
            .collect()
    }
}

/// One engine's run of a workload: its times and the check of its result.
struct Measured {
    engine: String,
    setup: Duration,
    ingest: Duration,
    unmask: Duration,
    read_out: Duration,
    failures: Vec<String>,
}

impl Measured {
    fn json(&self) -> serde_json::Value {
        json!({
            "engine": self.engine,
            "accumulator_setup_s": self.setup.as_secs_f64(),
            "ingest_s": self.ingest.as_secs_f64(),
            "unmask_s": self.unmask.as_secs_f64(),
            "read_out_s": self.read_out.as_secs_f64(),
            "check_passed": self.failures.is_empty(),
            "failures": self.failures,
        })
    }
}

/// Ingests every upload into a fresh accumulator on `engine`, unmasks, reads out, and checks
/// three slices of the result against the independent computation.
fn measure(engine: &Engine, w: &Workload) -> Result<Measured, String> {
    let (n, m) = (w.n, w.m);
    let t_acc = Instant::now();
    let mut acc = engine
        .accumulator(m, w.modulus)
        .and_then(|acc| engine.settle().map(|()| acc))
        .map_err(|e| format!("accumulator of {m} elements: {e}"))?;
    let setup = t_acc.elapsed();
    let chunks = m.div_ceil(CHUNK);
    let t0 = Instant::now();
    for c in 0..n {
        // One upload: its wire chunks handed over together once it is whole, as the server
        // adds a staged upload (an engine may batch them).
        let runs: Vec<(usize, &[u8], usize)> = (0..chunks)
            .map(|j| {
                let at = j * CHUNK;
                let count = CHUNK.min(m - at);
                let packed = if count == CHUNK {
                    &w.pool_packed[pick(c, j)]
                } else {
                    &w.tail_packed[pick(c, j)]
                };
                (at, packed.as_slice(), count)
            })
            .collect();
        engine
            .add_packed_runs(&mut acc, &runs)
            .map_err(|e| format!("ingest: {e}"))?;
    }
    // A GPU queues its work: wait for it, so that the ingest is charged all of it.
    engine.settle().map_err(|e| format!("ingest: {e}"))?;
    let ingest = t0.elapsed();

    let terms = w.terms();
    let t1 = Instant::now();
    engine
        .mask_range(&mut acc, 0, m, 0, &terms, w.prg)
        .and_then(|()| engine.settle())
        .map_err(|e| format!("unmask: {e}"))?;
    // The result leaves the engine as the server's does: the CPU engine's memory becomes
    // the result without a copy; a GPU reads its buffer out once.
    let t2 = Instant::now();
    let out = engine
        .read_out_owned(acc)
        .map_err(|e| format!("read-out: {e}"))?;
    let read_out = t2.elapsed();
    let unmask = t2 - t1;

    // Check three slices against the independent computation.
    let mask = w.modulus.mask_u32();
    let mut failures = Vec::new();
    for s in slices(m) {
        let len = CHECK.min(m - s);
        let mut want = vec![0u32; len];
        for c in 0..n {
            for (i, x) in want.iter_mut().enumerate() {
                let e = s + i;
                let (j, within) = (e / CHUNK, e % CHUNK);
                *x = x.wrapping_add(w.pool_values[pick(c, j)][within]) & mask;
            }
        }
        for (seed, plus) in &w.raw {
            let ks = spec_words(seed, w.prg, s as u64, len, mask);
            for (x, k) in want.iter_mut().zip(ks) {
                *x = if *plus {
                    x.wrapping_add(k)
                } else {
                    x.wrapping_sub(k)
                } & mask;
            }
        }
        if let Some(i) = want.iter().zip(&out[s..s + len]).position(|(x, g)| x != g) {
            failures.push(format!(
                "element {}: got {:#x}, want {:#x}",
                s + i,
                out[s + i],
                want[i]
            ));
        }
    }
    Ok(Measured {
        engine: engine.describe(),
        setup,
        ingest,
        unmask,
        read_out,
        failures,
    })
}

/// Where the three checked slices start: the beginning, the middle and the end.
fn slices(m: usize) -> [usize; 3] {
    [0, m / 2, m.saturating_sub(CHECK)]
}

fn open(spec: &BackendSpec, flag: &str) -> Result<Engine, String> {
    super::open_engine(spec, flag)
}

pub fn run(a: BenchArgs) -> Result<ExitCode, String> {
    let (n, m) = (a.clients, a.params);
    if n < 2 || m == 0 {
        return Err("--clients must be at least 2 and --params at least 1".into());
    }
    if !(0.0..1.0).contains(&a.dropout) {
        return Err(format!("--dropout {} must be in [0, 1)", a.dropout));
    }
    let k = a.neighbors.min(n - 1).max(1);
    let modulus = Modulus::new(a.bits)
        .ok()
        .filter(|md| md.check_lane::<u32>().is_ok())
        .ok_or_else(|| format!("--bits {} must be in 1..=32", a.bits))?;
    let seed = a.seed.unwrap_or_else(|| {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    });
    let engine = open(&a.backend, "--backend")?;
    let against = match &a.against {
        Some(spec) => Some(open(spec, "--against")?),
        None => None,
    };
    let describe = engine.describe();
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let rate = single_thread_rate(a.prg, modulus)?;
    if !a.json {
        println!(
            "secagg bench: {n} clients x {m} parameters, b = {}, {} on {describe}; seed {seed}",
            a.bits, a.prg
        );
        if let Some(other) = &against {
            println!("  against: {}", other.describe());
        }
        println!(
            "  single-thread {} fill rate {:.2} GB/s x {cores} cores",
            a.prg,
            rate / 1e9
        );
    }
    let w = Workload::draw(&a, k, modulus, seed);
    // The comparison runs first, on the same uploads and terms, and is dropped before the
    // main run starts.
    let baseline = match against {
        Some(other) => Some(measure(&other, &w)?),
        None => None,
    };
    let main = measure(&engine, &w)?;

    let peak = peak_rss_bytes().unwrap_or(0);
    let copy = copy_bandwidth(cores);
    let ingest_bytes = n as f64 * m as f64 * 4.0;
    let packed_bytes = n as f64 * codec::packed_len(m, a.bits) as f64;
    let keystream = w.raw.len() as f64 * m as f64 * 4.0;
    let ks_rate = keystream / main.unmask.as_secs_f64();
    let bound = rate * cores as f64;
    let passed =
        main.failures.is_empty() && baseline.as_ref().is_none_or(|b| b.failures.is_empty());
    let ratio = |ours: Duration, theirs: Duration| theirs.as_secs_f64() / ours.as_secs_f64();
    let mut report = json!({
        "engine": describe,
        "clients": n,
        "params": m,
        "neighbors": k,
        "dropout": a.dropout,
        "dropped": w.dropped,
        "bits": a.bits,
        "prg": a.prg.to_string(),
        "seed": seed,
        "accumulator_setup_s": main.setup.as_secs_f64(),
        "ingest_s": main.ingest.as_secs_f64(),
        "ingest_gb_per_s": ingest_bytes / main.ingest.as_secs_f64() / 1e9,
        "ingest_packed_gb_per_s": packed_bytes / main.ingest.as_secs_f64() / 1e9,
        "memory_copy_gb_per_s": copy / 1e9,
        "ingest_vs_copy": ingest_bytes / main.ingest.as_secs_f64() / copy,
        "mask_terms": w.raw.len(),
        "unmask_s": main.unmask.as_secs_f64(),
        "keystream_gb_per_s": ks_rate / 1e9,
        "single_thread_gb_per_s": rate / 1e9,
        "cores": cores,
        "unmask_vs_bound": bound / ks_rate,
        "read_out_s": main.read_out.as_secs_f64(),
        "peak_rss_bytes": peak,
        "check_passed": passed,
        "failures": main.failures,
    });
    if let Some(b) = &baseline {
        report["against"] = b.json();
        report["speedup"] = json!({
            "accumulator_setup": ratio(main.setup, b.setup),
            "ingest": ratio(main.ingest, b.ingest),
            "unmask": ratio(main.unmask, b.unmask),
            "read_out": ratio(main.read_out, b.read_out),
        });
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    } else {
        if let Some(b) = &baseline {
            println!(
                "  against {}: accumulator {:.2} s, ingest {:.2} s, unmask {:.2} s, read-out {:.2} s; check: {}",
                a.against.as_ref().map_or(String::new(), |s| s.to_string()),
                b.setup.as_secs_f64(),
                b.ingest.as_secs_f64(),
                b.unmask.as_secs_f64(),
                b.read_out.as_secs_f64(),
                if b.failures.is_empty() {
                    "exact"
                } else {
                    "FAILED"
                }
            );
            for f in &b.failures {
                println!("  mismatch (against): {f}");
            }
        }
        println!(
            "  accumulator: {} made and its pages mapped in {:.2} s (before the first upload)",
            human_bytes(m as u64 * 4),
            main.setup.as_secs_f64()
        );
        println!(
            "  ingest: {:.2} s for {} uploads ({} unpacked, {} packed): {:.2} GB/s unpacked ({:.0}% of the copy bandwidth), {:.2} GB/s packed",
            main.ingest.as_secs_f64(),
            n,
            human_bytes(ingest_bytes as u64),
            human_bytes(packed_bytes as u64),
            ingest_bytes / main.ingest.as_secs_f64() / 1e9,
            100.0 * ingest_bytes / main.ingest.as_secs_f64() / copy,
            packed_bytes / main.ingest.as_secs_f64() / 1e9
        );
        println!(
            "  unmask: {:.2} s for {} mask terms ({} dropped, k = {k}): {:.2} GB/s of keystream, {:.2}x the single-thread rate x cores ({:.2} GB/s)",
            main.unmask.as_secs_f64(),
            w.raw.len(),
            w.dropped,
            ks_rate / 1e9,
            bound / ks_rate,
            bound / 1e9
        );
        println!(
            "  read-out: {:.2} s; peak memory {}; check of {} slices: {}",
            main.read_out.as_secs_f64(),
            human_bytes(peak),
            slices(m).len(),
            if main.failures.is_empty() {
                "exact"
            } else {
                "FAILED"
            }
        );
        for f in &main.failures {
            println!("  mismatch: {f}");
        }
        if let Some(b) = &baseline {
            println!(
                "  {} against {}: ingest {:.2}x, unmask {:.2}x, read-out {:.2}x, accumulator {:.2}x (time against / time)",
                a.backend,
                a.against.as_ref().map_or(String::new(), |s| s.to_string()),
                ratio(main.ingest, b.ingest),
                ratio(main.unmask, b.unmask),
                ratio(main.read_out, b.read_out),
                ratio(main.setup, b.setup)
            );
        }
    }
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHECK_FAILED)
    })
}
