//! The masked vector on the wire, packed at b bits ([`secagg_engine::packed`]): whole, as a
//! client's MASKED_INPUT message, or as CHUNK frames of at most [`CHUNK_ELEMS`] elements (a
//! transport's upload, and in process a streamed input's pieces); and the packed runs a
//! server takes from them.

use super::{Limits, Reader, Writer, expect_tag, tag};
use crate::error::CodecError;
use crate::messages::{ClientMessage, PackedRun, PackedVector};

// The packed b-bit format is the engine's (`secagg_engine::packed`), where the kernels that
// unpack it live.
pub use secagg_engine::packed::{pack, packed_len};

/// Unpacks `out.len()` elements of `bits` each from `bytes` (which must be exactly
/// [`packed_len`] long; padding bits must be zero): [`secagg_engine::packed::unpack`], with
/// its errors as the codec reports them.
pub fn unpack(bytes: &[u8], bits: u32, out: &mut [u32]) -> Result<(), CodecError> {
    Ok(secagg_engine::packed::unpack(bytes, bits, out)?)
}

/// The bits after the last of `count` elements of `bits` each, in the last byte, are zero
/// (so that each packed vector has exactly one encoding):
/// [`secagg_engine::packed::check_padding`], with its error as the codec reports it.
pub fn check_padding(packed: &[u8], count: usize, bits: u32) -> Result<(), CodecError> {
    Ok(secagg_engine::packed::check_padding(packed, count, bits)?)
}

/// Elements per masked-input chunk: at most 256 KiB of packed data at 32 bits.
pub const CHUNK_ELEMS: usize = 1 << 16;
/// Fewest elements in any chunk but the last of a vector: an upload cannot be trickled in
/// tiny pieces to hold the server's staging memory.
pub const MIN_CHUNK_ELEMS: usize = 1 << 12;

/// A chunk frame up to its data: offset u32, count u32.
fn chunk_header(round: u64, offset: usize, count: usize) -> Writer {
    let mut w = Writer::new(tag::CHUNK, round);
    w.count(offset);
    w.count(count);
    w
}

/// A streamed input's piece, or one run of a packed masked vector: the same frame as a
/// transport's upload chunk.
pub fn encode_piece(round: u64, run: &PackedRun) -> Vec<u8> {
    let mut w = chunk_header(round, run.offset, run.count);
    w.bytes(&run.bytes);
    w.0
}

/// A whole masked vector (MASKED_INPUT) up to its data: b u8, count u32.
fn masked_input_header(round: u64, bits: u32, count: usize) -> Writer {
    let mut w = Writer::new(tag::MASKED_INPUT, round);
    w.u8(bits as u8);
    w.count(count);
    w
}

/// A whole masked vector, packed at `bits`.
pub(super) fn encode_masked_input(round: u64, values: &[u32], bits: u32) -> Vec<u8> {
    let mut w = masked_input_header(round, bits, values.len());
    pack(values, bits, &mut w.0);
    w.0
}

/// A packed vector as one whole masked vector.
pub(super) fn encode_packed_input(round: u64, p: &PackedVector) -> Vec<u8> {
    let mut w = masked_input_header(round, p.bits(), p.len());
    match p.runs() {
        [one] if one.offset == 0 && one.count == p.len() => w.bytes(&one.bytes),
        // Runs from chunks that each end on a byte: their bytes, one after the other.
        runs if runs[..runs.len().saturating_sub(1)]
            .iter()
            .all(|r| r.count * p.bits() as usize % 8 == 0) =>
        {
            runs.iter().for_each(|r| w.bytes(&r.bytes));
        }
        _ => {
            // Ragged runs: one packed run again (only logs and tests re-encode).
            let values: Vec<u64> = p.unpack_lanes().unwrap_or_default();
            pack(&values, p.bits(), &mut w.0);
        }
    }
    w.0
}

