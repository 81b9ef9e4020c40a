//! The wire format, version 4 ([`VERSION`]): one explicit binary layout per message.
//!
//! ```text
//! version u8 (= 4) | tag u8 | round u64 | body
//! ```
//! All integers are little-endian. Every count is checked against [`Limits`] and against the
//! bytes actually present before anything is allocated; decoding rejects trailing bytes.
//! Masked vectors are packed at b bits per element (a little-endian bit stream), so an
//! upload costs ⌈(m + 1)·b / 8⌉ bytes rather than 4 or 8 per parameter.
//!
//! `signed` = c_pk \[32\], s_pk \[32\], nonce \[32\], credential, signature \[64\], ticket
//! flag u8 (0 none | 1 a selection ticket \[[`TICKET_LEN`]\] follows);
//! `credential` = 0 u8, identity key \[32\] (self-asserted) | 1 u8, certificate \[100\];
//! `points` = σ share·B \[32\], β share·B \[32\].
//!
//! Each tag below is a named constant in [`tag`].
//!
//! | tag  | message          | body |
//! |------|------------------|------|
//! | 0x01 | Join             | nonce commitment \[32\] |
//! | 0x02 | AdvertiseKeys    | signed |
//! | 0x03 | ShareKeys        | β·B \[32\], own β share·B \[32\], n u32, n × (recipient u32, points, bundle \[88\]) |
//! | 0x04 | ShareCheck       | n u32, n × (dealer u32, kind u8 (0 unreadable, 1 bad shares + bundle key \[32\])) |
//! | 0x05 | MaskedInput      | b u8, count u32, packed ⌈count·b/8⌉ bytes |
//! | 0x06 | Consistency      | signature \[64\] |
//! | 0x07 | UnmaskShares     | n u32, n × (owner u32, kind u8 (0 self, 1 key), share \[32\]) |
//! | 0x80 | Cohort           | n u32, n × (id u32, nonce commitment \[32\]) |
//! | 0x81 | KeyList          | n u32, n × (id u32, signed) |
//! | 0x82 | ShareBundles     | n u32, n × (sender u32, β·B \[32\], points, bundle \[88\]) |
//! | 0x83 | MaskRequest      | n u32, n × id u32 |
//! | 0x84 | SurvivorList     | n u32, n × id u32 |
//! | 0x85 | UnmaskRequest    | n u32, n × id u32, s u32, s × (signer u32, signature \[64\]) |
//! | 0x86 | Completed        | included u32 |
//! | 0x87 | Aborted          | len u16, UTF-8 reason (≤ 1024 bytes) |
//!
//! The TCP transport adds its own frames in the same envelope:
//!
//! | tag  | frame            | body |
//! |------|------------------|------|
//! | 0x10 | Hello            | client id u32, weighted u8, params u32, layout digest \[32\], credential, signature \[64\] |
//! | 0x13 | MaskedInputChunk | offset u32, count u32, packed ⌈count·b/8⌉ bytes (in process, also a streamed input's piece: [`decode_client_or_piece`]) |
//! | 0x90 | Welcome          | the round configuration (see [`encode_welcome`]) |
//! | 0x91 | Reject           | len u16, UTF-8 reason |
//! | 0x92 | Challenge        | nonce \[32\] (the round id is the header's) |
//!
//! The server speaks first on a connection, with a challenge; the hello signs it (see
//! [`Hello::signed_message`]), so a hello cannot be replayed on another connection. A hello
//! is at most [`HELLO_MAX`] bytes, so a connection that has not proved who it is can make the
//! server buffer no more than that.
//!
//! A masked vector travels as consecutive chunks of at most [`CHUNK_ELEMS`] elements and, but
//! for the last, at least [`MIN_CHUNK_ELEMS`], so no frame is larger than about 256 KiB
//! whatever m is, and an upload cannot be trickled a few elements at a time.

use std::time::Duration;

use secagg_engine::Prg;

use crate::ClientId;
use crate::config::{Quantization, RoundConfig};
use crate::crypto::{BUNDLE_LEN, PublicKeys};
use crate::error::CodecError;
use crate::identity::CERT_LEN;
use crate::messages::{
    ClientMessage, Credential, DealerReport, Envelope, ForwardedBundle, PackedRun, PackedVector,
    ReportKind, RevealedShare, SealedBundle, ServerMessage, ShareKind, SignedKeys,
};

/// The wire version this build speaks.
pub const VERSION: u8 = 4;
/// Bytes before the body: version, tag, round id.
pub const HEADER_LEN: usize = 10;
/// Longest abort reason accepted.
pub const MAX_REASON: usize = 1024;

/// Bounds for decoding, from the round configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most clients any list may name.
    pub max_clients: usize,
    /// Most neighbours a client has: the graph's largest degree (k, and k + 1 for one client
    /// when k and n are both odd; n − 1 on the complete graph). What a client's per-neighbour
    /// lists (bundles, reports, revealed shares) may hold.
    pub max_neighbors: usize,
    /// Exact element count of a masked vector.
    pub vector_len: usize,
    /// Bits per packed element (b).
    pub bits: u32,
}

/// Bytes of a signed advertisement with a certificate (the longer credential).
pub const SIGNED_KEYS_LEN: usize = 96 + 1 + CERT_LEN + 64 + 1 + TICKET_LEN;

/// Bytes of a selection ticket (an RFC 9381 VRF proof).
pub const TICKET_LEN: usize = crate::crypto::vrf::PROOF_LEN;

impl Limits {
    /// The limits of a round.
    pub fn for_config(config: &crate::RoundConfig) -> Self {
        Self {
            max_clients: config.clients(),
            max_neighbors: (config.neighbors() + config.neighbors() % 2)
                .min(config.clients().saturating_sub(1)),
            vector_len: config.vector_len(),
            bits: config.modulus().bits(),
        }
    }

    /// The largest frame a client may send over the transport under these limits: the
    /// masked vector goes in chunks and every list is per neighbour, so this depends on k
    /// (not on n, and not on m).
    pub fn max_client_frame(&self) -> usize {
        let k = self.max_neighbors;
        let share_keys = HEADER_LEN + 64 + 4 + k * (4 + 64 + BUNDLE_LEN);
        let advertise = HEADER_LEN + SIGNED_KEYS_LEN;
        let check = HEADER_LEN + 4 + k * (4 + 1 + 32);
        let chunk = HEADER_LEN + 8 + packed_len(CHUNK_ELEMS, self.bits);
        let unmask = HEADER_LEN + 4 + (k + 1) * (4 + 1 + 32);
        [share_keys, advertise, check, chunk, unmask, HELLO_MAX]
            .into_iter()
            .max()
            .unwrap_or(HELLO_MAX)
    }

    /// The largest frame the server sends under these limits.
    pub fn max_server_frame(&self) -> usize {
        let n = self.max_clients;
        let cohort = HEADER_LEN + 4 + n * 36;
        let keys = HEADER_LEN + 4 + n * (4 + SIGNED_KEYS_LEN);
        let bundles = HEADER_LEN + 4 + n * (4 + 96 + BUNDLE_LEN);
        let unmask = HEADER_LEN + 8 + n * (4 + 4 + 64);
        [
            cohort,
            keys,
            bundles,
            unmask,
            HEADER_LEN + 2 + MAX_REASON,
            WELCOME_LEN,
        ]
        .into_iter()
        .max()
        .unwrap_or(WELCOME_LEN)
    }
}

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

