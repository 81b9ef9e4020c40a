//! The round's messages: what a client sends at each stage (JOIN to UNMASK_SHARES) and what
//! the server sends back (COHORT to ABORTED). A masked vector's body is the chunks module's.

use super::chunks;
use super::{
    Limits, Reader, Writer, frame_tag, header, read_credential, read_reason, tag,
    write_credential_to, write_reason,
};
use crate::ClientId;
use crate::crypto::{BUNDLE_LEN, PublicKeys};
use crate::error::CodecError;
use crate::identity::CERT_LEN;
use crate::merkle::Proof;
use crate::messages::{
    ClientMessage, DealerReport, Envelope, ForwardedBundle, IdentityOpening, KeyList,
    ListCommitment, OpenedEntry, Opening, ReportKind, RevealedShare, SealedBundle, ServerMessage,
    SetOpening, ShareKind, SignedKeys, UnmaskRequest,
};
use crate::view::{COMMITTEE, MAX_AUDIT};

/// Bytes of a signed advertisement with a certificate and a ticket (the longest).
pub const SIGNED_KEYS_LEN: usize = 96 + 1 + CERT_LEN + 64 + 1 + TICKET_LEN;

/// Bytes of a selection ticket (an RFC 9381 VRF proof).
pub const TICKET_LEN: usize = crate::crypto::vrf::PROOF_LEN;

/// The shortest opened cohort entry: index, id, kind, and an identity opening with a
/// self-asserted key and no ticket.
const MIN_OPENED_LEN: usize = 4 + 4 + 1 + 32 + 1 + 32 + 1 + 32;

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

/// `indices` = n u32, n × u32 (an audit request: at most [`MAX_AUDIT`]).
fn write_indices(w: &mut Writer, indices: &[u32]) {
    w.count(indices.len());
    for i in indices {
        w.u32(*i);
    }
}

fn read_indices(r: &mut Reader<'_>, field: &'static str) -> Result<Vec<u32>, CodecError> {
    let n = r.count(field, MAX_AUDIT, 4)?;
    (0..n).map(|_| r.u32(field)).collect()
}

fn write_ticket(w: &mut Writer, ticket: Option<&crate::selection::Ticket>) {
    match ticket {
        None => w.u8(0),
        Some(t) => {
            w.u8(1);
            w.bytes(t);
        }
    }
}

fn read_ticket(r: &mut Reader<'_>) -> Result<Option<crate::selection::Ticket>, CodecError> {
    match r.u8("ticket flag")? {
        0 => Ok(None),
        1 => Ok(Some(r.array("selection ticket")?)),
        f => Err(CodecError::Invalid {
            field: "ticket flag",
            why: format!("{f} is not 0 (none) or 1 (a ticket)"),
        }),
    }
}

fn write_signed(w: &mut Writer, s: &SignedKeys) {
    w.bytes(&s.keys.encryption);
    w.bytes(&s.keys.masking);
    w.bytes(&s.commitment);
    write_credential_to(&mut w.0, &s.credential);
    w.bytes(&s.signature);
    write_ticket(w, s.ticket.as_ref());
}

fn read_signed(r: &mut Reader<'_>) -> Result<SignedKeys, CodecError> {
    let keys = PublicKeys {
        encryption: r.array("c_pk")?,
        masking: r.array("s_pk")?,
    };
    let commitment = r.array("nonce commitment")?;
    let credential = read_credential(r)?;
    let signature = r.array("signature")?;
    let ticket = read_ticket(r)?;
    Ok(SignedKeys {
        keys,
        commitment,
        credential,
        signature,
        ticket,
    })
}

/// `digests` = n u32, n × \[32\], at most `max`.
fn write_digests(w: &mut Writer, digests: &[[u8; 32]]) {
    w.count(digests.len());
    for d in digests {
        w.bytes(d);
    }
}

