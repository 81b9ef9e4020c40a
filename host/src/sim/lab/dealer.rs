//! Cheating dealers: clients written from the public cryptography, as an attacker would, that
//! join and advertise honestly and then deal as their [`DealerFault`] says.

use std::collections::VecDeque;

use curve25519_dalek::Scalar;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use secagg_engine::{Backend, CpuEngine, MaskTerm};

use super::super::{SimConfig, sim_identity_key};
use crate::crypto::{
    ADVERTISE_DOMAIN, BundlePlaintext, ClientSecrets, ListCommitment, PublicKeys, RoundDigest,
    SessionId, advertisement_message, deal, nonce_commitment, self_mask_seed, share_points_digest,
};
use crate::identity::{CaKey, IdentityKey};
use crate::messages::{
    ClientMessage, Credential, Envelope, KeyList, SealedBundle, ServerMessage, ShareKind,
    SignedKeys,
};
use crate::view::RoundView;
use crate::{ClientId, ClientStatus};

/// How a cheating dealer cheats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DealerFault {
    /// These holders get a self-mask share off the committed polynomial (the others get
    /// correct ones).
    BadShares(Vec<ClientId>),
    /// The self-mask key β·B commits to another secret than the shares share (so the share
    /// points do not lie on a polynomial through it).
    FalseCommitment,
    /// Deals honestly, then accuses this honest dealer of bad shares, revealing the genuine
    /// bundle key of their pair as its "proof".
    FalseAccusation(ClientId),
    /// Deals honestly, but is an identity the round's self-selection does not admit: it
    /// advertises its genuine ticket, which verifies and loses (a server that seats it
    /// anyway is lying about who is eligible).
    Ineligible,
    /// Publishes the σ and β share points of these holders with a point of order 8 added
    /// (their shares unchanged): compared byte for byte the shares do not match their points;
    /// up to the cofactor they do.
    TorsionPoints(Vec<ClientId>),
    /// Publishes this holder's β share point as a non-canonical encoding
    /// ([`NON_CANONICAL_POINT`]).
    NonCanonicalPoint(ClientId),
    /// Deals σ on a polynomial of degree t (one too many: every share matches its point, but
    /// no t of them rebuild σ), then goes silent, so that the server must rebuild σ to remove
    /// its pairwise masks.
    MaskKeyOfDegreeT,
    /// Deals β on a polynomial of degree t, then plays on as a survivor: masks its input,
    /// signs the survivor list and reveals its own β share, so that the server must rebuild
    /// β. (It reports every bundle it received as unreadable, so it holds no one's shares.)
    SelfKeyOfDegreeT,
}

/// A non-canonical encoding of a curve point: y = p + 3 (p = 2^255 − 19), which decompresses
/// to the point with y = 3. (Every non-canonical encoding of a point — y ≥ p, or x = 0 with the
/// sign bit set — is of a point outside the prime-order subgroup or of the identity, so the
/// rule refuses it twice; it is named for the first rule it breaks.)
pub const NON_CANONICAL_POINT: [u8; 32] = {
    let mut b = [0xff; 32];
    b[0] = 0xf0;
    b[31] = 0x7f;
    b
};

/// A client that deals bad shares: it joins and advertises honestly, deals as its fault says,
/// reports nothing on the bundles it receives, and then goes silent — except a
/// [`DealerFault::SelfKeyOfDegreeT`] dealer, which plays on to the unmasking. Written from the
/// public cryptography, as an attacker would.
pub(super) struct CheatingDealer {
    pub(super) id: ClientId,
    cfg: SimConfig,
    round: RoundDigest,
    key: IdentityKey,
    fault: DealerFault,
    rng: ChaCha20Rng,
    nonce: [u8; 32],
    /// The cohort's commitment and this dealer's index in it, once known.
    cohort: Option<(ListCommitment, u32)>,
    secrets: ClientSecrets,
    /// The session and its neighbours' keys, once known (for a false accusation).
    session: Option<(SessionId, Vec<(ClientId, PublicKeys)>)>,
    /// Its own share of β, once dealt (revealed by a dealer that plays on).
    own_self_share: Option<Scalar>,
    /// Its input (masked by a dealer that plays on).
    input: Vec<u32>,
    pub(super) outbox: VecDeque<Envelope<ClientMessage>>,
    pub(super) status: ClientStatus,
}