struct Writer(Vec<u8>);

impl Writer {
    fn new(tag: u8, round: u64) -> Self {
        let mut v = Vec::with_capacity(64);
        v.push(VERSION);
        v.push(tag);
        v.extend_from_slice(&round.to_le_bytes());
        Writer(v)
    }
    fn u8(&mut self, x: u8) {
        self.0.push(x);
    }
    fn u16(&mut self, x: u16) {
        self.0.extend_from_slice(&x.to_le_bytes());
    }
    fn u32(&mut self, x: u32) {
        self.0.extend_from_slice(&x.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    fn count(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
}

/// A cursor that checks every read against the bytes left.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], CodecError> {
        if self.rest.len() < n {
            return Err(CodecError::Truncated {
                field,
                need: n,
                have: self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], CodecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, CodecError> {
        Ok(self.array::<1>(field)?[0])
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, CodecError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }
    /// A count of items of `item_len` bytes each, bounded by `max` and by the bytes left.
    fn count(
        &mut self,
        field: &'static str,
        max: usize,
        item_len: usize,
    ) -> Result<usize, CodecError> {
        let n = self.u32(field)? as usize;
        if n > max {
            return Err(CodecError::TooLong {
                field,
                len: n as u64,
                max: max as u64,
            });
        }
        let need = n.saturating_mul(item_len);
        if need > self.rest.len() {
            return Err(CodecError::Truncated {
                field,
                need,
                have: self.rest.len(),
            });
        }
        Ok(n)
    }
    fn finish(self) -> Result<(), CodecError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(CodecError::TrailingBytes(self.rest.len()))
        }
    }
}

fn header<'a>(bytes: &'a [u8]) -> Result<(u8, u64, Reader<'a>), CodecError> {
    let mut r = Reader { rest: bytes };
    let version = r.u8("version")?;
    if version != VERSION {
        return Err(CodecError::Version(version));
    }
    let tag = r.u8("tag")?;
    let round = r.u64("round")?;
    Ok((tag, round, r))
}

/// The header of a frame that must carry tag `want`.
fn expect_tag<'a>(bytes: &'a [u8], want: u8) -> Result<(u64, Reader<'a>), CodecError> {
    let (tag, round, r) = header(bytes)?;
    if tag != want {
        return Err(CodecError::UnknownTag(tag));
    }
    Ok((round, r))
}

/// A reason: u16 length and UTF-8, cut at a character boundary to [`MAX_REASON`] bytes.
fn write_reason(w: &mut Writer, reason: &str) {
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    w.u16(end as u16);
    w.bytes(&reason.as_bytes()[..end]);
}

fn read_reason(r: &mut Reader<'_>) -> Result<String, CodecError> {
    let len = r.u16("reason length")? as usize;
    if len > MAX_REASON {
        return Err(CodecError::TooLong {
            field: "reason",
            len: len as u64,
            max: MAX_REASON as u64,
        });
    }
    let text = r.take(len, "reason")?;
    std::str::from_utf8(text)
        .map(str::to_owned)
        .map_err(|e| CodecError::Invalid {
            field: "reason",
            why: e.to_string(),
        })
}

fn read_ids(
    r: &mut Reader<'_>,
    limits: &Limits,
    field: &'static str,
) -> Result<Vec<ClientId>, CodecError> {
    let n = r.count(field, limits.max_clients, 4)?;
    (0..n).map(|_| r.u32(field).map(ClientId)).collect()
}

fn write_ids(w: &mut Writer, ids: &[ClientId]) {
    w.count(ids.len());
    for id in ids {
        w.u32(id.0);
    }
}

fn write_signed(w: &mut Writer, s: &SignedKeys) {
    w.bytes(&s.keys.encryption);
    w.bytes(&s.keys.masking);
    w.bytes(&s.nonce);
    write_credential_to(&mut w.0, &s.credential);
    w.bytes(&s.signature);
    match &s.ticket {
        None => w.u8(0),
        Some(t) => {
            w.u8(1);
            w.bytes(t);
        }
    }
}

/// `credential` = 0 u8, identity key [32] | 1 u8, certificate [100].
fn write_credential_to(out: &mut Vec<u8>, credential: &Credential) {
    match credential {
        Credential::SelfAsserted(k) => {
            out.push(0);
            out.extend_from_slice(k);
        }
        Credential::Certificate(c) => {
            out.push(1);
            out.extend_from_slice(c);
        }
    }
}

/// Kept as bytes: a receiver parses and checks only the credentials it uses.
fn read_credential(r: &mut Reader<'_>) -> Result<Credential, CodecError> {
    Ok(match r.u8("credential kind")? {
        0 => Credential::SelfAsserted(r.array("identity key")?),
        1 => Credential::Certificate(r.array("certificate")?),
        k => {
            return Err(CodecError::Invalid {
                field: "credential kind",
                why: format!("{k} is not 0 (self-asserted) or 1 (certificate)"),
            });
        }
    })
}

fn read_signed(r: &mut Reader<'_>) -> Result<SignedKeys, CodecError> {
    let keys = PublicKeys {
        encryption: r.array("c_pk")?,
        masking: r.array("s_pk")?,
    };
    let nonce = r.array("nonce")?;
    let credential = read_credential(r)?;
    let signature = r.array("signature")?;
    let ticket = match r.u8("ticket flag")? {
        0 => None,
        1 => Some(r.array("selection ticket")?),
        f => {
            return Err(CodecError::Invalid {
                field: "ticket flag",
                why: format!("{f} is not 0 (none) or 1 (a ticket)"),
            });
        }
    };
    Ok(SignedKeys {
        keys,
        nonce,
        credential,
        signature,
        ticket,
    })
}

fn write_ciphertext(w: &mut Writer, ct: &[u8]) {
    // Bundles are produced by this crate at exactly BUNDLE_LEN; pad or cut defensively so
    // the frame stays self-consistent (the receiver's AEAD rejects a wrong one).
    let mut ct = ct.to_vec();
    ct.resize(BUNDLE_LEN, 0);
    w.bytes(&ct);
}