fn read_digests(
    r: &mut Reader<'_>,
    field: &'static str,
    max: usize,
) -> Result<Vec<[u8; 32]>, CodecError> {
    let n = r.count(field, max, 32)?;
    (0..n).map(|_| r.array(field)).collect()
}

/// `list` = root \[32\], len u32.
fn write_list(w: &mut Writer, l: &ListCommitment) {
    w.bytes(&l.root);
    w.u32(l.len);
}

fn read_list(r: &mut Reader<'_>, limits: &Limits) -> Result<ListCommitment, CodecError> {
    let root = r.array("list root")?;
    let len = r.u32("list length")?;
    if len as usize > limits.max_clients {
        return Err(CodecError::TooLong {
            field: "list length",
            len: u64::from(len),
            max: limits.max_clients as u64,
        });
    }
    Ok(ListCommitment { root, len })
}

/// `set opening` = n u32, n × (leaf u32, value u32), proof digests.
fn write_set_opening(w: &mut Writer, o: &SetOpening) {
    w.count(o.leaves.len());
    for (i, v) in &o.leaves {
        w.u32(*i);
        w.u32(*v);
    }
    write_proof(w, &o.proof);
}

/// `proof` = digests, n u32, n × split u32.
fn write_proof(w: &mut Writer, p: &Proof) {
    write_digests(w, &p.digests);
    w.count(p.splits.len());
    for s in &p.splits {
        w.u32(*s);
    }
}

/// A proof for `leaves` opened leaves of a tree of these limits: at most leaves × depth digests
/// and as many splits.
fn read_proof(
    r: &mut Reader<'_>,
    field: &'static str,
    leaves: usize,
    limits: &Limits,
) -> Result<Proof, CodecError> {
    let max = leaves.saturating_mul(limits.depth());
    let digests = read_digests(r, field, max)?;
    let n = r.count(field, max, 4)?;
    let splits = (0..n).map(|_| r.u32(field)).collect::<Result<_, _>>()?;
    Ok(Proof { digests, splits })
}

fn read_set_opening(r: &mut Reader<'_>, limits: &Limits) -> Result<SetOpening, CodecError> {
    let n = r.count("set leaves", limits.max_set_leaves(), 8)?;
    let mut leaves = Vec::with_capacity(n);
    for _ in 0..n {
        leaves.push((r.u32("set leaf")?, r.u32("set value")?));
    }
    let proof = read_proof(r, "set proof", n, limits)?;
    Ok(SetOpening { leaves, proof })
}

/// `opened` = n u32, n × (index u32, id u32, kind u8 (0 full: signed | 1 identity:
/// commitment \[32\], credential, ticket flag (+ ticket), keys digest \[32\])), proof.
fn write_opened(w: &mut Writer, entries: &[OpenedEntry], proof: &Proof) {
    w.count(entries.len());
    for e in entries {
        w.u32(e.index);
        w.u32(e.id.0);
        match &e.opening {
            Opening::Full(s) => {
                w.u8(0);
                write_signed(w, s);
            }
            Opening::Identity(i) => {
                w.u8(1);
                w.bytes(&i.commitment);
                write_credential_to(&mut w.0, &i.credential);
                write_ticket(w, i.ticket.as_ref());
                w.bytes(&i.keys_digest);
            }
        }
    }
    write_proof(w, proof);
}

type Opened = (Vec<OpenedEntry>, Proof);

