//! Checking who signed what: credentials against the deployment CA, and many signatures at
//! once. Shared by the client (which trusts only its own policy's CA) and the server (which
//! checks the same things so that one client's bad credential costs only that client).

use crate::ClientId;
use crate::error::{PeerMisbehaved, ProtocolError};
use crate::identity::{self, CaPublicKey, IdentityPublicKey, SignedItem};
use crate::messages::Credential;

/// The identity key `credential` claims for `id`, and — when a CA is trusted — the
/// certificate signature that must verify for the claim to hold (to batch with others). A
/// certificate must name `id`; a self-asserted key is refused when a CA is trusted. With no
/// CA (an unauthenticated round) any credential's key is taken as is.
pub(crate) fn claimed_key(
    ca: Option<&CaPublicKey>,
    id: ClientId,
    credential: &Credential,
) -> Result<(IdentityPublicKey, Option<SignedItem<'static>>), ProtocolError> {
    match (ca, credential) {
        (None, c) => Ok((c.key()?, None)),
        (Some(_), Credential::SelfAsserted(_)) => Err(PeerMisbehaved::NoCertificate { id }.into()),
        (Some(ca), Credential::Certificate(_)) => {
            let cert = credential
                .parse_certificate()
                .ok_or(ProtocolError::UnknownClient(id))??;
            if cert.id != id {
                return Err(identity::IdentityError::WrongId {
                    expected: id,
                    found: cert.id,
                }
                .into());
            }
            Ok((cert.key, Some(cert.signed_item(ca))))
        }
    }
}

/// The identity key `credential` proves for `id`, its certificate checked now (one
/// signature; see [`claimed_key`] to batch).
pub(crate) fn identity_key(
    ca: Option<&CaPublicKey>,
    id: ClientId,
    credential: &Credential,
) -> Result<IdentityPublicKey, ProtocolError> {
    let (key, cert) = claimed_key(ca, id, credential)?;
    if let Some(item) = cert
        && identity::verify_batch(&[item]).is_err()
    {
        return Err(identity::IdentityError::BadCertificate { id }.into());
    }
    Ok(key)
}

/// Checks every signature in one batch; on failure the indices of the bad ones.
pub(crate) fn verify_all(items: &[(ClientId, SignedItem<'_>)]) -> Result<(), Vec<usize>> {
    let batch: Vec<SignedItem<'_>> = items.iter().map(|(_, i)| i.clone()).collect();
    match identity::verify_batch(&batch) {
        Ok(()) => Ok(()),
        Err(identity::IdentityError::BadSignatures { indices }) => Err(indices),
        Err(_) => Err((0..items.len()).collect()),
    }
}

/// The clients named by `indices` of `items`, sorted, each once.
pub(crate) fn names(items: &[(ClientId, SignedItem<'_>)], indices: &[usize]) -> Vec<ClientId> {
    let mut ids: Vec<ClientId> = indices
        .iter()
        .filter_map(|i| items.get(*i))
        .map(|(c, _)| *c)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}
