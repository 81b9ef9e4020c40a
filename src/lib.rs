//! # secagg
//!
//! Secure aggregation for federated learning: the server learns the sum of many clients'
//! model updates and nothing about any single one, even when clients drop out mid-round.
//!
//! This facade re-exports the two workspace crates:
//!
//! * [`engine`] (`secagg-engine`): vectors mod 2^b and fused ChaCha mask expansion, on the CPU
//!   and on a GPU through wgpu, bit-identical;
//! * [`host`] (`secagg-host`): the SecAgg / SecAgg+ protocol, its cryptography and transport.

#![deny(missing_docs)]

pub use secagg_engine as engine;
pub use secagg_host as host;

pub mod model;
pub mod soak;