/// The body of a whole masked vector, checked against the round's width and length and
/// kept packed.
pub(super) fn read_masked_input(
    r: &mut Reader<'_>,
    limits: &Limits,
) -> Result<ClientMessage, CodecError> {
    let bits = u32::from(r.u8("bits")?);
    if bits != limits.bits {
        return Err(CodecError::Invalid {
            field: "bits",
            why: format!(
                "vector packed at {bits} bits, the round uses {}",
                limits.bits
            ),
        });
    }
    let count = r.u32("count")? as usize;
    if count != limits.vector_len {
        return Err(CodecError::Invalid {
            field: "count",
            why: format!("{count} elements, the round uses {}", limits.vector_len),
        });
    }
    let packed = r.take(packed_len(count, bits), "packed vector")?;
    check_padding(packed, count, bits)?;
    Ok(ClientMessage::PackedInput(PackedVector::from_checked_runs(
        bits,
        count,
        vec![PackedRun {
            offset: 0,
            count,
            bytes: packed.to_vec(),
        }],
    )))
}

/// Splits a masked vector into chunk frames of [`CHUNK_ELEMS`] elements (the last may be
/// shorter).
pub fn encode_masked_chunks(round: u64, values: &[u32], bits: u32) -> Vec<Vec<u8>> {
    encode_chunks_of(round, values, bits, CHUNK_ELEMS)
}

/// Splits a masked vector into chunk frames of `size` elements. Any size but
/// [`CHUNK_ELEMS`] is for tests: a receiver refuses chunks above it, and below
/// [`MIN_CHUNK_ELEMS`] unless they end the vector.
pub fn encode_chunks_of(round: u64, values: &[u32], bits: u32, size: usize) -> Vec<Vec<u8>> {
    values
        .chunks(size.max(1))
        .enumerate()
        .map(|(i, chunk)| {
            let mut w = chunk_header(round, i * size.max(1), chunk.len());
            pack(chunk, bits, &mut w.0);
            w.0
        })
        .collect()
}

/// Where a decoded chunk went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkPlacement {
    /// The round id of the frame.
    pub round: u64,
    /// First element.
    pub offset: usize,
    /// Elements.
    pub count: usize,
}

/// Decodes a chunk frame straight into `out` (the staging vector of `limits.vector_len`
/// elements), checking that it continues at `expect_offset` and stays inside the vector.
pub fn decode_chunk_into(
    bytes: &[u8],
    limits: &Limits,
    expect_offset: usize,
    out: &mut [u32],
) -> Result<ChunkPlacement, CodecError> {
    let (round, mut r) = expect_tag(bytes, tag::CHUNK)?;
    let offset = r.u32("chunk offset")? as usize;
    let count = r.u32("chunk count")? as usize;
    check_chunk(offset, count, expect_offset, limits)?;
    if out.len() < offset + count {
        return Err(CodecError::Invalid {
            field: "chunk count",
            why: format!(
                "{count} elements at {offset} overrun a staging vector of {}",
                out.len()
            ),
        });
    }
    let packed = r.take(packed_len(count, limits.bits), "chunk data")?;
    unpack(packed, limits.bits, &mut out[offset..offset + count])?;
    r.finish()?;
    Ok(ChunkPlacement {
        round,
        offset,
        count,
    })
}

/// A chunk continues the upload at `expect_offset`, holds 1 to CHUNK_ELEMS elements inside the
/// vector, and at least MIN_CHUNK_ELEMS unless it is the last.
fn check_chunk(
    offset: usize,
    count: usize,
    expect_offset: usize,
    limits: &Limits,
) -> Result<(), CodecError> {
    if offset != expect_offset {
        return Err(CodecError::Invalid {
            field: "chunk offset",
            why: format!("chunk starts at {offset}, expected {expect_offset}"),
        });
    }
    if count == 0 || count > CHUNK_ELEMS || offset + count > limits.vector_len {
        return Err(CodecError::Invalid {
            field: "chunk count",
            why: format!(
                "{count} elements at {offset} in a vector of {} (at most {CHUNK_ELEMS} per chunk)",
                limits.vector_len
            ),
        });
    }
    if count < MIN_CHUNK_ELEMS && offset + count != limits.vector_len {
        return Err(CodecError::Invalid {
            field: "chunk count",
            why: format!(
                "{count} elements at {offset}: only the last chunk of a vector may hold fewer than {MIN_CHUNK_ELEMS}"
            ),
        });
    }
    Ok(())
}

