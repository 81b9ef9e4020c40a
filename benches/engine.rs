//! Engine throughput: the raw single-thread ChaCha keystream fill rate (the bound), the fused
//! `apply_masks` pass for 1, 22 and 200 terms over 2^20 and 2^24 elements, and `add`, on the
//! CPU with one thread, the CPU with every thread, two CPU engines sharing the vector by
//! coordinate range (`Sharded`), and the GPU adapter when one opens.
//!
//! Throughput is reported in keystream bytes (terms x elements x 4) for `apply_masks` and in
//! input bytes (elements x 4) for `add`. `cargo bench --bench engine`; a filter narrows it,
//! e.g. `cargo bench --bench engine -- apply_masks/cpu`.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::type_complexity
)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand_core::{Rng, SeedableRng};
use secagg_engine::{Backend, CpuEngine, GpuEngine, MaskTerm, Modulus, Prg, Seed, Sharded};

const SIZES: [(u32, usize); 2] = [(20, 1 << 20), (24, 1 << 24)];
const TERMS: [usize; 3] = [1, 22, 200];

fn engines() -> Vec<(String, Box<dyn Fn() -> Option<AnyEngine>>)> {
    vec![
        (
            "cpu-1t".into(),
            Box::new(|| Some(AnyEngine::Cpu(CpuEngine::with_threads(1).unwrap()))),
        ),
        (
            "cpu-all".into(),
            Box::new(|| Some(AnyEngine::Cpu(CpuEngine::new()))),
        ),
        (
            "cpu-2shards".into(),
            Box::new(|| {
                let shards = vec![CpuEngine::new(), CpuEngine::new()];
                Some(AnyEngine::Sharded(Sharded::new(shards).unwrap()))
            }),
        ),
        (
            "gpu".into(),
            Box::new(|| match GpuEngine::new() {
                Ok(g) => {
                    eprintln!("gpu: {}", g.describe());
                    Some(AnyEngine::Gpu(Box::new(g)))
                }
                Err(e) => {
                    eprintln!("gpu benches skipped: {e}");
                    None
                }
            }),
        ),
    ]
}

enum AnyEngine {
    Cpu(CpuEngine),
    Gpu(Box<GpuEngine>),
    Sharded(Sharded<CpuEngine>),
}

impl AnyEngine {
    fn apply(&self, acc: &mut [u32], terms: &[MaskTerm]) {
        let m = Modulus::U32;
        match self {
            AnyEngine::Cpu(e) => e.apply_masks(acc, 0, terms, Prg::ChaCha20, m),
            AnyEngine::Gpu(e) => e.apply_masks(acc, 0, terms, Prg::ChaCha20, m),
            AnyEngine::Sharded(e) => e.apply_masks(acc, 0, terms, Prg::ChaCha20, m),
        }
        .unwrap()
    }

    fn add(&self, acc: &mut [u32], v: &[u32]) {
        let m = Modulus::U32;
        match self {
            AnyEngine::Cpu(e) => e.add(acc, v, m),
            AnyEngine::Gpu(e) => e.add(acc, v, m),
            AnyEngine::Sharded(e) => e.add(acc, v, m),
        }
        .unwrap()
    }
}

fn terms(n: usize) -> Vec<MaskTerm> {
    (0..n)
        .map(|i| {
            let mut s = [0u8; 32];
            s[..8].copy_from_slice(&(i as u64).to_le_bytes());
            if i % 2 == 0 {
                MaskTerm::plus(Seed::from_bytes(s))
            } else {
                MaskTerm::minus(Seed::from_bytes(s))
            }
        })
        .collect()
}

/// The bound: one thread filling a 64 MiB buffer with keystream, per implementation.
fn keystream_fill(c: &mut Criterion) {
    let mut g = c.benchmark_group("keystream_fill_1t");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    let mut buf = vec![0u8; 64 << 20];
    g.throughput(Throughput::Bytes(buf.len() as u64));
    macro_rules! fill {
        ($name:expr, $t:ty) => {
            g.bench_function($name, |b| {
                let mut r = <$t>::from_seed([7; 32]);
                b.iter(|| r.fill_bytes(&mut buf))
            });
        };
    }
    fill!("rand_chacha/chacha20", rand_chacha::ChaCha20Rng);
    fill!("rand_chacha/chacha12", rand_chacha::ChaCha12Rng);
    fill!("rand_chacha/chacha8", rand_chacha::ChaCha8Rng);
    fill!("chacha20_crate/chacha20", chacha20::ChaCha20Rng);
    fill!("chacha20_crate/chacha12", chacha20::ChaCha12Rng);
    fill!("chacha20_crate/chacha8", chacha20::ChaCha8Rng);
    // The engine's own single-thread expand, the same bound through our code path.
    let cpu1 = CpuEngine::with_threads(1).unwrap();
    let mut words = vec![0u32; 16 << 20];
    for prg in Prg::ALL {
        g.bench_function(format!("engine_expand/{prg}"), |b| {
            let seed = Seed::from_bytes([7; 32]);
            b.iter(|| {
                cpu1.expand(&seed, prg, 0, &mut words, Modulus::U32)
                    .unwrap()
            })
        });
    }
    g.finish();
}

fn apply_masks(c: &mut Criterion) {
    for (name, make) in engines() {
        let Some(engine) = make() else { continue };
        let mut g = c.benchmark_group(format!("apply_masks/{name}"));
        g.sample_size(10).warm_up_time(Duration::from_secs(1));
        for (log2, len) in SIZES {
            let mut acc = vec![1u32; len];
            for n in TERMS {
                let ts = terms(n);
                g.throughput(Throughput::Bytes((n * len * 4) as u64));
                // Big cases: fewer, longer samples.
                g.measurement_time(Duration::from_secs(if n * len > 1 << 26 { 20 } else { 5 }));
                g.bench_function(
                    BenchmarkId::new(format!("2^{log2}"), format!("{n}_terms")),
                    |b| b.iter(|| engine.apply(&mut acc, &ts)),
                );
            }
        }
        g.finish();
    }
}

fn add(c: &mut Criterion) {
    for (name, make) in engines() {
        let Some(engine) = make() else { continue };
        let mut g = c.benchmark_group(format!("add/{name}"));
        g.sample_size(10).measurement_time(Duration::from_secs(4));
        for (log2, len) in SIZES {
            let mut acc = vec![1u32; len];
            let v = vec![3u32; len];
            g.throughput(Throughput::Bytes((len * 4) as u64));
            g.bench_function(format!("2^{log2}"), |b| b.iter(|| engine.add(&mut acc, &v)));
        }
        g.finish();
    }
}

criterion_group!(benches, keystream_fill, apply_masks, add);
criterion_main!(benches);
