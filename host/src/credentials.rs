//! Checking who signed what: credentials against the deployment CA, and many signatures at
//! once. Shared by the client (which trusts only its own policy's CA) and the server (which
//! checks the same things so that one client's bad credential costs only that client).

use crate::ClientId;
use crate::error::ProtocolError;
use crate::identity::{self, CaPublicKey, IdentityPublicKey};
use crate::messages::Credential;

/// The identity key `credential` proves for `id`: a certificate must name `id` and verify
/// under `ca`; with no CA (an unauthenticated round) any credential's key is taken as is.
pub(crate) fn identity_key<'a>(
    ca: Option<&CaPublicKey>,
    id: ClientId,
    credential: &'a Credential,
) -> Result<&'a IdentityPublicKey, ProtocolError> {
    match (ca, credential) {
        (None, c) => Ok(c.key()),
        (Some(_), Credential::SelfAsserted(_)) => Err(ProtocolError::UnsafeRequest(format!(
            "{id} has no certificate from the deployment CA"
        ))),
        (Some(ca), Credential::Certificate(cert)) => {
            cert.verify_for(ca, id)?;
            Ok(&cert.key)
        }
    }
}

/// One signature to check.
pub(crate) struct Signed<'a> {
    /// Who is said to have signed.
    pub signer: ClientId,
    /// With which key.
    pub key: &'a IdentityPublicKey,
    /// The signature's domain.
    pub domain: &'a [u8],
    /// The signed bytes.
    pub message: &'a [u8],
    /// The signature.
    pub signature: &'a [u8; 64],
}

/// Checks every signature (in one batch where the identity module batches); on failure the
/// signers whose signatures are bad.
pub(crate) fn verify_all(items: &[Signed<'_>]) -> Result<(), Vec<ClientId>> {
    let batch: Vec<identity::SignedItem<'_>> = items
        .iter()
        .map(|s| identity::SignedItem::new(s.key, s.domain, s.message, s.signature))
        .collect();
    match identity::verify_batch(&batch) {
        Ok(()) => Ok(()),
        Err(identity::IdentityError::BadSignatures { indices }) => Err(indices
            .into_iter()
            .filter_map(|i| items.get(i))
            .map(|s| s.signer)
            .collect()),
        Err(_) => Err(items.iter().map(|s| s.signer).collect()),
    }
}
