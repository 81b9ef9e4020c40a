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
//!   goes through a [`secagg_engine::Backend`]. [`client::journal`]: a client snapshotted
//!   to bytes and rebuilt from them, for transports that cannot keep it between messages.
//! * [`messages`] and [`codec`]: typed messages and their versioned wire format.
//! * [`quantize`]: `f32` updates to integers mod 2^b and back.
//! * [`dp`]: distributed differential privacy: clipping, rotation, rounding and Skellam
//!   noise under the masks, and the privacy accountant.
//! * [`sim`]: an in-memory round with a dropout schedule, used by tests, benches and the CLI
//!   (and, with feature `testing`, `sim::lab`: the attack laboratory).
//! * [`local`]: one real round in this process, from `f32` updates to their sum.
//! * `transport` (feature `tokio`): real rounds over TCP with TLS 1.3.
//!
//! ## Features
//!
//! | feature | adds | default |
//! |---------|------|---------|
//! | `tokio` | `transport`: rounds over TCP with TLS 1.3 (tokio, rustls with the ring provider), the client set up with `transport::Join` | no |
//! | `test-pki` | `transport::tls::TestPki`: a throwaway TLS CA and server certificate (rcgen), for tests and demonstrations; implies `tokio` | no |
//! | `testing` | surfaces for test suites, not deployments: `sim::lab` (the attack laboratory), `crypto::ClientSecrets`, and with `tokio` `transport::Misbehaviour` (`Join::misbehave`) | no |
//!
//! The engine comes without its GPU engine unless a crate in the build asks for
//! `secagg-engine/gpu`: the protocol never needs one.
//!
//! ## A round, sans IO
//!
//! The [`Client`] and the [`Server`] are state machines: you move their messages and keep
//! their time. Here the "network" is a loop; a real transport encodes each message with the
//! [`codec`] (see `examples/sans_io.rs`, and `transport` for TCP).
//!
//! ```
//! use std::time::Duration;
//! use secagg_engine::CpuEngine;
//! use secagg_host::identity::IdentityKey;
//! use secagg_host::{Client, ClientId, ClientIdentity, ClientPolicy, RoundConfig, Server};
//! use secagg_host::{ServerStatus, round_rng};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (n, now) = (3, Duration::ZERO);
//! let config = RoundConfig::builder(n, 4).build()?;
//! // Three clients of our own: no colluders to budget for (a deployment sets its own c).
//! let policy = ClientPolicy {
//!     min_cohort: 3,
//!     colluders: 0,
//!     ..ClientPolicy::curious_unauthenticated()
//! };
//! let mut server = Server::new(config.clone(), CpuEngine::new(), now);
//! let mut clients = Vec::new();
//! for i in 0..n as u32 {
//!     let mut rng = round_rng()?;
//!     let me = ClientIdentity::self_asserted(ClientId(i), IdentityKey::generate(&mut rng));
//!     let mut client = Client::new(me, config.clone(), policy.clone(), CpuEngine::new(), rng)?;
//!     client.set_input(&[0.5, -0.5, 0.25, 0.0], 1)?;
//!     server.handle_join(ClientId(i), now);
//!     clients.push(client);
//! }
//! while let ServerStatus::Running(_) = server.status() {
//!     for c in &mut clients {
//!         while let Some(msg) = c.poll_transmit() {
//!             server.handle_message(c.id(), msg, now);
//!         }
//!     }
//!     while let Some((to, msg)) = server.poll_transmit() {
//!         clients[to.0 as usize].handle_message(msg)?;
//!     }
//! }
//! let mean = server.output().ok_or("aborted")?.weighted_mean(&config);
//! assert!((mean[1] + 0.5).abs() < 1e-3);
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

pub mod client;
pub mod codec;
pub mod commit;
pub mod config;
mod credentials;
pub mod crypto;
pub mod dp;
pub mod error;
pub mod graph;
pub mod identity;
mod ids;
pub mod local;
pub mod merkle;
pub mod messages;
pub mod plan;
pub mod policy;
pub mod quantize;
pub mod selection;
pub mod server;
pub mod sim;
#[cfg(feature = "tokio")]
pub mod transport;
pub mod view;

pub use client::{Client, ClientError, ClientIdentity, ClientStatus, RoundRng, round_rng};
pub use config::{Quantization, RoundConfig};
pub use error::{
    AbortReason, BundleMismatch, CodecError, ConfigError, CryptoError, IdentityRefusal,
    LocalFailure, PeerMisbehaved, PointError, ProtocolError,
};
pub use ids::{ClientId, Stage};
pub use policy::{ClientPolicy, PolicyError, PrivacyFloor, Trust};
pub use quantize::{InputSource, QuantizingSource};
pub use server::{DropReason, DroppedClient, RoundOutput, Server, ServerEvent, ServerStatus};
