//! Whole rounds through the simulator: server unmask time (rebuilding the secrets and removing
//! every mask in one engine pass), measured by criterion, and the whole-round wall time of
//! the same rounds, printed beside it, on the CPU engine and on the GPU
//! adapter, for the shapes (n, m, k, dropout before the masked input):
//! (1000, 1e5, 21, 10%), (100, 1e6, 21, 10%), (100, 1e5, 99, 10%).
//!
//! Besides criterion's figures it prints, per shape, the keystream bound: the unmask pass's
//! keystream bytes ÷ (single-thread ChaCha20 fill rate measured here × cores), and the ratio
//! of the measured unmask time to it. `cargo bench --bench round` (a filter narrows it, e.g.
//! `cargo bench --bench round -- 1000x`).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use rand_core::{Rng, SeedableRng};
use secagg::engine::{Backend, CpuEngine, GpuEngine};
use secagg::host::sim::{self, DropSchedule, SimConfig, SimReport};
use secagg::host::{RoundConfig, Stage};

const SHAPES: [(usize, usize, usize, f64); 3] = [
    (1000, 100_000, 21, 0.1),
    (100, 1_000_000, 21, 0.1),
    (100, 100_000, 99, 0.1),
];

fn config(n: usize, m: usize, k: usize, d: f64, seed: u64) -> SimConfig {
    let round = RoundConfig::builder(n, m)
        .neighbors(k)
        .round_id(seed)
        .build()
        .unwrap();
    let mut cfg = SimConfig::new(round);
    cfg.seed = seed;
    cfg.drops = DropSchedule::random(n, d, Stage::MaskedInput, seed);
    cfg
}

fn unmask_time(r: &SimReport) -> Duration {
    r.stages
        .iter()
        .find(|s| s.stage == Some(Stage::Unmasking))
        .map(|s| s.server_finish)
        .unwrap_or_default()
}

/// Single-thread ChaCha20 keystream fill rate (bytes/s), the unit of the bound.
fn fill_rate() -> f64 {
    let mut buf = vec![0u8; 64 << 20];
    let mut r = chacha20::ChaCha20Rng::from_seed([3; 32]);
    r.fill_bytes(&mut buf);
    let t0 = Instant::now();
    for _ in 0..3 {
        r.fill_bytes(&mut buf);
    }
    (3 * buf.len()) as f64 / t0.elapsed().as_secs_f64()
}

fn bench_backend<E: Backend + Copy>(c: &mut Criterion, name: &str, engine: E, rate: f64) {
    let cores = rayon::current_num_threads() as f64;
    for (n, m, k, d) in SHAPES {
        let shape = format!("{n}x{m}_k{k}_d{}", (d * 100.0) as u32);
        let mut g = c.benchmark_group(format!("round/{shape}"));
        // One round per sample: a round takes seconds, so flat sampling, one iteration each.
        g.sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_millis(1))
            .measurement_time(Duration::from_secs(1));
        let mut seed = 1u64;
        let mut reports: Vec<SimReport> = Vec::new();
        g.bench_function(format!("{name}/server_unmask"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    seed += 1;
                    let r = sim::run(&config(n, m, k, d, seed), engine, &|_| {}).unwrap();
                    assert!(r.check.as_ref().is_some_and(|c| c.passed()), "round failed");
                    total += unmask_time(&r);
                    reports.push(r);
                }
                total
            })
        });
        g.finish();
        let mut walls: Vec<f64> = reports.iter().map(|r| r.wall.as_secs_f64()).collect();
        walls.sort_by(f64::total_cmp);
        if !walls.is_empty() {
            eprintln!(
                "  {shape} {name}: whole round (clients and server in one process) over {} rounds: \
                 median {:.2} s, min {:.2} s, max {:.2} s",
                walls.len(),
                walls[walls.len() / 2],
                walls[0],
                walls[walls.len() - 1]
            );
        }
        if let Some(r) = reports.last() {
            let out = r.outcome.as_ref().unwrap();
            let bound = out.keystream_bytes() as f64 / (rate * cores);
            eprintln!(
                "  {shape} {name}: {} mask terms, {:.2} GB keystream; bound {:.3} s \
                 (fill {:.2} GB/s x {cores} cores); last unmask {:.3} s = {:.2}x bound",
                out.mask_terms,
                out.keystream_bytes() as f64 / 1e9,
                bound,
                rate / 1e9,
                unmask_time(r).as_secs_f64(),
                unmask_time(r).as_secs_f64() / bound
            );
        }
    }
}

fn rounds(c: &mut Criterion) {
    let rate = fill_rate();
    let cpu = Box::leak(Box::new(CpuEngine::new()));
    bench_backend(c, "cpu", &*cpu, rate);
    match GpuEngine::new() {
        Ok(g) => {
            eprintln!("gpu: {}", g.describe());
            let gpu: &'static GpuEngine = Box::leak(Box::new(g));
            bench_backend(c, "gpu", gpu, rate);
        }
        Err(e) => eprintln!("gpu round benches skipped: {e}"),
    }
}

criterion_group!(benches, rounds);
criterion_main!(benches);
