//! Binding a transport's node to an enrolled identity, for transports (Flower) whose nodes
//! have ids of their own: the node signs, with its identity key, the round's welcome and the
//! node id the transport gave it. The server admits the node under its certificate's id only
//! when the certificate is the CA's and the signature verifies, so no node can take another
//! certificate's id, whoever answers first.

use secagg_host::ClientId;
use secagg_host::identity::{CaPublicKey, Certificate, IdentityError, IdentityKey, SIGNATURE_LEN};

/// Domain of the node-binding signature.
pub const DOMAIN: &[u8] = b"secagg/python/v1/node-binding";

/// What the identity key signs: `u64 LE node || welcome`. The welcome holds the round id
/// (random per round) and the round context, so a binding is good for one round and node.
fn message(welcome: &[u8], node: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(8 + welcome.len());
    m.extend_from_slice(&node.to_le_bytes());
    m.extend_from_slice(welcome);
    m
}

/// The signature binding `node` to `key` for the round of `welcome`.
pub fn sign(key: &IdentityKey, welcome: &[u8], node: u64) -> [u8; SIGNATURE_LEN] {
    key.sign(DOMAIN, &message(welcome, node))
}

/// Why a binding is refused.
pub enum Refusal {
    /// The certificate does not parse.
    Certificate(IdentityError),
    /// The certificate is not the CA's.
    NotEnrolled(IdentityError),
    /// The signature is not 64 bytes.
    SignatureLength(usize),
    /// The signature does not verify under the certificate's key for this round and node.
    BadSignature { id: ClientId },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Certificate(e) => write!(f, "unreadable certificate: {e}"),
            Refusal::NotEnrolled(e) => write!(f, "{e}"),
            Refusal::SignatureLength(n) => {
                write!(f, "a node binding of {n} bytes, not {SIGNATURE_LEN}")
            }
            Refusal::BadSignature { id } => write!(
                f,
                "the node binding does not verify under the key of client {id}'s certificate \
                 (a node presenting a certificate it does not hold the key of, or a binding \
                 made for another node or round)"
            ),
        }
    }
}

/// The client id `node` may join under: its certificate's, once the certificate verifies
/// under `ca` and `signature` binds it to `node` for the round of `welcome`.
pub fn verify(
    ca: &CaPublicKey,
    welcome: &[u8],
    node: u64,
    certificate: &[u8],
    signature: &[u8],
) -> Result<ClientId, Refusal> {
    let cert = Certificate::from_bytes(certificate).map_err(Refusal::Certificate)?;
    cert.verify(ca).map_err(Refusal::NotEnrolled)?;
    let signature: &[u8; SIGNATURE_LEN] = signature
        .try_into()
        .map_err(|_| Refusal::SignatureLength(signature.len()))?;
    cert.key
        .verify(DOMAIN, &message(welcome, node), signature)
        .map_err(|_| Refusal::BadSignature { id: cert.id })?;
    Ok(cert.id)
}
