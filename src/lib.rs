//! # secagg
//!
//! Secure aggregation for federated learning: the server learns the sum of many clients'
//! model updates and nothing about any single one, even when clients drop out mid-round.
//! SecAgg (Bonawitz et al., CCS 2017) and SecAgg+ (Bell et al., CCS 2020), with the server's
//! mask expansion and sums on a GPU through wgpu or on the CPU, bit-identical.
//!
//! ## A round in fifteen lines
//!
//! ```
//! use secagg::host::{ClientId, RoundConfig, local::aggregate};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Five clients, each with an update of 1,000 parameters in [-1, 1].
//! let updates: Vec<Vec<f32>> = (0..5).map(|i| vec![0.1 * i as f32; 1000]).collect();
//! let config = RoundConfig::builder(5, 1000).build()?;
//!
//! // A real round in this process: every client masks its update, client 4 drops out
//! // after dealing its shares, and the server recovers the sum of the other four.
//! let out = aggregate(&config, &updates, None, &[ClientId(4)])?;
//! let mean = out.weighted_mean(&config);
//! assert_eq!(out.included.len(), 4);
//! assert!((mean[0] - 0.15).abs() < 1e-3); // (0 + 0.1 + 0.2 + 0.3) / 4
//! # Ok(())
//! # }
//! ```
//!
//! ## Where to go next
//!
//! * [`host`] (`secagg-host`): the protocol. [`host::RoundConfig`] and the planner
//!   ([`host::plan`]) choose a round; [`host::Client`] and [`host::Server`] are sans-IO state
//!   machines you drive with your own transport (`examples/sans_io.rs`);
//!   [`host::transport`] runs them over TCP with TLS 1.3 and enrolled identities
//!   (`examples/tcp_round.rs`); [`host::local::aggregate`] runs a round in memory.
//! * [`engine`] (`secagg-engine`): vectors mod 2^b and fused ChaCha mask expansion, on the
//!   CPU and on a GPU through wgpu, bit-identical (`examples/engine.rs`).
//! * [`model`]: `.npy` and `.safetensors` update files, read whole or streamed.
//! * [`process`]: peak memory and CPU time of this process, for reports.
//!
//! ## Features
//!
//! | feature | adds | default |
//! |---------|------|---------|
//! | `cli` | the `secagg` binary (clap, indicatif, env_logger, toml) | yes |
//! | `gpu` | the GPU engine, `engine::GpuEngine` (wgpu); without it `--backend gpu` says the build has no GPU support and `auto` is the CPU | yes |
//! | `test-pki` | throwaway TLS certificates (rcgen): `secagg tls new`, `host::transport::tls::TestPki` | yes |
//! | `soak` | `secagg soak`, the attack soak: implies `cli` and `test-pki`, and secagg-host's `testing` (its rogue clients break the rules on purpose) | no |
//!
//! The library alone, with no command line and no GPU: `default-features = false`.

#![deny(missing_docs)]

pub use secagg_engine as engine;
pub use secagg_host as host;

pub mod model;
pub mod process;