/// Encodes a client message.
pub fn encode_client(env: &Envelope<ClientMessage>, bits: u32) -> Vec<u8> {
    match &env.message {
        ClientMessage::Join { nonce_commitment } => {
            let mut w = Writer::new(tag::JOIN, env.round);
            w.bytes(nonce_commitment);
            w.0
        }
        ClientMessage::AdvertiseKeys(s) => {
            let mut w = Writer::new(tag::ADVERTISE_KEYS, env.round);
            write_signed(&mut w, s);
            w.0
        }
        ClientMessage::ShareKeys {
            self_key,
            own_point,
            bundles,
        } => {
            let mut w = Writer::new(tag::SHARE_KEYS, env.round);
            w.bytes(self_key);
            w.bytes(own_point);
            w.count(bundles.len());
            for b in bundles {
                w.u32(b.peer.0);
                w.bytes(&b.mask_point);
                w.bytes(&b.self_point);
                write_ciphertext(&mut w, &b.ciphertext);
            }
            w.0
        }
        ClientMessage::ShareCheck(reports) => {
            let mut w = Writer::new(tag::SHARE_CHECK, env.round);
            w.count(reports.len());
            for r in reports {
                w.u32(r.dealer.0);
                match &r.kind {
                    ReportKind::Unreadable => w.u8(0),
                    ReportKind::BadShares { bundle_key } => {
                        w.u8(1);
                        w.bytes(bundle_key);
                    }
                }
            }
            w.0
        }
        ClientMessage::MaskedInput(values) => {
            let mut w = Writer::new(tag::MASKED_INPUT, env.round);
            w.u8(bits as u8);
            w.count(values.len());
            pack(values, bits, &mut w.0);
            w.0
        }
        ClientMessage::PackedInput(p) => {
            let mut w = Writer::new(tag::MASKED_INPUT, env.round);
            w.u8(p.bits() as u8);
            w.count(p.len());
            match p.runs() {
                [one] if one.offset == 0 && one.count == p.len() => w.bytes(&one.bytes),
                _ => {
                    // Runs from chunks: one packed run again (only logs and tests re-encode).
                    let values = p.unpack().unwrap_or_default();
                    pack(&values, p.bits(), &mut w.0);
                }
            }
            w.0
        }
        ClientMessage::MaskedChunk(run) => {
            // The same frame as a transport's upload chunk.
            let mut w = Writer::new(tag::CHUNK, env.round);
            w.count(run.offset);
            w.count(run.count);
            w.bytes(&run.bytes);
            w.0
        }
        ClientMessage::Consistency { signature } => {
            let mut w = Writer::new(tag::CONSISTENCY, env.round);
            w.bytes(signature);
            w.0
        }
        ClientMessage::UnmaskShares(shares) => {
            let mut w = Writer::new(tag::UNMASK_SHARES, env.round);
            w.count(shares.len());
            for s in shares {
                w.u32(s.owner.0);
                w.u8(match s.kind {
                    ShareKind::SelfMask => 0,
                    ShareKind::MaskKey => 1,
                });
                w.bytes(&s.value);
            }
            w.0
        }
    }
}

/// Decodes a client message, or a piece of a streamed masked input (a chunk frame, as
/// [`ClientMessage::MaskedChunk`]), under `limits`. Only for rounds where a client cannot
/// stop half-way through its upload (in-process: the simulator): a server adds pieces as they
/// come, so one that stops would end the round for everyone. Anything facing a network
/// decodes with [`decode_client`], which refuses pieces, and assembles uploads first.
pub fn decode_client_or_piece(
    bytes: &[u8],
    limits: &Limits,
) -> Result<Envelope<ClientMessage>, CodecError> {
    if frame_tag(bytes)? != tag::CHUNK {
        return decode_client(bytes, limits);
    }
    // Checked as a transport checks a chunk, except that the sans-IO server checks that it
    // continues its sender's upload.
    let (placed, run) = read_chunk(bytes, limits, None)?;
    Ok(Envelope {
        round: placed.round,
        message: ClientMessage::MaskedChunk(run),
    })
}

/// Decodes a client message under `limits`. A chunk frame is refused here (see
/// [`decode_client_or_piece`]).
pub fn decode_client(bytes: &[u8], limits: &Limits) -> Result<Envelope<ClientMessage>, CodecError> {
    let (tag, round, mut r) = header(bytes)?;
    let message = match tag {
        tag::JOIN => ClientMessage::Join {
            nonce_commitment: r.array("nonce commitment")?,
        },
        tag::ADVERTISE_KEYS => ClientMessage::AdvertiseKeys(read_signed(&mut r)?),
        tag::SHARE_KEYS => {
            let self_key = r.array("self-mask key")?;
            let own_point = r.array("own share point")?;
            let n = r.count("bundles", limits.max_neighbors, 4 + 64 + BUNDLE_LEN)?;
            let mut bundles = Vec::with_capacity(n);
            for _ in 0..n {
                bundles.push(SealedBundle {
                    peer: ClientId(r.u32("bundle recipient")?),
                    mask_point: r.array("mask share point")?,
                    self_point: r.array("self-mask share point")?,
                    ciphertext: r.take(BUNDLE_LEN, "bundle")?.to_vec(),
                });
            }
            ClientMessage::ShareKeys {
                self_key,
                own_point,
                bundles,
            }
        }
        tag::SHARE_CHECK => {
            let n = r.count("reports", limits.max_neighbors, 5)?;
            let mut reports = Vec::with_capacity(n);
            for _ in 0..n {
                let dealer = ClientId(r.u32("dealer")?);
                let kind = match r.u8("report kind")? {
                    0 => ReportKind::Unreadable,
                    1 => ReportKind::BadShares {
                        bundle_key: r.array("bundle key")?,
                    },
                    k => {
                        return Err(CodecError::Invalid {
                            field: "report kind",
                            why: format!("{k} is not 0 (unreadable) or 1 (bad shares)"),
                        });
                    }
                };
                reports.push(DealerReport { dealer, kind });
            }
            ClientMessage::ShareCheck(reports)
        }
        tag::MASKED_INPUT => {
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
            ClientMessage::PackedInput(PackedVector::from_checked_runs(
                bits,
                count,
                vec![PackedRun {
                    offset: 0,
                    count,
                    bytes: packed.to_vec(),
                }],
            ))
        }
        tag::CONSISTENCY => ClientMessage::Consistency {
            signature: r.array("signature")?,
        },
        tag::UNMASK_SHARES => {
            // Its own self-mask share, then one per neighbour.
            let n = r.count("shares", limits.max_neighbors + 1, 4 + 1 + 32)?;
            let mut shares = Vec::with_capacity(n);
            for _ in 0..n {
                let owner = ClientId(r.u32("owner")?);
                let kind = match r.u8("kind")? {
                    0 => ShareKind::SelfMask,
                    1 => ShareKind::MaskKey,
                    k => {
                        return Err(CodecError::Invalid {
                            field: "share kind",
                            why: format!("{k} is not 0 (self mask) or 1 (mask key)"),
                        });
                    }
                };
                shares.push(RevealedShare {
                    owner,
                    kind,
                    value: r.array("share")?,
                });
            }
            ClientMessage::UnmaskShares(shares)
        }
        t => return Err(CodecError::UnknownTag(t)),
    };
    r.finish()?;
    Ok(Envelope { round, message })
}

