//! Audits of the server's committed lists, as more than one stage runs them: which leaves a
//! client asks to see (drawn with its own randomness once the root is fixed), and the check
//! of what the server opens. The share-keys and consistency stages draw; the share-check and
//! unmasking stages check.

use std::collections::BTreeSet;

use rand_core::CryptoRng;

use crate::crypto::ListCommitment;
use crate::error::{PeerMisbehaved, ProtocolError};
use crate::messages::SetOpening;

/// `count` distinct leaf indices in `0..len`, increasing, drawn with this client's own
/// randomness after the list's root is fixed; every leaf when there are no more.
pub(super) fn draw_leaves<R: CryptoRng>(rng: &mut R, len: u32, count: usize) -> Vec<u32> {
    if count as u64 >= u64::from(len) {
        return (0..len).collect();
    }
    let mut picked = BTreeSet::new();
    // Rejection sampling: unbiased.
    let zone = u32::MAX - u32::MAX % len;
    while picked.len() < count {
        let x = rng.next_u32();
        if x < zone {
            picked.insert(x % len);
        }
    }
    picked.into_iter().collect()
}

/// The audited leaves of a committed set of ring positions: the opening verifies (its leaves
/// keep to their splits), every leaf asked for is in it, and every value lies on the ring.
pub(super) fn check_audit(
    opening: &SetOpening,
    label: &[u8],
    set: &ListCommitment,
    asked: &[u32],
    ring: u32,
    what: &'static str,
) -> Result<(), ProtocolError> {
    let shown = opening
        .check(label, &set.root, set.len)
        .map_err(|why| PeerMisbehaved::BadProof { what, why })?;
    if let Some(index) = asked.iter().find(|a| !shown.has_leaf(**a)) {
        return Err(PeerMisbehaved::EntryMissing {
            what,
            index: *index,
        }
        .into());
    }
    if let Some((_, v)) = shown.leaves().iter().find(|(_, v)| *v >= ring) {
        return Err(PeerMisbehaved::SetOutOfRange { what, value: *v }.into());
    }
    Ok(())
}