/// Checks a chunk frame as [`decode_chunk_into`] does and returns its placement and its data
/// still packed (padding bits checked), for a server that adds packed runs directly.
pub fn decode_chunk_packed(
    bytes: &[u8],
    limits: &Limits,
    expect_offset: usize,
) -> Result<(ChunkPlacement, PackedRun), CodecError> {
    read_chunk(bytes, limits, Some(expect_offset))
}

/// A chunk frame checked (at `expect_offset` when given) with its data still packed.
pub(super) fn read_chunk(
    bytes: &[u8],
    limits: &Limits,
    expect_offset: Option<usize>,
) -> Result<(ChunkPlacement, PackedRun), CodecError> {
    let (round, mut r) = expect_tag(bytes, tag::CHUNK)?;
    let offset = r.u32("chunk offset")? as usize;
    let count = r.u32("chunk count")? as usize;
    check_chunk(offset, count, expect_offset.unwrap_or(offset), limits)?;
    let packed = r.take(packed_len(count, limits.bits), "chunk data")?;
    check_padding(packed, count, limits.bits)?;
    r.finish()?;
    Ok((
        ChunkPlacement {
            round,
            offset,
            count,
        },
        PackedRun {
            offset,
            count,
            bytes: packed.to_vec(),
        },
    ))
}