fn read_opened(r: &mut Reader<'_>, limits: &Limits, max: usize) -> Result<Opened, CodecError> {
    let n = r.count("entries", max, MIN_OPENED_LEN)?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let index = r.u32("entry index")?;
        let id = ClientId(r.u32("entry id")?);
        let opening = match r.u8("entry kind")? {
            0 => Opening::Full(read_signed(r)?),
            1 => Opening::Identity(IdentityOpening {
                commitment: r.array("nonce commitment")?,
                credential: read_credential(r)?,
                ticket: read_ticket(r)?,
                keys_digest: r.array("keys digest")?,
            }),
            k => {
                return Err(CodecError::Invalid {
                    field: "entry kind",
                    why: format!("{k} is not 0 (full) or 1 (identity)"),
                });
            }
        };
        entries.push(OpenedEntry { index, id, opening });
    }
    let proof = read_proof(r, "entries proof", n, limits)?;
    Ok((entries, proof))
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
        ClientMessage::Join(s) => {
            let mut w = Writer::new(tag::JOIN, env.round);
            write_signed(&mut w, s);
            w.0
        }
        ClientMessage::Reveal { nonce, audit } => {
            let mut w = Writer::new(tag::REVEAL, env.round);
            w.bytes(nonce);
            write_indices(&mut w, audit);
            w.0
        }
        ClientMessage::ShareKeys {
            self_key,
            own_point,
            bundles,
            audit,
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
            write_indices(&mut w, audit);
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
        ClientMessage::MaskedInput(values) => chunks::encode_masked_input(env.round, values, bits),
        ClientMessage::PackedInput(p) => chunks::encode_packed_input(env.round, p),
        ClientMessage::MaskedChunk(run) => chunks::encode_piece(env.round, run),
        ClientMessage::Consistency { signature, audit } => {
            let mut w = Writer::new(tag::CONSISTENCY, env.round);
            w.bytes(signature);
            write_indices(&mut w, audit);
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
    let (placed, run) = chunks::read_chunk(bytes, limits, None)?;
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
        tag::JOIN => ClientMessage::Join(read_signed(&mut r)?),
        tag::REVEAL => ClientMessage::Reveal {
            nonce: r.array("nonce")?,
            audit: read_indices(&mut r, "audit")?,
        },
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
                audit: read_indices(&mut r, "audit")?,
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
        tag::MASKED_INPUT => chunks::read_masked_input(&mut r, limits)?,
        tag::CONSISTENCY => ClientMessage::Consistency {
            signature: r.array("signature")?,
            audit: read_indices(&mut r, "audit")?,
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
        ServerMessage::Cohort {
            cohort,
            position,
            proof,
        } => {
            let mut w = Writer::new(tag::COHORT, env.round);
            write_list(&mut w, cohort);
            w.u32(*position);
            write_proof(&mut w, proof);
            w.0
        }
        ServerMessage::KeyList(k) => {
            let mut w = Writer::new(tag::KEY_LIST, env.round);
            w.count(k.reveals.len());
            for (i, nonce) in &k.reveals {
                w.u32(*i);
                w.bytes(nonce);
            }
            write_list(&mut w, &k.present);
            write_set_opening(&mut w, &k.presence);
            write_opened(&mut w, &k.entries, &k.proof);
            w.0
        }
        ServerMessage::ShareBundles { bundles, audit } => {
            let mut w = Writer::new(tag::SHARE_BUNDLES, env.round);
            w.count(bundles.len());
            for b in bundles {
                w.u32(b.sender.0);
                w.bytes(&b.self_key);
                w.bytes(&b.mask_point);
                w.bytes(&b.self_point);
                write_ciphertext(&mut w, &b.ciphertext);
            }
            write_set_opening(&mut w, audit);
            w.0
        }
        ServerMessage::MaskRequest(ids) => {
            let mut w = Writer::new(tag::MASK_REQUEST, env.round);
            write_ids(&mut w, ids);
            w.0
        }
        ServerMessage::SurvivorList { survivors, opening } => {
            let mut w = Writer::new(tag::SURVIVOR_LIST, env.round);
            write_list(&mut w, survivors);
            write_set_opening(&mut w, opening);
            w.0
        }
        ServerMessage::UnmaskRequest(u) => {
            let mut w = Writer::new(tag::UNMASK_REQUEST, env.round);
            write_list(&mut w, &u.survivors);
            write_set_opening(&mut w, &u.audit);
            w.count(u.signatures.len());
            for (i, sig) in &u.signatures {
                w.u32(*i);
                w.bytes(sig);
            }
            write_opened(&mut w, &u.identities, &u.proof);
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
        tag::COHORT => ServerMessage::Cohort {
            cohort: read_list(&mut r, limits)?,
            position: r.u32("position")?,
            proof: read_proof(&mut r, "cohort proof", 1, limits)?,
        },
        tag::KEY_LIST => {
            let n = r.count("reveals", COMMITTEE, 36)?;
            let mut reveals = Vec::with_capacity(n);
            for _ in 0..n {
                reveals.push((r.u32("reveal index")?, r.array("nonce")?));
            }
            let present = read_list(&mut r, limits)?;
            let presence = read_set_opening(&mut r, limits)?;
            let (entries, proof) = read_opened(&mut r, limits, limits.max_entries())?;
            ServerMessage::KeyList(KeyList {
                reveals,
                present,
                presence,
                entries,
                proof,
            })
        }
        tag::SHARE_BUNDLES => {
            let n = r.count("bundles", limits.max_neighbors, 4 + 96 + BUNDLE_LEN)?;
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
            ServerMessage::ShareBundles {
                bundles,
                audit: read_set_opening(&mut r, limits)?,
            }
        }
        tag::MASK_REQUEST => ServerMessage::MaskRequest(read_ids(&mut r, limits, "partners")?),
        tag::SURVIVOR_LIST => ServerMessage::SurvivorList {
            survivors: read_list(&mut r, limits)?,
            opening: read_set_opening(&mut r, limits)?,
        },
        tag::UNMASK_REQUEST => {
            let survivors = read_list(&mut r, limits)?;
            let audit = read_set_opening(&mut r, limits)?;
            let n = r.count("signatures", limits.max_signers(), 68)?;
            let mut signatures = Vec::with_capacity(n);
            for _ in 0..n {
                signatures.push((r.u32("signer")?, r.array("signature")?));
            }
            let (identities, proof) = read_opened(&mut r, limits, limits.max_signers())?;
            ServerMessage::UnmaskRequest(UnmaskRequest {
                survivors,
                audit,
                signatures,
                identities,
                proof,
            })
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
    use crate::codec::tests::{client_samples, limits, server_samples};

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

    #[test]
    fn counts_are_bounded_before_allocation() {
        let l = limits();
        // A key list claiming 4 billion reveals in a 20-byte message.
        let mut w = Writer::new(tag::KEY_LIST, 1);
        w.u32(u32::MAX);
        assert!(matches!(
            decode_server(&w.0, &l),
            Err(CodecError::TooLong {
                field: "reveals",
                ..
            })
        ));
        // A cohort proof deeper than the round's size allows (10 clients: depth 4).
        let mut w = Writer::new(tag::COHORT, 1);
        w.bytes(&[0; 32]);
        w.u32(10);
        w.u32(0);
        w.u32(5);
        w.bytes(&[0; 5 * 32]);
        w.u32(0);
        assert!(matches!(
            decode_server(&w.0, &l),
            Err(CodecError::TooLong {
                field: "cohort proof",
                ..
            })
        ));
        // A list longer than the round.
        let mut w = Writer::new(tag::SURVIVOR_LIST, 1);
        w.bytes(&[0; 32]);
        w.u32(11);
        assert!(matches!(
            decode_server(&w.0, &l),
            Err(CodecError::TooLong {
                field: "list length",
                ..
            })
        ));
        // An audit request above the most a server answers.
        let mut w = Writer::new(tag::REVEAL, 1);
        w.bytes(&[0; 32]);
        w.u32(MAX_AUDIT as u32 + 1);
        assert!(matches!(
            decode_client(&w.0, &l),
            Err(CodecError::TooLong { field: "audit", .. })
        ));
        // Within max_clients but more than the bytes present.
        let mut w = Writer::new(tag::MASK_REQUEST, 1);
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