/// Encodes a server message.
pub fn encode_server(env: &Envelope<ServerMessage>) -> Vec<u8> {
    match &env.message {
        ServerMessage::Cohort(cohort) => {
            let mut w = Writer::new(tag::COHORT, env.round);
            w.count(cohort.len());
            for (id, c) in cohort.iter() {
                w.u32(id.0);
                w.bytes(c);
            }
            w.0
        }
        ServerMessage::KeyList(keys) => {
            let mut w = Writer::new(tag::KEY_LIST, env.round);
            w.count(keys.len());
            for (id, s) in keys.iter() {
                w.u32(id.0);
                write_signed(&mut w, s);
            }
            w.0
        }
        ServerMessage::ShareBundles(bundles) => {
            let mut w = Writer::new(tag::SHARE_BUNDLES, env.round);
            w.count(bundles.len());
            for b in bundles {
                w.u32(b.sender.0);
                w.bytes(&b.self_key);
                w.bytes(&b.mask_point);
                w.bytes(&b.self_point);
                write_ciphertext(&mut w, &b.ciphertext);
            }
            w.0
        }
        ServerMessage::MaskRequest(ids) => {
            let mut w = Writer::new(tag::MASK_REQUEST, env.round);
            write_ids(&mut w, ids);
            w.0
        }
        ServerMessage::SurvivorList(ids) => {
            let mut w = Writer::new(tag::SURVIVOR_LIST, env.round);
            write_ids(&mut w, ids);
            w.0
        }
        ServerMessage::UnmaskRequest {
            survivors,
            signatures,
        } => {
            let mut w = Writer::new(tag::UNMASK_REQUEST, env.round);
            write_ids(&mut w, survivors);
            w.count(signatures.len());
            for (id, sig) in signatures {
                w.u32(id.0);
                w.bytes(sig);
            }
            w.0
        }
        ServerMessage::Completed { included } => {
            let mut w = Writer::new(tag::COMPLETED, env.round);
            w.u32(*included);
            w.0
        }
        ServerMessage::Aborted(reason) => {
            let mut w = Writer::new(tag::ABORTED, env.round);
            write_reason(&mut w, reason);
            w.0
        }
    }
}

