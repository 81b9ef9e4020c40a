//! `secagg bench` from outside: its own check of three result slices against an independent
//! computation must pass on the CPU and on the GPU engine (lavapipe in CI), for a width whose
//! packed elements straddle bytes, and on sharded engines (two CPU shards against one, a GPU
//! and a CPU shard against the GPU alone); count notation and bad arguments.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use secagg::engine::testing;

mod support;
use support::BIN;

fn bench(test: &str, backend: &str, extra: &[&str]) -> serde_json::Value {
    let seed = testing::test_seed(test);
    let out = Command::new(BIN)
        .args([
            "bench",
            "--backend",
            backend,
            "--clients",
            "6",
            "--params",
            "2.5e5",
        ])
        .args(["--neighbors", "4", "--dropout", "0.34", "--json"])
        .args(["--seed", &seed.to_string()])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{test}: exit {:?}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn bench_on_the_cpu_checks_its_result() {
    let r = bench("bench_cpu", "cpu", &["--bits", "17"]);
    assert_eq!(r["check_passed"], true);
    assert_eq!(r["params"], 250_000);
    assert_eq!(r["dropped"], 2);
    // 4 survivors' self masks plus each dropped client's surviving ring neighbours.
    assert!(r["mask_terms"].as_u64().unwrap() > 4);
    assert!(r["ingest_gb_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_on_the_gpu_checks_its_result() {
    if testing::shared_gpu("bench_gpu").is_none() {
        return;
    }
    let r = bench("bench_gpu", "gpu", &["--bits", "26", "--prg", "chacha12"]);
    assert_eq!(r["check_passed"], true);
    assert!(r["engine"].as_str().unwrap().starts_with("gpu"));
}

#[test]
fn bench_on_two_cpu_shards_against_one() {
    let r = bench(
        "bench_cpu_shards",
        "cpu,cpu",
        &["--against", "cpu", "--bits", "13"],
    );
    assert_eq!(r["check_passed"], true);
    assert!(r["engine"].as_str().unwrap().starts_with("2 shards"));
    assert_eq!(r["against"]["check_passed"], true);
    assert!(r["against"]["engine"].as_str().unwrap().starts_with("cpu"));
    for what in ["ingest", "unmask", "read_out", "accumulator_setup"] {
        assert!(r["speedup"][what].as_f64().unwrap() > 0.0, "{what}");
    }
}

#[test]
fn bench_on_gpu_and_cpu_shards() {
    if testing::shared_gpu("bench_gpu_shards").is_none() {
        return;
    }
    let r = bench(
        "bench_gpu_shards",
        "gpu,cpu",
        &["--against", "gpu", "--bits", "31", "--prg", "chacha8"],
    );
    assert_eq!(r["check_passed"], true);
    assert_eq!(r["against"]["check_passed"], true);
    assert!(r["engine"].as_str().unwrap().contains("| cpu"));
}

#[test]
fn bench_refuses_unknown_backends() {
    // Not a backend list: refused while parsing (usage, exit 2).
    for bad in ["auto,cpu", "gpu:x", "cpu,,cpu"] {
        let out = Command::new(BIN)
            .args(["bench", "--backend", bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "--backend {bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("gpu:N"), "--backend {bad}: {err}");
    }
    // An adapter index past wgpu's list: the error says so.
    let out = Command::new(BIN)
        .args(["bench", "--backend", "cpu,gpu:99", "--params", "1000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--backend cpu,gpu:99") && err.contains("no adapter 99"),
        "{err}"
    );
}

#[test]
fn bench_refuses_bad_counts() {
    for bad in ["1.5", "1e-3", "many"] {
        let out = Command::new(BIN)
            .args(["bench", "--backend", "cpu", "--params", bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "--params {bad}");
    }
}
