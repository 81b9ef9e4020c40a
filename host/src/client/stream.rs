//! A masked input sent a piece at a time: the client holds one batch of its input, never the
//! whole vector. Each batch is read from the [`InputSource`], checked, masked in one engine
//! pass at its offset in the keystream (so the pieces together equal the whole vector
//! masked at once), packed at b bits and queued as wire-sized pieces.

use std::collections::VecDeque;

use secagg_engine::{Backend, MaskTerm};
use zeroize::Zeroize;

use crate::codec::{self, CHUNK_ELEMS};
use crate::config::RoundConfig;
use crate::error::{LocalFailure, ProtocolError};
use crate::messages::{ClientMessage, Envelope, PackedRun};
use crate::quantize::InputSource;

/// Elements masked per engine pass: 16 wire pieces, 4 MiB of `u32`.
const BATCH: usize = 16 * CHUNK_ELEMS;

/// The rest of a streamed masked input.
pub(super) struct MaskStream {
    /// The self mask and the pairwise masks (their seeds are zeroized on drop).
    terms: Vec<MaskTerm>,
    source: Box<dyn InputSource>,
    at: usize,
    len: usize,
}

impl MaskStream {
    pub(super) fn new(terms: Vec<MaskTerm>, source: Box<dyn InputSource>, len: usize) -> Self {
        Self {
            terms,
            source,
            at: 0,
            len,
        }
    }

    /// Masks the next batch and queues its pieces; `Ok(true)` once the last is queued.
    pub(super) fn next<E: Backend>(
        &mut self,
        engine: &E,
        config: &RoundConfig,
        outbox: &mut VecDeque<Envelope<ClientMessage>>,
    ) -> Result<bool, ProtocolError> {
        let count = BATCH.min(self.len - self.at);
        let mut values = vec![0u32; count];
        let masked = self.mask(engine, config, &mut values);
        if let Err(e) = masked {
            values.zeroize();
            return Err(e);
        }
        let bits = config.modulus().bits();
        for (i, piece) in values.chunks(CHUNK_ELEMS).enumerate() {
            let mut bytes = Vec::with_capacity(codec::packed_len(piece.len(), bits));
            codec::pack(piece, bits, &mut bytes);
            outbox.push_back(Envelope {
                round: config.round_id(),
                message: ClientMessage::MaskedChunk(PackedRun {
                    offset: self.at + i * CHUNK_ELEMS,
                    count: piece.len(),
                    bytes,
                }),
            });
        }
        self.at += count;
        Ok(self.at == self.len)
    }

    fn mask<E: Backend>(
        &mut self,
        engine: &E,
        config: &RoundConfig,
        values: &mut [u32],
    ) -> Result<(), ProtocolError> {
        self.source
            .fill(values)
            .map_err(|e| ProtocolError::Local(LocalFailure::Input(e.to_string())))?;
        let bits = config.modulus().bits();
        let top = config.modulus().mask_u32();
        if let Some(i) = values.iter().position(|&v| v > top) {
            return Err(ProtocolError::Local(LocalFailure::InputOutOfRange {
                index: self.at + i,
                value: values[i],
                bits,
            }));
        }
        engine
            .apply_masks(
                values,
                self.at as u64,
                &self.terms,
                config.prg(),
                config.modulus(),
            )
            .map_err(|e| ProtocolError::Local(LocalFailure::Masking(e.to_string())))
    }
}
