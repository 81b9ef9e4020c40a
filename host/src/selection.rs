//! Verifiable self-selection: who may be in a round is decided by each enrolled client's own
//! key and a seed the server cannot choose, never by the server.
//!
//! A client's budget of colluders is absolute (`ClientPolicy::colluders`): the most enrolled
//! identities that may work with the server, whatever round it presents. In a deployment of
//! 10^6 devices with 5% possibly corrupted that is 50,000, more than a round of 1,000 could
//! ever withstand, so the server must not be the one who picks the 1,000. Instead:
//!
//! * Time is cut into epochs of a length the deployment fixes (`ClientPolicy::epoch_secs`,
//!   an hour by default). The seed of epoch `e` is the input
//!   `"secagg/v1/selection" || CA public key || e` (see [`seed_input`]): nothing in it is the
//!   server's to choose.
//! * Client `u` is eligible for rounds of epoch `e` at rate `p` when the first 8 bytes of
//!   `VRF_u(seed(e))`, read as a big-endian integer, are below `p · 2^64`. The VRF is
//!   ECVRF-EDWARDS25519-SHA512-TAI ([`crate::crypto::vrf`]) under the client's Ed25519 identity
//!   key, which the deployment CA certified: so eligibility is a pseudorandom coin per
//!   (identity, epoch), fixed before anyone sees it, that only the client can compute and
//!   everyone can check.
//! * The round announces `(e, p)` ([`Selection`], part of the round configuration and of every
//!   signature). Each member's advertisement carries its [`Ticket`] (the VRF proof). The
//!   server checks every ticket; every client checks every member's certificate and ticket
//!   before it deals a share, and aborts if the server seated anyone ineligible.
//! * A client accepts the round only if `e` is its own clock's epoch or the one before (a
//!   round may straddle the boundary), and judges the round with the colluders it can contain:
//!   `Binomial(c, p)` exceeds [`crate::plan::colluders_in_cohort`]`(c, p, σ + 1)` with
//!   probability at most `2^-(σ+1)`. Eligibility is independent across identities because
//!   the VRF output is pseudorandom to anyone without the key, colluders included.
//!
//! Why the server cannot grind: the seed is a function of the epoch alone, and clients refuse
//! any epoch but the current one and its predecessor, so at any moment the server has at most
//! two seeds to pick from, and over the deployment's life one per epoch. Every session it runs
//! in an epoch sees the same eligible set; it can run many sessions but cannot make a client
//! eligible that is not, or raise its colluders' share of the eligible set. Choosing `p` does
//! not help it: the eligible sets are nested in `p`, and the client's colluder bound grows
//! with `p`. A server that waits for a lucky epoch gets one draw per epoch: over `E` epochs its
//! chance that some epoch's cohort holds more colluders than the bound is at most `E·2^-(σ+1)`
//! (with σ = 40 and hourly epochs, below 2^-25 over a century).

use sha2::{Digest, Sha256};

use crate::crypto::vrf;
use crate::identity::{CaPublicKey, IdentityKey, IdentityPublicKey};

/// A VRF proof that a member is eligible for an epoch.
pub type Ticket = [u8; vrf::PROOF_LEN];

const DOMAIN: &[u8] = b"secagg/v1/selection";

/// A round's self-selection: the epoch whose seed decides eligibility, and the rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Selection {
    epoch: u64,
    threshold: u64,
}

/// Why a selection or a ticket is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectionError {
    /// The rate is not in (0, 1).
    #[error("selection rate {0} is not in (0, 1)")]
    Rate(String),
    /// The member's proof does not verify under its identity key.
    #[error("its selection ticket does not verify: {0}")]
    Proof(vrf::VrfError),
    /// The proof verifies, but the member is not eligible at the round's rate.
    #[error("it is not eligible for epoch {epoch} at rate {}", *threshold as f64 / 2f64.powi(64))]
    NotEligible {
        /// The round's epoch.
        epoch: u64,
        /// The round's rate times 2^64.
        threshold: u64,
    },
    /// A self-selected round needs a ticket from every member.
    #[error("it sent no selection ticket")]
    Missing,
    /// A round without selection takes no ticket.
    #[error("it sent a selection ticket for a round without selection")]
    Unexpected,
}

impl Selection {
    /// Selection in `epoch` at `rate`, which must lie in (0, 1): the rate is rounded down to
    /// a multiple of 2^-64.
    pub fn new(epoch: u64, rate: f64) -> Result<Self, SelectionError> {
        if !(rate > 0.0 && rate < 1.0) {
            return Err(SelectionError::Rate(rate.to_string()));
        }
        // rate · 2^64 in [2^-1074 · 2^64, 2^64): at least 0 after flooring.
        let threshold = (rate * 18_446_744_073_709_551_616.0).floor() as u64;
        Self::from_threshold(epoch, threshold)
    }

    /// Selection in `epoch` where a member is eligible when its score is below `threshold`
    /// (rate = threshold / 2^64; the wire form).
    pub fn from_threshold(epoch: u64, threshold: u64) -> Result<Self, SelectionError> {
        if threshold == 0 {
            return Err(SelectionError::Rate("0".into()));
        }
        Ok(Self { epoch, threshold })
    }

