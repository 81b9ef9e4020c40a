//! The wire format, version 5 ([`VERSION`]): one explicit binary layout per message.
//!
//! ```text
//! version u8 (= 5) | tag u8 | round u64 | body
//! ```
//! All integers are little-endian. Every count is checked against [`Limits`] and against the
//! bytes actually present before anything is allocated; decoding rejects trailing bytes.
//! Masked vectors are packed at b bits per element (a little-endian bit stream), so an
//! upload costs ⌈(m + 1)·b / 8⌉ bytes rather than 4 or 8 per parameter.
//!
//! Version 5 carries the committed lists ([`crate::view`]): no message holds a list of all n
//! members, and every list a server message opens comes with a Merkle proof of at most
//! (leaves × ⌈log2 n⌉) digests ([`Limits::depth`]), so every frame is bounded by k, not n.
//!
//! `signed` = c_pk \[32\], s_pk \[32\], nonce commitment \[32\], credential, signature \[64\],
//! ticket flag u8 (0 none | 1 a selection ticket \[[`TICKET_LEN`]\] follows);
//! `credential` = 0 u8, identity key \[32\] (self-asserted) | 1 u8, certificate \[100\];
//! `points` = σ share·B \[32\], β share·B \[32\];
//! `indices` = n u32 (≤ [`crate::view::MAX_AUDIT`]), n × u32;
//! `proof` = n u32, n × digest \[32\], s u32, s × split u32 (n, s ≤ leaves × ⌈log2 n⌉);
//! `list` = root \[32\], length u32 (≤ n);
//! `set` = n u32, n × (leaf u32, value u32), proof;
//! `opened` = n u32, n × (index u32, id u32, 0 u8 signed | 1 u8 nonce commitment \[32\],
//! credential, ticket flag (+ ticket), keys digest \[32\]), proof.
//!
//! Each tag below is a named constant in [`tag`].
//!
//! | tag  | message          | body |
//! |------|------------------|------|
//! | 0x01 | Join             | signed |
//! | 0x02 | Reveal           | nonce \[32\], indices (cohort leaves to audit) |
//! | 0x03 | ShareKeys        | β·B \[32\], own β share·B \[32\], n u32, n × (recipient u32, points, bundle \[88\]), indices (present-set leaves to audit) |
//! | 0x04 | ShareCheck       | n u32, n × (dealer u32, kind u8 (0 unreadable, 1 bad shares + bundle key \[32\])) |
//! | 0x05 | MaskedInput      | b u8, count u32, packed ⌈count·b/8⌉ bytes |
//! | 0x06 | Consistency      | signature \[64\], indices (survivor-set leaves to audit) |
//! | 0x07 | UnmaskShares     | n u32, n × (owner u32, kind u8 (0 self, 1 key), share \[32\]) |
//! | 0x80 | Cohort           | list (the cohort), position u32, proof (of its entry) |
//! | 0x81 | KeyList          | n u32 (≤ 64), n × (index u32, nonce \[32\]), list (present), set, opened |
//! | 0x82 | ShareBundles     | n u32, n × (sender u32, β·B \[32\], points, bundle \[88\]), set (audited leaves) |
//! | 0x83 | MaskRequest      | n u32, n × id u32 |
//! | 0x84 | SurvivorList     | list (survivors), set |
//! | 0x85 | UnmaskRequest    | list (survivors), set (audited leaves), s u32, s × (signer index u32, signature \[64\]), opened |
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
//!
//! The code follows the frames: the round's messages, the transport's handshake, and the
//! masked vector (whole or in chunks) each have a module; this one holds what they share (the
//! header, [`Limits`], the tags, the fields more than one kind of frame carries).

mod chunks;
mod handshake;
mod round;
#[cfg(test)]
mod tests;

pub use chunks::{
    CHUNK_ELEMS, ChunkPlacement, MIN_CHUNK_ELEMS, check_padding, decode_chunk_into,
    decode_chunk_packed, encode_chunks_of, encode_masked_chunks, encode_piece, pack, packed_input,
    packed_len, unpack,
};
pub use handshake::{
    CHALLENGE_LEN, Challenge, HELLO_DOMAIN, HELLO_MAX, Hello, WELCOME_DP_LEN, WELCOME_LEN,
    WELCOME_MAX, decode_challenge, decode_hello, decode_reject, decode_welcome, encode_challenge,
    encode_hello, encode_reject, encode_welcome, layout_digest,
};
pub use round::{
    SIGNED_KEYS_LEN, TICKET_LEN, decode_client, decode_client_or_piece, decode_server,
    encode_client, encode_server,
};

use crate::crypto::BUNDLE_LEN;
use crate::error::CodecError;
use crate::messages::Credential;
use crate::view::{COMMITTEE, MAX_AUDIT};