/// Decodes a server message under `limits`.
pub fn decode_server(bytes: &[u8], limits: &Limits) -> Result<Envelope<ServerMessage>, CodecError> {
    let (tag, round, mut r) = header(bytes)?;
    let message = match tag {
        tag::COHORT => {
            let n = r.count("cohort", limits.max_clients, 36)?;
            let mut cohort = Vec::with_capacity(n);
            for _ in 0..n {
                cohort.push((ClientId(r.u32("id")?), r.array("nonce commitment")?));
            }
            ServerMessage::Cohort(cohort.into())
        }
        tag::KEY_LIST => {
            // The shortest entry carries a self-asserted key.
            let n = r.count("keys", limits.max_clients, 4 + 96 + 1 + 32 + 64)?;
            let mut keys = Vec::with_capacity(n);
            for _ in 0..n {
                let id = ClientId(r.u32("id")?);
                keys.push((id, read_signed(&mut r)?));
            }
            ServerMessage::KeyList(keys.into())
        }
        tag::SHARE_BUNDLES => {
            let n = r.count("bundles", limits.max_clients, 4 + 96 + BUNDLE_LEN)?;
            let mut bundles = Vec::with_capacity(n);
            for _ in 0..n {
                bundles.push(ForwardedBundle {
                    sender: ClientId(r.u32("bundle sender")?),
                    self_key: r.array("self-mask key")?,
                    mask_point: r.array("mask share point")?,
                    self_point: r.array("self-mask share point")?,
                    ciphertext: r.take(BUNDLE_LEN, "bundle")?.to_vec(),
                });
            }
            ServerMessage::ShareBundles(bundles)
        }
        tag::MASK_REQUEST => ServerMessage::MaskRequest(read_ids(&mut r, limits, "partners")?),
        tag::SURVIVOR_LIST => {
            ServerMessage::SurvivorList(read_ids(&mut r, limits, "survivors")?.into())
        }
        tag::UNMASK_REQUEST => {
            let survivors = read_ids(&mut r, limits, "survivors")?.into();
            let n = r.count("signatures", limits.max_clients, 68)?;
            let mut signatures = Vec::with_capacity(n);
            for _ in 0..n {
                signatures.push((ClientId(r.u32("signer")?), r.array("signature")?));
            }
            ServerMessage::UnmaskRequest {
                survivors,
                signatures,
            }
        }
        tag::COMPLETED => ServerMessage::Completed {
            included: r.u32("included")?,
        },
        tag::ABORTED => ServerMessage::Aborted(read_reason(&mut r)?),
        t => return Err(CodecError::UnknownTag(t)),
    };
    r.finish()?;
    Ok(Envelope { round, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_clients: 10,
            max_neighbors: 9,
            vector_len: 5,
            bits: 17,
        }
    }

    fn signed(cert: bool) -> SignedKeys {
        let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(5);
        let ca = crate::identity::CaKey::generate(&mut rng);
        let key = crate::identity::IdentityKey::generate(&mut rng);
        let credential = if cert {
            Credential::certificate(&ca.issue(ClientId(3), &key.public()))
        } else {
            Credential::self_asserted(&key.public())
        };
        SignedKeys {
            keys: PublicKeys {
                encryption: [1; 32],
                masking: [2; 32],
            },
            nonce: [3; 32],
            credential,
            signature: [4; 64],
            // Both encodings: with a certificate, also a selection ticket.
            ticket: cert.then_some([6; TICKET_LEN]),
        }
    }

    #[test]
    fn pieces_decode_only_where_asked_for() {
        let l = limits();
        let mut bytes = Vec::new();
        pack(&[5, 6, 7, 8, 9], l.bits, &mut bytes);
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

    /// The client messages the round-trip test checks, one of each, with both credentials.
    fn client_samples() -> Vec<ClientMessage> {
        vec![
            ClientMessage::Join {
                nonce_commitment: [1; 32],
            },
            ClientMessage::AdvertiseKeys(signed(true)),
            ClientMessage::AdvertiseKeys(signed(false)),
            ClientMessage::ShareKeys {
                self_key: [6; 32],
                own_point: [7; 32],
                bundles: vec![SealedBundle {
                    peer: ClientId(4),
                    mask_point: [8; 32],
                    self_point: [9; 32],
                    ciphertext: vec![5; BUNDLE_LEN],
                }],
            },
            ClientMessage::ShareCheck(vec![
                DealerReport {
                    dealer: ClientId(2),
                    kind: ReportKind::Unreadable,
                },
                DealerReport {
                    dealer: ClientId(5),
                    kind: ReportKind::BadShares {
                        bundle_key: [7; 32],
                    },
                },
            ]),
            ClientMessage::MaskedInput(vec![0, 1, 0x1_ffff, 7, 9]),
            ClientMessage::Consistency { signature: [3; 64] },
            ClientMessage::UnmaskShares(vec![RevealedShare {
                owner: ClientId(3),
                kind: ShareKind::MaskKey,
                value: [9; 32],
            }]),
        ]
    }

    /// The server messages the round-trip test checks, one of each, with both credentials.
    fn server_samples() -> Vec<ServerMessage> {
        vec![
            ServerMessage::Cohort(vec![(ClientId(1), [4; 32]), (ClientId(2), [5; 32])].into()),
            ServerMessage::KeyList(
                vec![(ClientId(1), signed(true)), (ClientId(3), signed(false))].into(),
            ),
            ServerMessage::ShareBundles(vec![ForwardedBundle {
                sender: ClientId(2),
                self_key: [6; 32],
                mask_point: [8; 32],
                self_point: [9; 32],
                ciphertext: vec![1; BUNDLE_LEN],
            }]),
            ServerMessage::MaskRequest(vec![ClientId(1), ClientId(5)]),
            ServerMessage::SurvivorList(vec![ClientId(1), ClientId(5)].into()),
            ServerMessage::UnmaskRequest {
                survivors: vec![ClientId(1), ClientId(5)].into(),
                signatures: vec![(ClientId(1), [2; 64])],
            },
            ServerMessage::Completed { included: 7 },
            ServerMessage::Aborted("too few clients".into()),
        ]
    }

    #[test]
    fn messages_round_trip() {
        let l = limits();
        let msgs = client_samples();
        for m in msgs {
            let env = Envelope {
                round: 42,
                message: m,
            };
            let bytes = encode_client(&env, l.bits);
            let back = decode_client(&bytes, &l).unwrap();
            match (&env.message, &back.message) {
                // A masked vector comes back still packed, and re-encodes to the same bytes.
                (ClientMessage::MaskedInput(v), ClientMessage::PackedInput(p)) => {
                    assert_eq!(&p.unpack().unwrap(), v);
                    assert_eq!(encode_client(&back, l.bits), bytes);
                }
                _ => assert_eq!(back, env),
            }
            // Every strict prefix is truncated, never a panic or a different message.
            for cut in 0..bytes.len() {
                assert!(decode_client(&bytes[..cut], &l).is_err());
            }
            let mut long = bytes.clone();
            long.push(0);
            assert_eq!(decode_client(&long, &l), Err(CodecError::TrailingBytes(1)));
            assert!(bytes.len() <= l.max_client_frame());
        }
        let smsgs = server_samples();
        for m in smsgs {
            let env = Envelope {
                round: 7,
                message: m,
            };
            let bytes = encode_server(&env);
            assert_eq!(decode_server(&bytes, &l).unwrap(), env);
            for cut in 0..bytes.len() {
                assert!(decode_server(&bytes[..cut], &l).is_err());
            }
            assert!(bytes.len() <= l.max_server_frame());
        }
    }

    /// One frame of every kind the codec writes: the round-trip samples and the encodings
    /// they leave out (a streamed piece, a self-mask share, a non-ASCII reason, both hellos,
    /// both welcomes, a vector in chunks).
    fn every_frame() -> Vec<(String, Vec<u8>)> {
        use super::transport_tests::{sample_config, sample_hello};
        let l = limits();
        let client = |message: ClientMessage| {
            let name = message.name().to_string();
            (
                name,
                encode_client(&Envelope { round: 42, message }, l.bits),
            )
        };
        let server = |message: ServerMessage| {
            let name = message.name().to_string();
            (name, encode_server(&Envelope { round: 7, message }))
        };
        let mut piece = Vec::new();
        pack(&[5, 6, 7], l.bits, &mut piece);
        let mut frames: Vec<(String, Vec<u8>)> = client_samples().into_iter().map(client).collect();
        frames.push(client(ClientMessage::MaskedChunk(PackedRun {
            offset: 2,
            count: 3,
            bytes: piece,
        })));
        frames.push(client(ClientMessage::UnmaskShares(vec![RevealedShare {
            owner: ClientId(4),
            kind: ShareKind::SelfMask,
            value: [8; 32],
        }])));
        frames.extend(server_samples().into_iter().map(server));
        frames.push(server(ServerMessage::Aborted("too few clients: é".into())));
        for credential in [
            Credential::Certificate([0x5a; CERT_LEN]),
            Credential::SelfAsserted([0xa5; 32]),
        ] {
            frames.push(("hello".into(), encode_hello(&sample_hello(credential))));
        }
        let challenge = Challenge {
            round: 5,
            nonce: [7; 32],
        };
        frames.push(("challenge".into(), encode_challenge(&challenge)));
        let selection = crate::selection::Selection::from_threshold(11, 1 << 62).unwrap();
        for selection in [None, Some(selection)] {
            frames.push(("welcome".into(), encode_welcome(&sample_config(selection))));
        }
        frames.push(("reject".into(), encode_reject("duplicate id")));
        let values: Vec<u32> = (0..CHUNK_ELEMS as u32 + 5)
            .map(|i| i.wrapping_mul(7919) & 0x1fff)
            .collect();
        for chunk in encode_masked_chunks(3, &values, 13) {
            frames.push(("masked chunk".into(), chunk));
        }
        frames
    }

    /// The wire format, pinned: SHA-256 of each frame [`every_frame`] writes (computed from
    /// the codec at wire version 4 before it was split into modules). Any change to these
    /// bytes is a new wire version.
    #[test]
    fn frames_are_byte_for_byte_the_wire_format() {
        use sha2::{Digest, Sha256};
        const GOLDEN: &[&str] = &[
            "join: 42 bytes, 5d8d1645cd58464c4c09ad2c18710b4c5dc78453992c53a0e934beb0838e87a3",
            "advertise-keys: 352 bytes, bab7da49728a3ca2a8f04d49d0dd07ff00e7cce036a91d8902cdaa502fa8b079",
            "advertise-keys: 204 bytes, 500f6133b390d9ae7c6cbeb215ea3b7c1c30c9d4d471746a1de80d3291ea0742",
            "share-keys: 234 bytes, 838b663527f416d5024ee4f887c9ba0f6f442eff4ee1e03e6de084a6ecc5e7a7",
            "share-check: 56 bytes, a0ca0a28682a3d881fd92b2dc246d48b7cfa601bc41b5ef2483216fed389a5d3",
            "masked-input: 26 bytes, 7614da31899ce3c605d544accc7c980f712b66f28b0dd247ab0e1bcc01b1da5e",
            "consistency: 74 bytes, 2c1f8e343c1bac5b0ff67c915d1eb20df71fd221f75d9dd7763e8702e4a3ab23",
            "unmask-shares: 51 bytes, 113117f88ff23ddca0b2d402fe1c6b06e13546b486ddb0de1cac9e11a081ce55",
            "masked-input piece: 25 bytes, 6772b4e980868f407812dffcd074319ab76e55e3e701525c2f6207a2c2ff8f27",
            "unmask-shares: 51 bytes, b74053df4248492ec9c44c2f6acb73a140c68180202cd61596942ff6e2230263",
            "cohort: 86 bytes, 7bd187975b06a87004e8400e1b1aa2a1f4adae2a170e03df14d360fbd88fab31",
            "key-list: 558 bytes, 88064aa0c2ce8d634caba829d8b854891e4a967560583f2bc508decc22c1faa8",
            "share-bundles: 202 bytes, aeae7b334100516d3f7905ca79cc696221b3839a9946a276761933fc90e9f3fa",
            "mask-request: 22 bytes, 48baa8a2ace5b9b8714afff6a9749d32c5fc30e2b42af12f7ccde10d84abc81d",
            "survivor-list: 22 bytes, c952f4a448306ddde223ceb703deda2e0bac808b626b2d4a5ed59fd40d9d5d76",
            "unmask-request: 94 bytes, c4c9301b999ba907c69aaaeee10e80f70b73e806e58c928f872a7f844607b831",
            "completed: 14 bytes, 4ba1ff3591ab519d6b8bf09b3b1af2a93a8eb318f2035c36cd14e132ed6600c0",
            "aborted: 27 bytes, 15b9e550305c4019e290743fbbedcde2287ea36820a511cfd95472df3575da59",
            "aborted: 31 bytes, 3c9a14c504f9788a679143457e945fcbabf7954a1eca33b99c8a292446085370",
            "hello: 216 bytes, 17d1e31eb4b3c987f45d765037b8b743c7c79f741645fd417831bb162df9d794",
            "hello: 148 bytes, 0ee0d3c7f4b1cdfd369da560622c3e6f55172c55d1d31b6e598c31e803a1bb5d",
            "challenge: 42 bytes, 1402641cda5592bbf84d4ce5a19a328cc0b3ee1f8c90b1521c43d05d82754a33",
            "welcome: 104 bytes, db62712e003c642579a4c48cbde22cb8ba45c13552484a3ef5ac9f01ddc1af0e",
            "welcome: 104 bytes, f915a7026b8c4fe6f6c80aba6eb042e80d03724a8295e324a7f5a643295bddec",
            "reject: 24 bytes, 951f1d6c1e5eb5b9c11af6fc688d7d29b87c2fbde94f313f667a8692ca87c6f1",
            "masked chunk: 106514 bytes, ff5ae7da81e4f49abbd6cd82d29bf17337047ec86c6b649dcb925ccfd4a6a1bb",
            "masked chunk: 27 bytes, 01b67468371a63a401a9624f64c817c77b163a6b40bfca0dc0beb448a1f44059",
        ];
        let got: Vec<String> = every_frame()
            .into_iter()
            .map(|(what, bytes)| {
                let hex: String = Sha256::digest(&bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                format!("{what}: {} bytes, {hex}", bytes.len())
            })
            .collect();
        assert_eq!(got, GOLDEN);
    }

    /// The tags are the bytes the module docs' tables give, and no two frames share one.
    #[test]
    fn tags_are_the_documented_bytes() {
        let tags = [
            (tag::JOIN, 0x01),
            (tag::ADVERTISE_KEYS, 0x02),
            (tag::SHARE_KEYS, 0x03),
            (tag::SHARE_CHECK, 0x04),
            (tag::MASKED_INPUT, 0x05),
            (tag::CONSISTENCY, 0x06),
            (tag::UNMASK_SHARES, 0x07),
            (tag::HELLO, 0x10),
            (tag::CHUNK, 0x13),
            (tag::COHORT, 0x80),
            (tag::KEY_LIST, 0x81),
            (tag::SHARE_BUNDLES, 0x82),
            (tag::MASK_REQUEST, 0x83),
            (tag::SURVIVOR_LIST, 0x84),
            (tag::UNMASK_REQUEST, 0x85),
            (tag::COMPLETED, 0x86),
            (tag::ABORTED, 0x87),
            (tag::WELCOME, 0x90),
            (tag::REJECT, 0x91),
            (tag::CHALLENGE, 0x92),
        ];
        for (named, byte) in tags {
            assert_eq!(named, byte);
        }
        let distinct: std::collections::BTreeSet<u8> = tags.iter().map(|t| t.0).collect();
        assert_eq!(distinct.len(), tags.len());
    }

    #[test]
    fn counts_are_bounded_before_allocation() {
        let l = limits();
        // A key list claiming 4 billion entries in a 20-byte message.
        let mut w = Writer::new(tag::KEY_LIST, 1);
        w.u32(u32::MAX);
        assert!(matches!(
            decode_server(&w.0, &l),
            Err(CodecError::TooLong { field: "keys", .. })
        ));
        // Within max_clients but more than the bytes present.
        let mut w = Writer::new(tag::SURVIVOR_LIST, 1);
        w.u32(9);
        w.u32(1);
        assert!(matches!(
            decode_server(&w.0, &l),
            Err(CodecError::Truncated { .. })
        ));
        // A masked vector of the wrong length or width.
        let env = Envelope {
            round: 1,
            message: ClientMessage::MaskedInput(vec![1; 4]),
        };
        assert!(decode_client(&encode_client(&env, 17), &l).is_err());
        let env = Envelope {
            round: 1,
            message: ClientMessage::MaskedInput(vec![1; 5]),
        };
        assert!(decode_client(&encode_client(&env, 16), &l).is_err());
        assert_eq!(decode_client(&[1, 1], &l), Err(CodecError::Version(1)));
        // More bundles than clients.
        let mut w = Writer::new(tag::SHARE_KEYS, 1);
        w.bytes(&[0; 64]);
        w.u32(11);
        assert!(matches!(
            decode_client(&w.0, &l),
            Err(CodecError::TooLong {
                field: "bundles",
                ..
            })
        ));
        assert!(matches!(
            decode_client(&Writer::new(0x99, 0).0, &l),
            Err(CodecError::UnknownTag(0x99))
        ));
    }
}

/// The tag byte of every frame, after the version: a client's round messages (0x01..=0x07),
/// the server's (0x80..=0x87), and the transport's own frames (0x10.., 0x90..). The table in
/// the module docs gives each body.
pub mod tag {
    /// Client, stage 0: a commitment to its graph nonce.
    pub const JOIN: u8 = 0x01;
    /// Client, stage 1: its signed round keys.
    pub const ADVERTISE_KEYS: u8 = 0x02;
    /// Client, stage 2: its dealing, one sealed bundle per neighbour.
    pub const SHARE_KEYS: u8 = 0x03;
    /// Client, stage 3: the dealers whose bundles failed its checks.
    pub const SHARE_CHECK: u8 = 0x04;
    /// Client, stage 4: the whole masked vector, packed.
    pub const MASKED_INPUT: u8 = 0x05;
    /// Client, stage 5: its signature on the survivor list.
    pub const CONSISTENCY: u8 = 0x06;
    /// Client, stage 6: the shares it reveals.
    pub const UNMASK_SHARES: u8 = 0x07;
    /// Client hello.
    pub const HELLO: u8 = 0x10;
    /// One chunk of a masked vector.
    pub const CHUNK: u8 = 0x13;
    /// Server: the cohort.
    pub const COHORT: u8 = 0x80;
    /// Server: every client's advertised keys.
    pub const KEY_LIST: u8 = 0x81;
    /// Server: the bundles addressed to one client.
    pub const SHARE_BUNDLES: u8 = 0x82;
    /// Server: the neighbours a client masks with.
    pub const MASK_REQUEST: u8 = 0x83;
    /// Server: the clients whose masked input arrived.
    pub const SURVIVOR_LIST: u8 = 0x84;
    /// Server: the survivor list with the signatures a client checks.
    pub const UNMASK_REQUEST: u8 = 0x85;
    /// Server: the round completed.
    pub const COMPLETED: u8 = 0x86;
    /// Server: the round aborted.
    pub const ABORTED: u8 = 0x87;
    /// Server welcome, with the round configuration.
    pub const WELCOME: u8 = 0x90;
    /// Server refusal of a connection.
    pub const REJECT: u8 = 0x91;
    /// Server challenge, the first frame on a connection.
    pub const CHALLENGE: u8 = 0x92;
}

/// Elements per masked-input chunk: at most 256 KiB of packed data at 32 bits.
pub const CHUNK_ELEMS: usize = 1 << 16;
/// Fewest elements in any chunk but the last of a vector: an upload cannot be trickled in
/// tiny pieces to hold the server's staging memory.
pub const MIN_CHUNK_ELEMS: usize = 1 << 12;
/// Bytes of a welcome frame.
pub const WELCOME_LEN: usize = HEADER_LEN + 4 * 6 + 2 + 4 * 3 + 8 + 32 + 16;
/// Bytes of a challenge frame.
pub const CHALLENGE_LEN: usize = HEADER_LEN + 32;
/// Largest hello: with a certificate (the longer credential).
pub const HELLO_MAX: usize = HEADER_LEN + 4 + 1 + 4 + 32 + 1 + CERT_LEN + 64;
/// Domain of the hello signature.
pub const HELLO_DOMAIN: &[u8] = b"secagg/v3/hello";

/// The digest a hello carries for a model layout: SHA-256 of its encoding.
pub fn layout_digest(layout: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(layout).into()
}

/// The tag of a frame, after checking its version.
pub fn frame_tag(bytes: &[u8]) -> Result<u8, CodecError> {
    let (tag, _, _) = header(bytes)?;
    Ok(tag)
}

/// The server's first frame on a connection: the round it is for and a fresh nonce that the
/// client's hello must sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The round id.
    pub round: u64,
    /// Fresh random bytes, one per connection.
    pub nonce: [u8; 32],
}

/// Encodes a challenge.
pub fn encode_challenge(c: &Challenge) -> Vec<u8> {
    let mut w = Writer::new(tag::CHALLENGE, c.round);
    w.bytes(&c.nonce);
    w.0
}

/// Decodes a challenge.
pub fn decode_challenge(bytes: &[u8]) -> Result<Challenge, CodecError> {
    let (round, mut r) = expect_tag(bytes, tag::CHALLENGE)?;
    let nonce = r.array("challenge nonce")?;
    r.finish()?;
    Ok(Challenge { round, nonce })
}

/// A client's first frame, the answer to the server's [`Challenge`]: who it is, what it will
/// send, and a signature by its identity key that proves it holds that key now, on this
/// connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The round id the client answers (the challenge's).
    pub round: u64,
    /// The client's id.
    pub client: ClientId,
    /// Whether the client was given an explicit weight.
    pub weighted: bool,
    /// The number of parameters of its update.
    pub params: u32,
    /// SHA-256 of the encoded layout of its model update (tensor names and shapes).
    pub layout: [u8; 32],
    /// Its identity: a certificate from the deployment CA, or a self-asserted key.
    pub credential: Credential,
    /// Its identity key's signature over [`Hello::signed_message`].
    pub signature: [u8; 64],
}

