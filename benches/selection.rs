//! The cost of verifiable self-selection: one RFC 9381 VRF proof (what a client computes to
//! learn whether it is eligible, once per epoch) and one verification (what the server does
//! for every member, and every client for every member of its round), and the batch check of
//! 1,000 members' CA certificates that every client makes in any enrolled round.
//! `cargo bench --bench selection`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use secagg::host::ClientId;
use secagg::host::crypto::vrf;
use secagg::host::identity::{CaKey, IdentityKey, verify_batch};
use secagg::host::selection::{Selection, draw, seed_input};

fn selection(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let ca = CaKey::generate(&mut rng);
    let key = IdentityKey::generate(&mut rng);
    let secret = key.to_secret_bytes();
    let alpha = seed_input(&ca.public(), 7);
    let (ticket, _) = draw(&key, &ca.public(), 7).unwrap();
    let public = key.public();
    let everyone = Selection::from_threshold(7, u64::MAX).unwrap();
    c.bench_function("vrf_prove", |b| b.iter(|| vrf::prove(&secret, &alpha)));
    c.bench_function("vrf_verify", |b| {
        b.iter(|| vrf::verify(&public.to_bytes(), &alpha, &ticket))
    });
    c.bench_function("ticket_check", |b| {
        b.iter(|| everyone.check(&ca.public(), &public, &ticket))
    });
    let certs: Vec<_> = (0..1000u32)
        .map(|i| ca.issue(ClientId(i), &IdentityKey::generate(&mut rng).public()))
        .collect();
    let items: Vec<_> = certs.iter().map(|c| c.signed_item(&ca.public())).collect();
    let mut group = c.benchmark_group("certificates");
    group.sample_size(20);
    group.bench_function("batch_verify_1000", |b| b.iter(|| verify_batch(&items)));
    group.finish();
}

criterion_group!(benches, selection);
criterion_main!(benches);