/// The wire version this build speaks.
pub const VERSION: u8 = 5;
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

    /// The depth of the deepest tree a round of these limits commits to: a proof holds at
    /// most this many digests per opened leaf.
    pub fn depth(&self) -> usize {
        crate::merkle::depth(self.max_clients as u64) as usize
    }

    /// The most leaves a set opening holds: each of a client's neighbours, itself and the
    /// Harary graph's extra neighbour, two leaves each (the leaves around an absent one), and
    /// the audited leaves.
    pub fn max_set_leaves(&self) -> usize {
        2 * (self.max_neighbors + 2) + MAX_AUDIT
    }

    /// The most cohort entries a key list opens: the neighbours, the committee, the audited
    /// leaves.
    pub fn max_entries(&self) -> usize {
        self.max_neighbors + COMMITTEE + MAX_AUDIT
    }

    /// The most signers an unmask request names: the holders of every secret a client holds
    /// a share of (its neighbours' neighbourhoods), at most the whole round.
    pub fn max_signers(&self) -> usize {
        (self.max_neighbors + 1)
            .saturating_mul(self.max_neighbors + 1)
            .min(self.max_clients)
    }

    /// The largest frame a client may send over the transport under these limits: the
    /// masked vector goes in chunks and every list is per neighbour, so this depends on k
    /// (not on n, and not on m).
    pub fn max_client_frame(&self) -> usize {
        let k = self.max_neighbors;
        let audit = 4 + 4 * MAX_AUDIT;
        let share_keys = HEADER_LEN + 64 + 4 + k * (4 + 64 + BUNDLE_LEN) + audit;
        let advertise = HEADER_LEN + SIGNED_KEYS_LEN;
        let reveal = HEADER_LEN + 32 + audit;
        let consistency = HEADER_LEN + 64 + audit;
        let check = HEADER_LEN + 4 + k * (4 + 1 + 32);
        let chunk = HEADER_LEN + 8 + packed_len(CHUNK_ELEMS, self.bits);
        let unmask = HEADER_LEN + 4 + (k + 1) * (4 + 1 + 32);
        [
            share_keys,
            advertise,
            reveal,
            consistency,
            check,
            chunk,
            unmask,
            HELLO_MAX,
        ]
        .into_iter()
        .max()
        .unwrap_or(HELLO_MAX)
    }

    /// The largest frame the server sends under these limits: every list it sends is
    /// opened around one client, so this depends on k and log n, not on n.
    pub fn max_server_frame(&self) -> usize {
        let d = self.depth();
        let list = 36;
        let proof = |n: usize| 8 + n * d * 36;
        let set = 4 + self.max_set_leaves() * 8 + proof(self.max_set_leaves());
        let opened = |n: usize| 4 + n * (9 + SIGNED_KEYS_LEN) + proof(n);
        let cohort = HEADER_LEN + list + 4 + proof(1);
        let keys = HEADER_LEN + 4 + COMMITTEE * 36 + list + set + opened(self.max_entries());
        let bundles = HEADER_LEN + 4 + self.max_neighbors * (4 + 96 + BUNDLE_LEN) + set;
        let survivors = HEADER_LEN + list + set;
        let unmask =
            HEADER_LEN + list + set + 4 + self.max_signers() * 68 + opened(self.max_signers());
        let partners = HEADER_LEN + 4 + 4 * self.max_neighbors;
        [
            cohort,
            keys,
            bundles,
            survivors,
            unmask,
            partners,
            HEADER_LEN + 2 + MAX_REASON,
            WELCOME_MAX,
        ]
        .into_iter()
        .max()
        .unwrap_or(WELCOME_MAX)
    }
}

/// The tag byte of every frame, after the version: a client's round messages (0x01..=0x07),
/// the server's (0x80..=0x87), and the transport's own frames (0x10.., 0x90..). The table in
/// the module docs gives each body.
pub mod tag {
    /// Client, stage 0: its signed round keys and a commitment to its graph nonce.
    pub const JOIN: u8 = 0x01;
    /// Client, stage 1: its graph nonce, revealed, and the cohort entries it audits.
    pub const REVEAL: u8 = 0x02;
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
    /// Server: the cohort's commitment and the proof of one client's entry.
    pub const COHORT: u8 = 0x80;
    /// Server: the committee's nonces and the cohort entries one client needs.
    pub const KEY_LIST: u8 = 0x81;
    /// Server: the bundles addressed to one client.
    pub const SHARE_BUNDLES: u8 = 0x82;
    /// Server: the neighbours a client masks with.
    pub const MASK_REQUEST: u8 = 0x83;
    /// Server: the survivor set's commitment, opened around one client.
    pub const SURVIVOR_LIST: u8 = 0x84;
    /// Server: the signatures a client checks on the survivor set.
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

/// The tag of a frame, after checking its version.
pub fn frame_tag(bytes: &[u8]) -> Result<u8, CodecError> {
    let (tag, _, _) = header(bytes)?;
    Ok(tag)
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