impl Hello {
    /// The hello of `identity` for round `round`, signed for the connection whose challenge
    /// nonce and channel binding are given.
    pub fn signed(
        identity: &crate::ClientIdentity,
        round: u64,
        weighted: bool,
        params: u32,
        layout: [u8; 32],
        challenge_nonce: &[u8; 32],
        binding: &[u8; 32],
    ) -> Self {
        let mut hello = Hello {
            round,
            client: identity.id(),
            weighted,
            params,
            layout,
            credential: identity.credential().clone(),
            signature: [0; 64],
        };
        hello.signature = identity.sign(
            HELLO_DOMAIN,
            &hello.signed_message(challenge_nonce, binding),
        );
        hello
    }

    /// What the identity key signs (under [`HELLO_DOMAIN`]): the challenge, the connection's
    /// channel binding (the TLS exporter value, or zeros over plaintext) and every field of
    /// the hello but the signature.
    pub fn signed_message(&self, challenge_nonce: &[u8; 32], binding: &[u8; 32]) -> Vec<u8> {
        let mut m = Vec::with_capacity(8 + 32 + 32 + 4 + 1 + 4 + 32 + 1 + CERT_LEN);
        m.extend_from_slice(&self.round.to_le_bytes());
        m.extend_from_slice(challenge_nonce);
        m.extend_from_slice(binding);
        m.extend_from_slice(&self.client.0.to_le_bytes());
        m.push(u8::from(self.weighted));
        m.extend_from_slice(&self.params.to_le_bytes());
        m.extend_from_slice(&self.layout);
        write_credential_to(&mut m, &self.credential);
        m
    }
}

