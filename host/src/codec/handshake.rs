//! The transport's handshake, before any round message: the server's [`Challenge`], the
//! client's [`Hello`] that signs it, and the server's answer, a welcome with the round
//! configuration or a reject with a reason.

use std::time::Duration;

use secagg_engine::Prg;

use super::{
    HEADER_LEN, Writer, expect_tag, read_credential, read_reason, tag, write_credential_to,
    write_reason,
};
use crate::ClientId;
use crate::config::{Quantization, RoundConfig};
use crate::error::CodecError;
use crate::identity::CERT_LEN;
use crate::messages::Credential;

/// Bytes of a welcome frame for a round without DP.
pub const WELCOME_LEN: usize = HEADER_LEN + 4 * 6 + 2 + 4 * 3 + 8 + 32 + 16;
/// Bytes of the DP setting a DP round's welcome appends.
pub const WELCOME_DP_LEN: usize = 4 + 8 + 8 + 4 + 8;
/// The largest welcome: a DP round's.
pub const WELCOME_MAX: usize = WELCOME_LEN + WELCOME_DP_LEN;
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
/// stage timeout ms u64 | context [32] | selection epoch u64 | selection threshold u64 |
/// (flag bit 1 only) dp clip f32 | dp scale f64 | dp noise f64 | dp honest u32 | dp beta f64
/// ```
///
/// Flag bit 0 says the round has verifiable self-selection (epoch and threshold, the rate
/// times 2^64); without it both are zero. Flag bit 1 says the round has distributed DP
/// ([`crate::dp::DpConfig`]), whose setting follows; without it the frame ends there, so a
/// round without DP is written as before. Other flag bits are refused.
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
    let flags = u32::from(config.selection().is_some()) | (u32::from(config.dp().is_some()) << 1);
    w.u32(flags);
    let ms = u64::try_from(config.stage_timeout().as_millis()).unwrap_or(u64::MAX);
    w.bytes(&ms.to_le_bytes());
    w.bytes(config.context());
    let (epoch, threshold) = config
        .selection()
        .map_or((0, 0), |s| (s.epoch(), s.threshold()));
    w.bytes(&epoch.to_le_bytes());
    w.bytes(&threshold.to_le_bytes());
    if let Some(dp) = config.dp() {
        w.bytes(&dp.clip.to_le_bytes());
        w.bytes(&dp.scale.to_le_bytes());
        w.bytes(&dp.noise.to_le_bytes());
        w.u32(dp.honest);
        w.bytes(&dp.beta.to_le_bytes());
    }
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
    if flags & !0b11 != 0 {
        return Err(CodecError::Invalid {
            field: "flags",
            why: format!("unknown flag bits {flags:#x}"),
        });
    }
    let dp = if flags & 0b10 != 0 {
        Some(crate::dp::DpConfig {
            clip: f32::from_le_bytes(r.array("dp clip")?),
            scale: f64::from_le_bytes(r.array("dp scale")?),
            noise: f64::from_le_bytes(r.array("dp noise")?),
            honest: r.u32("dp honest")?,
            beta: f64::from_le_bytes(r.array("dp beta")?),
        })
    } else {
        None
    };
    r.finish()?;
    let selection = match flags & 1 {
        0 if epoch == 0 && score_below == 0 => None,
        0 => {
            return Err(CodecError::Invalid {
                field: "selection",
                why: "an epoch or threshold without the selection flag".into(),
            });
        }
        _ => Some(
            crate::selection::Selection::from_threshold(epoch, score_below).map_err(|e| {
                CodecError::Invalid {
                    field: "selection",
                    why: e.to_string(),
                }
            })?,
        ),
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
        .dp(dp)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::tests::{sample_config, sample_dp_config, sample_hello};

    #[test]
    fn a_dp_welcome_round_trips_and_is_checked() {
        let c = sample_dp_config();
        let bytes = encode_welcome(&c);
        assert_eq!(bytes.len(), WELCOME_MAX);
        assert_eq!(decode_welcome(&bytes).unwrap(), c);
        for cut in 0..bytes.len() {
            assert!(decode_welcome(&bytes[..cut]).is_err());
        }
        // A DP setting that fails its checks (zero honest survivors) is refused.
        let mut bad = bytes.clone();
        let honest = WELCOME_LEN + 4 + 8 + 8;
        bad[honest..honest + 4].copy_from_slice(&0u32.to_le_bytes());
        assert!(decode_welcome(&bad).is_err());
        // The DP flag without its setting, or a setting without the flag, is refused.
        let flags = HEADER_LEN + 4 * 6 + 2 + 4 + 4;
        assert!(decode_welcome(&bytes[..WELCOME_LEN]).is_err());
        let mut unflagged = bytes.clone();
        unflagged[flags] &= !0b10;
        assert!(decode_welcome(&unflagged).is_err());
        let mut unknown = bytes;
        unknown[flags] |= 0b100;
        assert!(decode_welcome(&unknown).is_err());
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
}
