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
//! Masked inputs are unpacked into a staging vector as their chunks arrive and added into the
//! server's single accumulator when the last chunk lands. At most
//! [`ServeOptions::max_concurrent_uploads`] uploads are staged at once, each only for a
//! client the round is waiting for and each within a deadline, so server memory is O(m),
//! whatever n is, and no client can hold the others up.

mod client;
mod server;
pub mod tls;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::LengthDelimitedCodec;

pub use client::{ClientInput, ClientOptions, ClientOutcome, Misbehaviour, ReadUpdate, run_client};
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
    /// The client's input does not fit the round.
    #[error("input does not fit the round: {0}")]
    Input(String),
    /// The client refused the round the server announced (its policy, or its identity).
    #[error("refused the round: {0}")]
    Refused(String),
    /// TLS could not be set up or the handshake failed.
    #[error("TLS: {0}")]
    Tls(String),
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
