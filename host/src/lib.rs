//! # secagg-host
//!
//! The SecAgg (Bonawitz et al., CCS 2017) and SecAgg+ (Bell et al., CCS 2020) protocols:
//! n clients, one server; the server learns Σ x_u over the clients that made it through and
//! nothing else, even when clients drop out at any stage.
//!
//! * [`config`]: a validated [`RoundConfig`], and [`plan`], the SecAgg+ parameter planner.
//! * [`crypto`]: X25519, Ed25519 mask keys, HKDF-SHA256, ChaCha20-Poly1305 share bundles,
//!   Shamir sharing with Feldman-style share points.
//! * [`identity`]: long-term Ed25519 identities, enrollment certificates from a deployment CA.
//! * [`policy`]: a client's own floors ([`ClientPolicy`]), checked against every round.
//! * [`graph`]: the neighbour graph every party derives from the session.
//! * [`client`] and [`server`]: sans-IO state machines, one file per round. Time and
//!   randomness are passed in; no sockets, no clocks, no GPU API. The server's vector work
//!   goes through a [`secagg_engine::Backend`].
//! * [`messages`] and [`codec`]: typed messages and their versioned wire format.
//! * [`quantize`]: `f32` updates to integers mod 2^b and back.
//! * [`sim`]: an in-memory round with a dropout schedule, used by tests, benches and the CLI.
//! * `transport` (feature `tokio`): real rounds over TCP.

#![deny(missing_docs)]

pub mod client;
pub mod codec;
pub mod config;
mod credentials;
pub mod crypto;
pub mod error;
pub mod graph;
pub mod identity;
mod ids;
pub mod messages;
pub mod plan;
pub mod policy;
pub mod local;
pub mod quantize;
pub mod server;
pub mod sim;
#[cfg(feature = "tokio")]
pub mod transport;

pub use client::{Client, ClientError, ClientIdentity, ClientStatus, RoundRng, round_rng};
pub use config::{Quantization, RoundConfig};
pub use error::{CodecError, ConfigError, CryptoError, ProtocolError};
pub use ids::{ClientId, Stage};
pub use policy::{ClientPolicy, PolicyError, Trust};
pub use quantize::{InputSource, QuantizingSource};
pub use server::{DropReason, DroppedClient, RoundOutput, Server, ServerEvent, ServerStatus};
