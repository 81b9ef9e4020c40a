//! Clients that break the upload rules on purpose, for tests of the server's defences
//! (feature `testing`): set with [`super::Join::misbehave`].

use std::time::Duration;

use bytes::Bytes;

use super::TransportError;
use super::client::send_chunks;
use crate::codec;

/// Ways a client can break the upload rules, for tests of the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Send the masked vector in chunks of this many elements (below the minimum).
    TinyChunks(usize),
    /// Send the first chunk (of the minimum size), then nothing more for this long before the
    /// rest.
    StallUpload(Duration),
    /// Send the masked vector twice.
    UploadTwice,
    /// Wait this long before sending the masked vector, then send it as an honest client
    /// does (a slow client, not a broken rule).
    LateUpload(Duration),
}

/// Sends a masked vector as `how` says instead of as the rules do.
pub(super) async fn upload<S>(
    sink: &mut S,
    round: u64,
    values: &[u32],
    bits: u32,
    how: Misbehaviour,
) -> Result<(), TransportError>
where
    S: futures_util::Sink<Bytes, Error = std::io::Error> + Unpin,
{
    match how {
        Misbehaviour::TinyChunks(n) => {
            send_chunks(sink, codec::encode_chunks_of(round, values, bits, n.max(1))).await
        }
        Misbehaviour::StallUpload(pause) => {
            // The smallest legal chunks, so that there is a second one to stall before.
            let mut chunks = codec::encode_chunks_of(round, values, bits, codec::MIN_CHUNK_ELEMS);
            let rest = chunks.split_off(chunks.len().min(1));
            send_chunks(sink, chunks).await?;
            if !rest.is_empty() {
                tokio::time::sleep(pause).await;
            }
            send_chunks(sink, rest).await
        }
        Misbehaviour::UploadTwice => {
            let chunks = codec::encode_masked_chunks(round, values, bits);
            send_chunks(sink, chunks.clone()).await?;
            send_chunks(sink, chunks).await
        }
        Misbehaviour::LateUpload(wait) => {
            tokio::time::sleep(wait).await;
            send_chunks(sink, codec::encode_masked_chunks(round, values, bits)).await
        }
    }
}
