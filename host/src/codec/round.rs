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
use crate::messages::{
    ClientMessage, DealerReport, Envelope, ForwardedBundle, ReportKind, RevealedShare,
    SealedBundle, ServerMessage, ShareKind, SignedKeys,
};

/// Bytes of a signed advertisement with a certificate (the longer credential).
pub const SIGNED_KEYS_LEN: usize = 96 + 1 + CERT_LEN + 64 + 1 + TICKET_LEN;

/// Bytes of a selection ticket (an RFC 9381 VRF proof).
pub const TICKET_LEN: usize = crate::crypto::vrf::PROOF_LEN;

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
        ClientMessage::MaskedInput(values) => chunks::encode_masked_input(env.round, values, bits),
        ClientMessage::PackedInput(p) => chunks::encode_packed_input(env.round, p),
        ClientMessage::MaskedChunk(run) => chunks::encode_piece(env.round, run),
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
        tag::MASKED_INPUT => chunks::read_masked_input(&mut r, limits)?,
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