/// Encodes a hello.
pub fn encode_hello(h: &Hello) -> Vec<u8> {
    let mut w = Writer::new(tag::HELLO, h.round);
    w.u32(h.client.0);
    w.u8(u8::from(h.weighted));
    w.u32(h.params);
    w.bytes(&h.layout);
    write_credential_to(&mut w.0, &h.credential);
    w.bytes(&h.signature);
    w.0
}

/// Decodes a hello.
pub fn decode_hello(bytes: &[u8]) -> Result<Hello, CodecError> {
    if bytes.len() > HELLO_MAX {
        return Err(CodecError::TooLong {
            field: "hello",
            len: bytes.len() as u64,
            max: HELLO_MAX as u64,
        });
    }
    let (round, mut r) = expect_tag(bytes, tag::HELLO)?;
    let client = ClientId(r.u32("client id")?);
    let weighted = match r.u8("weighted")? {
        0 => false,
        1 => true,
        v => {
            return Err(CodecError::Invalid {
                field: "weighted",
                why: format!("{v} is neither 0 nor 1"),
            });
        }
    };
    let params = r.u32("params")?;
    let layout = r.array("layout digest")?;
    let credential = read_credential(&mut r)?;
    let signature = r.array("signature")?;
    r.finish()?;
    Ok(Hello {
        round,
        client,
        weighted,
        params,
        layout,
        credential,
        signature,
    })
}

/// Encodes the round configuration a server sends each accepted client.
///
/// ```text
/// clients u32 | threshold u32 | min_survivors u32 | neighbors u32 | params u32 |
/// levels u32 | bits u8 | prg rounds u8 | clip f32 | max_weight u32 | flags u32 |
/// stage timeout ms u64 | context [32] | selection epoch u64 | selection threshold u64
/// ```
///
/// Flag bit 0 says the round has verifiable self-selection (epoch and threshold, the rate
/// times 2^64); without it both are zero. Other flag bits are refused.
///
/// The context is the server's; a client that expects its own compares the two and refuses a
/// mismatch (the context also enters every signature, so a lie cannot go unnoticed).
pub fn encode_welcome(config: &RoundConfig) -> Vec<u8> {
    let mut w = Writer::new(tag::WELCOME, config.round_id());
    let q = config.quantization();
    for v in [
        config.clients(),
        config.threshold(),
        config.min_survivors(),
        config.neighbors(),
        config.params(),
    ] {
        w.count(v);
    }
    w.u32(q.levels);
    w.u8(config.modulus().bits() as u8);
    w.u8(config.prg().rounds() as u8);
    w.bytes(&q.clip.to_le_bytes());
    w.u32(q.max_weight);
    w.u32(u32::from(config.selection().is_some()));
    let ms = u64::try_from(config.stage_timeout().as_millis()).unwrap_or(u64::MAX);
    w.bytes(&ms.to_le_bytes());
    w.bytes(config.context());
    let (epoch, threshold) = config
        .selection()
        .map_or((0, 0), |s| (s.epoch(), s.threshold()));
    w.bytes(&epoch.to_le_bytes());
    w.bytes(&threshold.to_le_bytes());
    w.0
}

