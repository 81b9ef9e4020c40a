//! The tokio transport: real rounds over TCP, driving the sans-IO client and server unchanged.
//!
//! Frames are length-delimited (a 4-byte big-endian length, then the frame), with a hard
//! maximum checked before anything is allocated: the limits follow from the round
//! configuration ([`crate::codec::Limits`]), and masked vectors travel in chunks of at most
//! 1 MiB, so no frame grows with m.
//!
//! A connection opens with the client's hello (its id, whether it carries a weight, and its
//! model layout); the server answers with the round configuration or a refusal. After that,
//! frames are protocol messages. Every stage has a deadline: a client that misses it, or whose
//! connection closes, is a dropout; a client that sends something malformed is dropped with a
//! logged reason; the round goes on for the others.
//!
//! Masked inputs are unpacked into a staging vector as their chunks arrive and added into the
//! server's single accumulator when the last chunk lands. At most
//! [`ServeOptions::max_concurrent_uploads`] uploads are staged at once (the others wait in
//! their sockets), so server memory is O(m), whatever n is.

mod client;
mod server;

use std::time::Duration;

use tokio_util::codec::LengthDelimitedCodec;

pub use client::{ClientOptions, ClientOutcome, run_client};
pub use server::{RoundReport, ServeOptions, StageTiming, serve, serve_with_layout};

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
}

/// The frame codec: 4-byte length prefix, frames above `max` refused before allocation.
pub fn frame_codec(max: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(max)
        .new_codec()
}