    /// The epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The score a member must stay below.
    pub fn threshold(&self) -> u64 {
        self.threshold
    }

    /// The rate p.
    pub fn rate(&self) -> f64 {
        self.threshold as f64 / 18_446_744_073_709_551_616.0
    }

    /// Whether a VRF output makes its owner eligible.
    pub fn admits(&self, output: &[u8; vrf::OUTPUT_LEN]) -> bool {
        score(output) < self.threshold
    }

    /// Checks `ticket` as `identity`'s proof of eligibility, for a deployment whose CA is `ca`.
    pub fn check(
        &self,
        ca: &CaPublicKey,
        identity: &IdentityPublicKey,
        ticket: &Ticket,
    ) -> Result<(), SelectionError> {
        let output = vrf::verify(&identity.to_bytes(), &seed_input(ca, self.epoch), ticket)
            .map_err(SelectionError::Proof)?;
        if self.admits(&output) {
            Ok(())
        } else {
            Err(SelectionError::NotEligible {
                epoch: self.epoch,
                threshold: self.threshold,
            })
        }
    }
}

/// The VRF input of an epoch: the domain, the deployment's CA key and the epoch.
pub fn seed_input(ca: &CaPublicKey, epoch: u64) -> Vec<u8> {
    let mut alpha = Vec::with_capacity(DOMAIN.len() + 40);
    alpha.extend_from_slice(DOMAIN);
    alpha.extend_from_slice(&ca.to_bytes());
    alpha.extend_from_slice(&epoch.to_be_bytes());
    alpha
}

/// A client's draw for an epoch: its ticket and its score (eligible at rate p when the score
/// is below p · 2^64). `None` only with probability about 2^-256 (see [`vrf::prove`]).
pub fn draw(key: &IdentityKey, ca: &CaPublicKey, epoch: u64) -> Option<(Ticket, u64)> {
    let secret = key.to_secret_bytes();
    let (ticket, output) = vrf::prove(&secret, &seed_input(ca, epoch))?;
    Some((ticket, score(&output)))
}

fn score(output: &[u8; vrf::OUTPUT_LEN]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&output[..8]);
    u64::from_be_bytes(first)
}

/// The epoch of a Unix time, for epochs of `epoch_secs` seconds (at least 1).
pub fn epoch_at(unix_secs: u64, epoch_secs: u64) -> u64 {
    unix_secs / epoch_secs.max(1)
}

/// A digest of a selection for the round digest.
pub(crate) fn digest_into(selection: Option<&Selection>, h: &mut Sha256) {
    if let Some(s) = selection {
        h.update(DOMAIN);
        h.update(s.epoch.to_le_bytes());
        h.update(s.threshold.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn eligibility_follows_the_rate_and_only_the_owner_can_prove_it() {
        let seed = secagg_engine::testing::test_seed("selection::rate");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let ca = crate::identity::CaKey::generate(&mut rng).public();
        let other_ca = crate::identity::CaKey::generate(&mut rng).public();
        let sel = Selection::new(7, 0.25).unwrap();
        let mut eligible = 0;
        let n = 400;
        for _ in 0..n {
            let key = IdentityKey::generate(&mut rng);
            let (ticket, score) = draw(&key, &ca, 7).unwrap();
            let verdict = sel.check(&ca, &key.public(), &ticket);
            assert_eq!(verdict.is_ok(), score < sel.threshold(), "seed {seed}");
            if verdict.is_ok() {
                eligible += 1;
                // Another epoch, another deployment or another key: refused.
                let later = Selection::new(8, 0.25).unwrap();
                assert!(later.check(&ca, &key.public(), &ticket).is_err());
                assert!(sel.check(&other_ca, &key.public(), &ticket).is_err());
                let stranger = IdentityKey::generate(&mut rng).public();
                assert!(matches!(
                    sel.check(&ca, &stranger, &ticket),
                    Err(SelectionError::Proof(_))
                ));
            } else {
                assert!(matches!(
                    verdict,
                    Err(SelectionError::NotEligible { epoch: 7, .. })
                ));
            }
        }
        // Binomial(400, 1/4): mean 100, sd 8.7; outside 55..145 has probability < 2^-20.
        assert!(
            (55..145).contains(&eligible),
            "{eligible} of {n}, seed {seed}"
        );
    }

    #[test]
    fn rates_outside_the_open_interval_are_refused() {
        for bad in [0.0, 1.0, -0.5, 2.0, f64::NAN] {
            assert!(Selection::new(1, bad).is_err(), "{bad}");
        }
        assert!(Selection::from_threshold(1, 0).is_err());
        let s = Selection::new(3, 0.5).unwrap();
        assert_eq!(s.threshold(), 1 << 63);
        assert_eq!(s.rate(), 0.5);
        assert_eq!(epoch_at(7200, 3600), 2);
        assert_eq!(epoch_at(5, 0), 5);
    }
}
