//! Support for test suites: printed random seeds and GPU engines that fail or skip by policy
//! (feature `testing`).
//!
//! Used by this workspace's tests and benches; embedders may use it for their own. Every
//! randomized test draws its inputs from [`test_seed`], which prints the seed so that a
//! failure can be replayed with `SECAGG_TEST_SEED=<seed>`.
//!
//! GPU tests get their engine from [`shared_gpu`], [`gpu_or_skip`] or (GPU shards among
//! others) [`sharded_or_skip`]. When no adapter opens,
//! they skip with a message, unless `SECAGG_REQUIRE_GPU=1` is set: then they panic, so that
//! CI cannot pass with the GPU path silently untested.

#![allow(clippy::panic)]

use std::hash::{BuildHasher, Hasher};
#[cfg(feature = "gpu")]
use std::sync::OnceLock;

use crate::{Backend, BackendSpec, Device, Engine, Sharded};
#[cfg(feature = "gpu")]
use crate::{GpuEngine, GpuOptions};

/// The seed for one randomized test: `SECAGG_TEST_SEED` if set, otherwise fresh randomness.
/// Printed to stderr with the test's name (cargo shows it when the test fails).
pub fn test_seed(test: &str) -> u64 {
    let seed = match std::env::var("SECAGG_TEST_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("SECAGG_TEST_SEED must be a u64, got {s:?}")),
        Err(_) => {
            // std's hasher keys are drawn from the OS RNG for every RandomState.
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write(test.as_bytes());
            h.finish()
        }
    };
    eprintln!("[{test}] seed {seed} (replay with SECAGG_TEST_SEED={seed})");
    seed
}

/// Whether `SECAGG_REQUIRE_GPU=1` is set.
pub fn gpu_required() -> bool {
    std::env::var("SECAGG_REQUIRE_GPU").is_ok_and(|v| v.trim() == "1")
}

/// A GPU engine with `options`, or `None` (with a "skipped" line) when no adapter opens.
///
/// # Panics
/// When no adapter opens and `SECAGG_REQUIRE_GPU=1` is set.
#[cfg(feature = "gpu")]
pub fn gpu_or_skip(test: &str, options: GpuOptions) -> Option<GpuEngine> {
    match GpuEngine::with_options(options) {
        Ok(engine) => {
            eprintln!("[{test}] on {}", engine.describe());
            Some(engine)
        }
        Err(e) => no_gpu(test, &e.to_string()),
    }
}

fn no_gpu<T>(test: &str, why: &str) -> Option<T> {
    if gpu_required() {
        panic!("[{test}] SECAGG_REQUIRE_GPU=1 but no GPU engine: {why}");
    }
    eprintln!("[{test}] skipped: no GPU adapter ({why}); set SECAGG_REQUIRE_GPU=1 to fail instead");
    None
}

/// One default-options GPU engine per process, shared by every test that asks.
///
/// # Panics
/// When no adapter opens and `SECAGG_REQUIRE_GPU=1` is set.
#[cfg(feature = "gpu")]
pub fn shared_gpu(test: &str) -> Option<&'static GpuEngine> {
    static GPU: OnceLock<Result<GpuEngine, String>> = OnceLock::new();
    match GPU.get_or_init(|| GpuEngine::new().map_err(|e| e.to_string())) {
        Ok(engine) => {
            eprintln!("[{test}] on {}", engine.describe());
            Some(engine)
        }
        Err(why) => no_gpu(test, why),
    }
}

/// A sharded engine of `devices` (in order) sized by `weights`, or `None` (with a "skipped"
/// line) when a GPU among them does not open: every combination of CPU and GPU shards runs
/// the same tests.
///
/// # Panics
/// When a GPU does not open and `SECAGG_REQUIRE_GPU=1` is set, or when `weights` do not
/// match `devices`.
pub fn sharded_or_skip(test: &str, devices: &[Device], weights: &[u32]) -> Option<Sharded<Engine>> {
    let mut shards = Vec::with_capacity(devices.len());
    for &d in devices {
        match Engine::open(&BackendSpec::Devices(vec![d])) {
            Ok(engine) => shards.push(engine),
            Err(e) => return no_gpu(test, &format!("{d}: {e}")),
        }
    }
    let sharded = Sharded::with_weights(shards, weights)
        .unwrap_or_else(|e| panic!("[{test}] {devices:?} weighted {weights:?}: {e}"));
    eprintln!("[{test}] on {}", sharded.describe());
    Some(sharded)
}
