//! The tokio transport: real rounds over TCP (TLS 1.3 by default), driving the sans-IO client
//! and server unchanged.
//!
//! Frames are length-delimited (a 4-byte big-endian length, then the frame), with a hard
//! maximum checked before anything is allocated: the limits follow from the round
//! configuration ([`crate::codec::Limits`]: per-neighbour lists grow with k, not n), and
//! masked vectors travel in chunks of at most 256 KiB, so no frame grows with m.
//!
//! A connection opens with TLS, then the server's challenge (the round id and a fresh
//! nonce). The client answers with its hello: its id, its model's shape, its credential and
//! a signature over the challenge and the TLS session. The server checks all of it before the
//! client takes a place in the round, and answers with the round configuration or a refusal
//! that says why. After that, frames are protocol messages. Every stage has a deadline: a
//! client that misses it, or whose connection closes, is a dropout; a client that sends
//! something malformed is dropped with a logged reason; the round goes on for the others.
//!
//! Masked inputs stay packed as their chunks arrive and are added into the server's single
//! accumulator once the last chunk lands (a partial input could never be taken out of the
//! sum): staged in memory up to [`ServeOptions::max_staged_in_memory`], in an unlinked
//! temporary file beyond. At most [`ServeOptions::max_concurrent_uploads`] uploads are
//! staged at once, each only for a client the round is waiting for and each within a
//! deadline, so server memory is the accumulator plus a few chunks, whatever n is, and no
//! client can hold the others up. A client streams its update ([`ClientInput::Stream`]) so
//! that it never holds a whole large model either.
//!
//! ## Example
//!
//! A server and three clients over loopback, in plaintext (asked for by name on both sides)
//! and honest-but-curious for brevity, with no colluders to budget for: a deployment gives
//! the server a TLS certificate and a CA ([`ServeOptions::tls`], [`ServeOptions::ca`]) and
//! each client its certificate, the CA's name and its colluder budget
//! (`examples/tcp_round.rs` does).
//!
//! ```
//! use secagg_engine::CpuEngine;
//! use secagg_host::identity::IdentityKey;
//! use secagg_host::transport::{ClientOutcome, Join, ServeOptions, serve};
//! use secagg_host::{ClientId, ClientIdentity, ClientPolicy, RoundConfig, round_rng};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = RoundConfig::builder(3, 100).build()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let options = ServeOptions { insecure_plaintext: true, ..ServeOptions::default() };
//! let server = tokio::spawn(serve(listener, config, CpuEngine::new(), options));
//!
//! let policy = ClientPolicy {
//!     min_cohort: 3,
//!     colluders: 0,
//!     ..ClientPolicy::curious_unauthenticated()
//! };
//! let mut clients = Vec::new();
//! for i in 0..3 {
//!     let mut rng = round_rng()?;
//!     let me = ClientIdentity::self_asserted(ClientId(i), IdentityKey::generate(&mut rng));
//!     let join = Join::new(me, policy.clone(), [0; 32]).insecure_plaintext().rng(rng);
//!     let update = vec![0.25f32; 100];
//!     clients.push(tokio::spawn(async move { join.run(addr, &update).await }));
//! }
//! for client in clients {
//!     assert_eq!(client.await??, ClientOutcome::Completed { included: 3 });
//! }
//! let report = server.await??;
//! assert_eq!(report.outcome?.included.len(), 3);
//! # Ok(())
//! # }
//! ```

mod client;
mod join;
#[cfg(feature = "testing")]
mod misbehave;
mod server;
pub mod tls;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::LengthDelimitedCodec;

pub use client::{ClientInput, ClientOutcome, ReadUpdate};
pub use join::Join;
#[cfg(feature = "testing")]
pub use misbehave::Misbehaviour;
pub use server::{MAX_REFUSAL_DETAILS, Refusal, RoundReport, ServeOptions, StageTiming, serve};

use crate::error::{CodecError, ProtocolError};

/// What can go wrong on the wire, as opposed to inside the protocol.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// A socket error.
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    /// A frame that did not decode.
    #[error("malformed frame: {0}")]
    Codec(#[from] CodecError),
    /// The peer broke the protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The server refused the connection.
    #[error("server refused the connection: {0}")]
    Rejected(String),
    /// Nothing arrived in time.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, &'static str),
    /// The connection closed before the round ended.
    #[error("connection closed by the peer while waiting for {0}")]
    Closed(&'static str),
    /// The client's input does not fit the round (a wrong number of parameters, a NaN, a
    /// weight out of range).
    #[error("input does not fit the round: {0}")]
    Input(crate::ClientError),
    /// The client refused the round the server announced: match the inner error for why
    /// (`ClientError::Policy` with the failed bound, `ClientError::Identity`).
    #[error("refused the round: {0}")]
    Refused(crate::ClientError),
    /// The server's welcome is for another round than its challenge.
    #[error("the welcome is for round {welcome}, the challenge was for round {challenge}")]
    WrongRound {
        /// The round the challenge named.
        challenge: u64,
        /// The round the welcome described.
        welcome: u64,
    },
    /// TLS could not be set up or the handshake failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// Neither TLS nor plaintext was chosen: a connection without TLS must be asked for
    /// (`insecure_plaintext`), never fallen into.
    #[error(
        "no TLS configured: set the options' `tls`, or `insecure_plaintext: true` to run over plaintext TCP on purpose"
    )]
    NoTls,
}

/// A fresh [`crate::round_rng`]; the system's randomness failing is an I/O error here.
pub(crate) fn system_rng() -> Result<crate::RoundRng, TransportError> {
    crate::round_rng().map_err(|e| TransportError::Io(std::io::Error::other(e.to_string())))
}

/// A byte stream: a TCP socket, or TLS over one.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Writes one frame: its 4-byte big-endian length, then the frame.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    wr: &mut W,
    frame: &[u8],
) -> std::io::Result<()> {
    let len = u32::try_from(frame.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too long"))?;
    wr.write_all(&len.to_be_bytes()).await?;
    wr.write_all(frame).await?;
    wr.flush().await
}

/// The frame codec: 4-byte length prefix, frames above `max` refused before allocation.
pub fn frame_codec(max: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(max)
        .new_codec()
}