impl CheatingDealer {
    pub(super) fn new(
        cfg: &SimConfig,
        ca: &CaKey,
        id: ClientId,
        fault: DealerFault,
        input: Vec<u32>,
    ) -> Self {
        let key = sim_identity_key(cfg, id);
        let credential = Credential::certificate(&ca.issue(id, &key.public()));
        let mut rng = ChaCha20Rng::seed_from_u64(cfg.seed ^ 0xbad);
        rng.set_stream(u64::from(id.0));
        let mut nonce = [0u8; 32];
        rng.fill_bytes(&mut nonce);
        let round = RoundDigest::of(&cfg.round);
        let commitment = nonce_commitment(&round, id, &nonce);
        let secrets = ClientSecrets::generate(&mut rng);
        let keys = secrets.public_keys();
        let m = advertisement_message(&round, id, &keys, &commitment);
        let signed = SignedKeys {
            keys,
            commitment,
            credential,
            signature: key.sign(ADVERTISE_DOMAIN, &m),
            ticket: cfg.round.selection().and_then(|s| {
                crate::selection::draw(&key, &ca.public(), s.epoch()).map(|(ticket, _)| ticket)
            }),
        };
        Self {
            id,
            cfg: cfg.clone(),
            round,
            key,
            fault,
            rng,
            nonce,
            cohort: None,
            secrets,
            session: None,
            own_self_share: None,
            input,
            outbox: VecDeque::from([Envelope {
                round: cfg.round.round_id(),
                message: ClientMessage::Join(signed),
            }]),
            status: ClientStatus::Running(crate::Stage::AdvertiseKeys),
        }
    }

    fn send(&mut self, message: ClientMessage) {
        self.outbox.push_back(Envelope {
            round: self.cfg.round.round_id(),
            message,
        });
    }

    pub(super) fn handle(&mut self, env: Envelope<ServerMessage>) {
        match env.message {
            ServerMessage::Cohort {
                cohort, position, ..
            } => {
                self.cohort = Some((cohort, position));
                self.send(ClientMessage::Reveal {
                    nonce: self.nonce,
                    audit: Vec::new(),
                });
            }
            ServerMessage::KeyList(list) => {
                if let Some(m) = self.deal(&list) {
                    self.send(m);
                }
                self.status = ClientStatus::Running(crate::Stage::ShareCheck);
            }
            // It reports nothing on the others' bundles, or accuses an honest dealer; a dealer
            // that plays on calls every bundle unreadable.
            ServerMessage::ShareBundles { bundles, .. } => {
                let reports = if self.plays_on() {
                    bundles
                        .iter()
                        .map(|b| crate::messages::DealerReport {
                            dealer: b.sender,
                            kind: crate::messages::ReportKind::Unreadable,
                        })
                        .collect()
                } else {
                    self.false_accusation().into_iter().collect()
                };
                self.send(ClientMessage::ShareCheck(reports));
            }
            ServerMessage::MaskRequest(partners) if self.plays_on() => {
                if let Some(m) = self.masked_input(&partners) {
                    self.send(m);
                }
            }
            ServerMessage::SurvivorList { survivors, .. } if self.plays_on() => {
                if let Some((session, _)) = &self.session {
                    let digest = crate::crypto::survivors_digest(session, &survivors);
                    let signature = self.key.sign(crate::crypto::SURVIVORS_DOMAIN, &digest);
                    self.send(ClientMessage::Consistency {
                        signature,
                        audit: Vec::new(),
                    });
                }
            }
            ServerMessage::UnmaskRequest(_) if self.plays_on() => {
                if let Some(share) = self.own_self_share {
                    self.send(ClientMessage::UnmaskShares(vec![
                        crate::messages::RevealedShare {
                            owner: self.id,
                            kind: ShareKind::SelfMask,
                            value: share.to_bytes(),
                        },
                    ]));
                }
            }
            ServerMessage::Aborted(r) => {
                self.status = ClientStatus::Aborted(crate::ProtocolError::ServerAborted(r.clone()));
            }
            _ => {}
        }
    }

    /// Whether it goes on after the share check as a surviving client would.
    fn plays_on(&self) -> bool {
        self.fault == DealerFault::SelfKeyOfDegreeT
    }

    /// Its input under its self mask and one pairwise mask per partner, as an honest client
    /// masks it.
    fn masked_input(&self, partners: &[ClientId]) -> Option<ClientMessage> {
        let (session, list) = self.session.as_ref()?;
        let secrets = &self.secrets;
        let peers: Vec<(ClientId, &PublicKeys)> = list
            .iter()
            .filter(|(id, _)| partners.binary_search(id).is_ok())
            .map(|(id, k)| (*id, k))
            .collect();
        let seeds = secrets.pairwise_seeds(session, self.id, &peers).ok()?;
        let mut terms = vec![MaskTerm::plus(self_mask_seed(
            secrets.self_scalar(),
            session,
        ))];
        for ((v, _), seed) in peers.iter().zip(seeds) {
            terms.push(if self.id < *v {
                MaskTerm::plus(seed)
            } else {
                MaskTerm::minus(seed)
            });
        }
        let mut masked = self.input.clone();
        CpuEngine::new()
            .apply_masks(
                &mut masked,
                0,
                &terms,
                self.cfg.round.prg(),
                self.cfg.round.modulus(),
            )
            .ok()?;
        Some(ClientMessage::MaskedInput(masked))
    }