/// The runs of a whole upload, in order and contiguous from 0 to `limits.vector_len`, as one
/// packed masked input.
pub fn packed_input(runs: Vec<PackedRun>, limits: &Limits) -> Result<ClientMessage, CodecError> {
    let mut next = 0;
    for r in &runs {
        if r.offset != next || r.bytes.len() != packed_len(r.count, limits.bits) {
            return Err(CodecError::Invalid {
                field: "chunk",
                why: format!(
                    "a run at {} of {} elements does not continue at {next}",
                    r.offset, r.count
                ),
            });
        }
        next += r.count;
    }
    if next != limits.vector_len {
        return Err(CodecError::Invalid {
            field: "chunk",
            why: format!(
                "{next} elements uploaded, the round uses {}",
                limits.vector_len
            ),
        });
    }
    Ok(ClientMessage::PackedInput(PackedVector::from_checked_runs(
        limits.bits,
        limits.vector_len,
        runs,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::tests::limits;
    use crate::codec::{decode_client, decode_client_or_piece, encode_client};
    use crate::messages::Envelope;

    #[test]
    fn pieces_decode_only_where_asked_for() {
        let l = limits();
        let mut bytes = Vec::new();
        pack(&[5u32, 6, 7, 8, 9], l.bits, &mut bytes);
        let env = Envelope {
            round: 4,
            message: ClientMessage::MaskedChunk(PackedRun {
                offset: 0,
                count: 5,
                bytes,
            }),
        };
        let frame = encode_client(&env, l.bits);
        // The same frame a transport's upload chunk is.
        assert_eq!(frame, encode_chunks_of(4, &[5, 6, 7, 8, 9], l.bits, 5)[0]);
        assert_eq!(decode_client_or_piece(&frame, &l).unwrap(), env);
        // A network-facing decoder never hands a piece to the server.
        assert_eq!(
            decode_client(&frame, &l).unwrap_err(),
            CodecError::UnknownTag(tag::CHUNK)
        );
        // A piece past the vector's end is refused.
        let long = encode_chunks_of(4, &[1; 6], l.bits, 6).remove(0);
        assert!(decode_client_or_piece(&long, &l).is_err());
    }

    #[test]
    fn a_masked_input_with_padding_bits_set_is_refused() {
        let l = limits();
        let env = Envelope {
            round: 1,
            message: ClientMessage::MaskedInput(vec![3; l.vector_len]),
        };
        let mut bytes = encode_client(&env, l.bits);
        assert!(decode_client(&bytes, &l).is_ok());
        assert_ne!(
            (l.vector_len * l.bits as usize) % 8,
            0,
            "the test needs padding bits"
        );
        if let Some(last) = bytes.last_mut() {
            *last |= 0x80;
        }
        assert!(decode_client(&bytes, &l).is_err());
    }

    #[test]
    fn packed_runs_must_cover_the_vector_in_order() {
        let l = limits();
        let run = |offset: usize, count: usize| PackedRun {
            offset,
            count,
            bytes: vec![0; packed_len(count, l.bits)],
        };
        let n = l.vector_len;
        assert!(packed_input(vec![run(0, n)], &l).is_ok());
        assert!(packed_input(vec![run(0, 2), run(2, n - 2)], &l).is_ok());
        // A gap, an overlap, a short vector, a run whose bytes do not match its count.
        assert!(packed_input(vec![run(0, 2), run(3, n - 3)], &l).is_err());
        assert!(packed_input(vec![run(0, 2), run(1, n - 1)], &l).is_err());
        assert!(packed_input(vec![run(0, n - 1)], &l).is_err());
        let mut bad = run(0, n);
        bad.bytes.push(0);
        assert!(packed_input(vec![bad], &l).is_err());
    }

    #[test]
    fn chunks_reassemble_and_are_checked() {
        let limits = Limits {
            max_clients: 4,
            max_neighbors: 3,
            vector_len: CHUNK_ELEMS + 5,
            bits: 13,
        };
        let values: Vec<u32> = (0..limits.vector_len as u32)
            .map(|i| i.wrapping_mul(7919) & 0x1fff)
            .collect();
        let frames = encode_masked_chunks(3, &values, 13);
        assert_eq!(frames.len(), 2);
        let mut out = vec![0u32; limits.vector_len];
        let mut at = 0;
        for f in &frames {
            let p = decode_chunk_into(f, &limits, at, &mut out).unwrap();
            assert_eq!(p.round, 3);
            at += p.count;
        }
        assert_eq!(out, values);
        // Out of order, or past the end: refused.
        assert!(decode_chunk_into(&frames[1], &limits, 0, &mut out).is_err());
        let short = Limits {
            vector_len: 10,
            ..limits
        };
        assert!(decode_chunk_into(&frames[0], &short, 0, &mut out).is_err());
        // A chunk below the minimum is refused unless it ends the vector.
        let small = Limits {
            vector_len: 3 * MIN_CHUNK_ELEMS,
            ..limits
        };
        let v = vec![1u32; small.vector_len];
        let mut w = Writer::new(tag::CHUNK, 3);
        w.count(0);
        w.count(MIN_CHUNK_ELEMS - 1);
        pack(&v[..MIN_CHUNK_ELEMS - 1], 13, &mut w.0);
        assert!(decode_chunk_into(&w.0, &small, 0, &mut out).is_err());
        let mut w = Writer::new(tag::CHUNK, 3);
        w.count(2 * MIN_CHUNK_ELEMS + 1);
        w.count(MIN_CHUNK_ELEMS - 1);
        pack(&v[..MIN_CHUNK_ELEMS - 1], 13, &mut w.0);
        let mut out = vec![0u32; small.vector_len];
        assert!(decode_chunk_into(&w.0, &small, 2 * MIN_CHUNK_ELEMS + 1, &mut out).is_ok());
    }
}