/// Decodes a welcome into a configuration, validated as any other.
pub fn decode_welcome(bytes: &[u8]) -> Result<RoundConfig, CodecError> {
    let (round, mut r) = expect_tag(bytes, tag::WELCOME)?;
    let clients = r.u32("clients")? as usize;
    let threshold = r.u32("threshold")? as usize;
    let min_survivors = r.u32("min_survivors")? as usize;
    let neighbors = r.u32("neighbors")? as usize;
    let params = r.u32("params")? as usize;
    let levels = r.u32("levels")?;
    let bits = u32::from(r.u8("bits")?);
    let prg = match r.u8("prg")? {
        20 => Prg::ChaCha20,
        12 => Prg::ChaCha12,
        8 => Prg::ChaCha8,
        v => {
            return Err(CodecError::Invalid {
                field: "prg",
                why: format!("{v} rounds is not 20, 12 or 8"),
            });
        }
    };
    let clip = f32::from_le_bytes(r.array("clip")?);
    let max_weight = r.u32("max_weight")?;
    let flags = r.u32("flags")?;
    let ms = r.u64("stage timeout")?;
    let context = r.array("context")?;
    let epoch = r.u64("selection epoch")?;
    let score_below = r.u64("selection threshold")?;
    r.finish()?;
    let selection = match flags {
        0 if epoch == 0 && score_below == 0 => None,
        0 => {
            return Err(CodecError::Invalid {
                field: "selection",
                why: "an epoch or threshold without the selection flag".into(),
            });
        }
        1 => Some(
            crate::selection::Selection::from_threshold(epoch, score_below).map_err(|e| {
                CodecError::Invalid {
                    field: "selection",
                    why: e.to_string(),
                }
            })?,
        ),
        f => {
            return Err(CodecError::Invalid {
                field: "flags",
                why: format!("unknown flag bits {f:#x}"),
            });
        }
    };
    RoundConfig::builder(clients, params)
        .round_id(round)
        .threshold(threshold)
        .min_survivors(min_survivors)
        .neighbors(neighbors)
        .bits(bits)
        .prg(prg)
        .quantization(Quantization {
            clip,
            levels,
            max_weight,
        })
        .stage_timeout(Duration::from_millis(ms))
        .context(context)
        .selection(selection)
        .build()
        .map_err(|e| CodecError::Invalid {
            field: "round configuration",
            why: e.to_string(),
        })
}

/// A reject can come before the client knows the round: its round field must be zero, so
/// that each frame has exactly one encoding.
fn no_round(round: u64) -> Result<(), CodecError> {
    if round == 0 {
        Ok(())
    } else {
        Err(CodecError::Invalid {
            field: "round",
            why: format!("{round} in a frame that carries no round id"),
        })
    }
}

/// Encodes a refusal.
pub fn encode_reject(reason: &str) -> Vec<u8> {
    let mut w = Writer::new(tag::REJECT, 0);
    write_reason(&mut w, reason);
    w.0
}

/// Decodes a refusal.
pub fn decode_reject(bytes: &[u8]) -> Result<String, CodecError> {
    let (round, mut r) = expect_tag(bytes, tag::REJECT)?;
    no_round(round)?;
    let reason = read_reason(&mut r)?;
    r.finish()?;
    Ok(reason)
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
            let mut w = Writer::new(tag::CHUNK, round);
            w.count(i * size.max(1));
            w.count(chunk.len());
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
fn read_chunk(
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
mod transport_tests {
    use super::*;

    /// A round configuration with every field away from its default.
    pub(super) fn sample_config(selection: Option<crate::selection::Selection>) -> RoundConfig {
        RoundConfig::builder(50, 1234)
            .neighbors(10)
            .threshold(6)
            .min_survivors(20)
            .bits(24)
            .prg(Prg::ChaCha12)
            .round_id(99)
            .quantization(Quantization {
                clip: 0.25,
                levels: 1000,
                max_weight: 7,
            })
            .stage_timeout(Duration::from_millis(1500))
            .context([0xc7; 32])
            .selection(selection)
            .build()
            .unwrap()
    }

    /// A hello with `credential`.
    pub(super) fn sample_hello(credential: Credential) -> Hello {
        Hello {
            round: 0x0102_0304_0506_0708,
            client: ClientId(77),
            weighted: true,
            params: 123_456,
            layout: [9; 32],
            credential,
            signature: [3; 64],
        }
    }

    #[test]
    fn welcome_round_trips_the_configuration() {
        let c = sample_config(None);
        let bytes = encode_welcome(&c);
        assert_eq!(bytes.len(), WELCOME_LEN);
        assert_eq!(decode_welcome(&bytes).unwrap(), c);
        for cut in 0..bytes.len() {
            assert!(decode_welcome(&bytes[..cut]).is_err());
        }
        // An unsafe configuration from a server is refused like any other.
        let mut bad = bytes.clone();
        bad[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&1000u32.to_le_bytes());
        assert!(decode_welcome(&bad).is_err());
    }

    #[test]
    fn hello_and_reject_round_trip() {
        for credential in [
            Credential::Certificate([0x5a; CERT_LEN]),
            Credential::SelfAsserted([0xa5; 32]),
        ] {
            let h = sample_hello(credential);
            let bytes = encode_hello(&h);
            assert!(bytes.len() <= HELLO_MAX);
            assert_eq!(decode_hello(&bytes).unwrap(), h);
            for cut in 0..bytes.len() {
                assert!(decode_hello(&bytes[..cut]).is_err());
            }
            let mut long = bytes.clone();
            long.push(0);
            assert!(decode_hello(&long).is_err());
            // Every field but the signature is signed, and so are the nonce and the binding.
            let base = h.signed_message(&[1; 32], &[2; 32]);
            assert_ne!(base, h.signed_message(&[0; 32], &[2; 32]));
            assert_ne!(base, h.signed_message(&[1; 32], &[0; 32]));
            for change in 0..5 {
                let mut g = h.clone();
                match change {
                    0 => g.round ^= 1,
                    1 => g.client = ClientId(78),
                    2 => g.weighted = false,
                    3 => g.params ^= 1,
                    _ => g.layout[0] ^= 1,
                }
                assert_ne!(base, g.signed_message(&[1; 32], &[2; 32]), "field {change}");
            }
        }
        let c = Challenge {
            round: 5,
            nonce: [7; 32],
        };
        let bytes = encode_challenge(&c);
        assert_eq!(bytes.len(), CHALLENGE_LEN);
        assert_eq!(decode_challenge(&bytes).unwrap(), c);
        assert_eq!(
            decode_reject(&encode_reject("duplicate id")).unwrap(),
            "duplicate id"
        );
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
