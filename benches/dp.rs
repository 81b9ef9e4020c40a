//! Distributed DP on the client: the Skellam sampler's rate on one thread, at the noise
//! variances a round uses.
//!
//! `cargo bench --bench dp`; a filter narrows it, e.g. `cargo bench --bench dp -- skellam`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand_core::SeedableRng;
use secagg_host::RoundRng;
use secagg_host::dp::skellam::Skellam;

/// Draws per measured batch.
const BATCH: usize = 1 << 20;

fn sampler(c: &mut Criterion) {
    let mut g = c.benchmark_group("skellam");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.measurement_time(Duration::from_secs(4));
    g.sample_size(10);
    for variance in [10.0, 1.0e4, 1.0e6, 1.0e8, 4.0e9] {
        let noise = Skellam::new(variance).unwrap();
        let mut rng = RoundRng::from_seed([7; 32]);
        let mut out = vec![0u32; BATCH];
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("var{variance:e}")),
            &variance,
            |b, _| b.iter(|| noise.add_to(&mut rng, &mut out, u32::MAX)),
        );
    }
    g.finish();
}

criterion_group!(benches, sampler);
criterion_main!(benches);
