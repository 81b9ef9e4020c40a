//! Whole rounds through the simulator: server unmask time (rebuilding the secrets and removing
//! every mask in one engine pass), measured by criterion, and the whole-round wall time of
//! the same rounds, printed beside it, on the CPU engine and on the GPU
//! adapter, for the shapes (n, m, k, dropout before the masked input):
//! (1000, 1e5, 21, 10%), (100, 1e6, 21, 10%), (100, 1e5, 99, 10%), with the threshold the
//! builder derives for k, under the simulator's parameter-free client policy; and
//! (1000, 1e5, k, 10%) with the (k, t) the planner chooses against a semi-malicious server
//! (5% corrupted clients, 10% dropout), under the clients' default policy
//! ([`ClientPolicy::enrolled`]), named `..._semi-malicious`. That row is slow: about two
//! minutes per whole round on two cores (k = 78, t = 52: the clients' Feldman share checks
//! dominate), so its ten samples take about twenty minutes per engine.
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
use secagg::host::plan::{Adversary, PlanRequest, plan};
use secagg::host::sim::{self, DropSchedule, SimConfig, SimReport};
use secagg::host::{ClientPolicy, RoundConfig, Stage};

/// One benchmarked round shape.
#[derive(Clone, Copy)]
struct Shape {
    n: usize,
    m: usize,
    k: usize,
    /// The threshold; `None` lets the round builder derive it from k.
    t: Option<usize>,
    /// Fraction of clients dropping before their masked input.
    d: f64,
    /// Clients hold the default policy against a semi-malicious server (else the simulator's
    /// parameter-free one).
    semi_malicious: bool,
}

impl Shape {
    const fn fixed(n: usize, m: usize, k: usize, d: f64) -> Self {
        Self {
            n,
            m,
            k,
            t: None,
            d,
            semi_malicious: false,
        }
    }

    /// The planner's (k, t) against a semi-malicious server for n clients and dropout d.
    fn semi_malicious(n: usize, m: usize, d: f64) -> Self {
        let p = plan(&PlanRequest {
            clients: n,
            dropout_rate: d,
            adversary: Adversary::SemiMalicious,
            ..PlanRequest::default()
        })
        .unwrap();
        Self {
            n,
            m,
            k: p.neighbors,
            t: Some(p.threshold),
            d,
            semi_malicious: true,
        }
    }

    fn name(&self) -> String {
        let Self { n, m, k, d, .. } = *self;
        let base = format!("{n}x{m}_k{k}_d{}", (d * 100.0) as u32);
        match self.t {
            Some(t) if self.semi_malicious => format!("{base}_t{t}_semi-malicious"),
            _ => base,
        }
    }

    fn config(&self, seed: u64) -> SimConfig {
        let mut b = RoundConfig::builder(self.n, self.m)
            .neighbors(self.k)
            .round_id(seed);
        if let Some(t) = self.t {
            b = b.threshold(t);
        }
        let mut cfg = SimConfig::new(b.build().unwrap());
        cfg.seed = seed;
        if self.semi_malicious {
            // The simulator replaces the trust with its own CA.
            cfg.policy = ClientPolicy::enrolled(sim::sim_ca(seed).public());
        }
        cfg.drops = DropSchedule::random(self.n, self.d, Stage::MaskedInput, seed);
        cfg
    }
}

fn shapes() -> [Shape; 4] {
    [
        Shape::fixed(1000, 100_000, 21, 0.1),
        Shape::semi_malicious(1000, 100_000, 0.1),
        Shape::fixed(100, 1_000_000, 21, 0.1),
        Shape::fixed(100, 100_000, 99, 0.1),
    ]
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

fn bench_backend<E: secagg::engine::Accumulate + Copy>(
    c: &mut Criterion,
    name: &str,
    engine: E,
    rate: f64,
) {
    let cores = rayon::current_num_threads() as f64;
    for sh in shapes() {
        let shape = sh.name();
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
                    let r = sim::run(&sh.config(seed), engine, &|_| {}).unwrap();
                    assert!(
                        r.check.as_ref().is_some_and(|c| c.passed()),
                        "{shape} {name} seed {seed}: round failed: {:?}, check {:?}",
                        r.outcome.as_ref().map(|o| o.mask_terms),
                        r.check
                    );
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