    /// A report accusing the dealer named by the fault, with the genuine key of their pair.
    fn false_accusation(&self) -> Option<crate::messages::DealerReport> {
        let DealerFault::FalseAccusation(accused) = &self.fault else {
            return None;
        };
        let (session, list) = self.session.as_ref()?;
        let keys = list.iter().find(|(id, _)| id == accused).map(|(_, k)| k)?;
        let key = self
            .secrets
            .bundle_key(session, self.id, *accused, keys)
            .ok()?;
        Some(crate::messages::DealerReport {
            dealer: *accused,
            kind: crate::messages::ReportKind::BadShares {
                bundle_key: key.reveal(),
            },
        })
    }

    /// Deals both secrets to its present neighbours (those the key list opens in full),
    /// cheating as the fault says.
    fn deal(&mut self, list: &KeyList) -> Option<ClientMessage> {
        let (cohort, position) = self.cohort?;
        let secrets = &self.secrets;
        let RoundView { session, ring, .. } = RoundView::derive(
            &self.round,
            &cohort,
            &list.reveals,
            &list.present,
            self.cfg.round.neighbors(),
        );
        let around = ring.neighbors(position);
        let mut keys: Vec<(ClientId, PublicKeys)> = list
            .entries
            .iter()
            .filter(|e| around.binary_search(&e.index).is_ok())
            .filter_map(|e| e.opening.full().map(|s| (e.id, s.keys)))
            .collect();
        keys.sort_by_key(|(id, _)| *id);
        let neighbors: Vec<ClientId> = keys.iter().map(|(id, _)| *id).collect();
        self.session = Some((session, keys.clone()));
        let t = self.cfg.round.threshold();
        let mut holders = neighbors.clone();
        holders.push(self.id);
        // A polynomial of degree t has t + 1 coefficients.
        let degree_t = |yes: bool| if yes { t + 1 } else { t };
        let sigma = deal(
            secrets.mask_scalar(),
            degree_t(self.fault == DealerFault::MaskKeyOfDegreeT),
            &holders,
            &mut self.rng,
        )
        .ok()?;
        let beta = deal(
            secrets.self_scalar(),
            degree_t(self.fault == DealerFault::SelfKeyOfDegreeT),
            &holders,
            &mut self.rng,
        )
        .ok()?;
        let (mask_shares, mut mask_points) = (sigma.shares, sigma.points);
        let (self_shares, mut self_key, mut self_points) =
            (beta.shares, beta.secret_point, beta.points);
        match &self.fault {
            DealerFault::FalseCommitment => {
                let other = crate::crypto::random_scalar(&mut self.rng);
                self_key = crate::crypto::mask_public_key(&other);
            }
            DealerFault::TorsionPoints(victims) => {
                let torsion = curve25519_dalek::constants::EIGHT_TORSION[1];
                let add = |bytes: &mut [u8; 32]| {
                    if let Some(p) =
                        curve25519_dalek::edwards::CompressedEdwardsY(*bytes).decompress()
                    {
                        *bytes = (p + torsion).compress().to_bytes();
                    }
                };
                for (i, h) in holders.iter().enumerate() {
                    if victims.contains(h) {
                        add(&mut mask_points[i]);
                        add(&mut self_points[i]);
                    }
                }
            }
            DealerFault::NonCanonicalPoint(victim) => {
                if let Some(i) = holders.iter().position(|h| h == victim) {
                    self_points[i] = NON_CANONICAL_POINT;
                }
            }
            _ => {}
        }
        let peers: Vec<(ClientId, &PublicKeys)> = keys.iter().map(|(id, k)| (*id, k)).collect();
        let keys = secrets.bundle_keys(&session, self.id, &peers).ok()?;
        let mut bundles = Vec::new();
        for ((peer, _), key) in peers.iter().zip(keys) {
            let i = holders.iter().position(|h| h == peer)?;
            let mut self_share = self_shares[i].value;
            if let DealerFault::BadShares(victims) = &self.fault
                && victims.contains(peer)
            {
                // Off its point, which the server checked lies on the polynomial.
                self_share += Scalar::ONE;
            }
            let pt = BundlePlaintext {
                mask_share: mask_shares[i].value,
                self_share,
            };
            let binding = share_points_digest(&mask_points[i], &self_points[i], &self_key);
            bundles.push(SealedBundle {
                peer: *peer,
                mask_point: mask_points[i],
                self_point: self_points[i],
                ciphertext: key.seal(&session, self.id, *peer, &binding, &pt).ok()?,
            });
        }
        let own = holders.iter().position(|h| *h == self.id)?;
        self.own_self_share = Some(self_shares[own].value);
        Some(ClientMessage::ShareKeys {
            self_key,
            own_point: self_points[own],
            bundles,
            audit: Vec::new(),
        })
    }
}
