//! A client's own security policy: the floors it holds whatever the server says.
//!
//! Every round parameter a client receives comes from the server, which is the party secure
//! aggregation guards against. A [`ClientPolicy`] is set by the client's operator and never
//! taken from the round: the adversary model and the corrupt fraction it must withstand, the
//! statistical security it wants, the smallest cohort whose sum it will let be released, the
//! moduli and PRGs it accepts, whom it trusts to enroll identities, and (optionally) the round
//! context it expects. Before sending anything secret the client checks the round's (n, k, t)
//! against the planner's bounds for that policy ([`crate::plan::check`]); later, when the
//! round's actual size is known (the cohort, the key list, the survivors), it checks again.
//!
//! The defaults are safe against a semi-malicious server colluding with up to 5% of the
//! clients, at 2^-40: [`Adversary::SemiMalicious`], γ = 0.05, δ = 0.1 (the dropout rate the
//! graph-connectivity bound assumes), σ = 40, a minimum cohort of 10, ChaCha20 or ChaCha12,
//! any b. A policy that tolerates a malicious server needs enrolled identities (a CA key).

use std::ops::RangeInclusive;

use secagg_engine::Prg;

use crate::config::RoundConfig;
use crate::identity::CaPublicKey;
use crate::plan::{Adversary, CheckError, PlanRequest, colluders_in_cohort};
use crate::selection::epoch_at;

/// Whom a client trusts to vouch for its peers' identity keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Only identities certified by this CA key (given by the operator, not by the round).
    Enrolled(CaPublicKey),
    /// Identity keys asserted by the clients themselves: enough against a server that follows
    /// the protocol, nothing against one that substitutes keys. Only with
    /// [`Adversary::Curious`].
    Unauthenticated,
}

/// The floors a client holds for every round it joins.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientPolicy {
    /// The server this client must withstand.
    pub adversary: Adversary,
    /// c: the most enrolled identities that may collude with the server, in the whole
    /// deployment. Absolute: every size the round shows is judged with c colluders in it.
    pub colluders: usize,
    /// δ: the dropout rate the neighbour-graph connectivity bound assumes.
    pub dropout_rate: f64,
    /// σ: the round's parameters must keep the insecurity bound at or below 2^-σ.
    pub security_bits: u32,
    /// T: the fewest honest members a round may have, and the fewest honest inputs a
    /// released sum may hold: a round whose size n' has n' − c < T is refused.
    pub min_cohort: usize,
    /// The moduli 2^b this client accepts.
    pub bits: RangeInclusive<u32>,
    /// The mask PRGs this client accepts.
    pub prgs: Vec<Prg>,
    /// Whom it trusts for identities.
    pub trust: Trust,
    /// The round context it expects (for example the hash of the model it trained on);
    /// `None` accepts the server's.
    pub context: Option<[u8; 32]>,
    /// The length of a self-selection epoch, in seconds (the deployment's; see
    /// [`crate::selection`]).
    pub epoch_secs: u64,
    /// λ: how many leaves this client opens at random in each list the server commits to (the
    /// cohort, the present set, the survivor set), after the list's root is fixed, to catch
    /// entries the server padded the list with (at most [`crate::view::MAX_AUDIT`]; see the
    /// README's threat model for the odds).
    pub audit: usize,
    /// The caller's clock (Unix seconds) when the round starts, for the self-selection epoch
    /// check: a self-selected round is accepted only in this epoch or the one before. The
    /// TCP transport and the command line set it; `None` refuses self-selected rounds.
    pub now: Option<u64>,
    /// The most privacy one round may cost this client: with a floor, a round without
    /// distributed DP is refused, and so is a DP round whose ε at the floor's δ, computed
    /// with the honest survivors this policy guarantees, is larger. `None` (the default)
    /// accepts rounds without DP; a DP round's noise is still checked against the honest
    /// survivors this policy guarantees (see [`ClientPolicy::check_config`]).
    pub privacy: Option<PrivacyFloor>,
}

/// The most privacy loss a client accepts per round (see [`ClientPolicy::privacy`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PrivacyFloor {
    /// ε of one round.
    pub epsilon: f64,
    /// The δ it is stated at.
    pub delta: f64,
}

impl ClientPolicy {
    /// The safe defaults for a deployment whose CA key is `ca`.
    pub fn enrolled(ca: CaPublicKey) -> Self {
        Self::defaults(Adversary::SemiMalicious, Trust::Enrolled(ca))
    }

    fn defaults(adversary: Adversary, trust: Trust) -> Self {
        Self {
            adversary,
            colluders: DEFAULT_COLLUDERS,
            dropout_rate: 0.1,
            security_bits: 40,
            min_cohort: 10,
            bits: 1..=64,
            prgs: vec![Prg::ChaCha20, Prg::ChaCha12],
            trust,
            context: None,
            epoch_secs: DEFAULT_EPOCH_SECS,
            audit: DEFAULT_AUDIT,
            now: None,
            privacy: None,
        }
    }

    /// A policy for an honest-but-curious server without enrolled identities (what a
    /// deployment with no CA can have): curious adversary, otherwise the defaults.
    pub fn curious_unauthenticated() -> Self {
        Self::defaults(Adversary::Curious, Trust::Unauthenticated)
    }

    /// The same policy with its clock set to the system time (what a client that runs a
    /// round now should use; the sans-IO core reads no clock).
    pub fn at_system_time(self) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .ok();
        Self { now, ..self }
    }

    /// The policy is coherent: a dropout rate in [0, 1), T ≥ 3, a positive epoch length, a
    /// malicious adversary with enrolled identities.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if !(self.dropout_rate.is_finite() && (0.0..1.0).contains(&self.dropout_rate)) {
            return Err(PolicyError::Invalid(format!(
                "the dropout rate must lie in [0, 1), got {}",
                self.dropout_rate
            )));
        }
        if self.epoch_secs == 0 {
            return Err(PolicyError::Invalid(
                "the selection epoch must last at least a second".into(),
            ));
        }
        if self.min_cohort < 3 {
            return Err(PolicyError::Invalid(format!(
                "minimum cohort {} is below 3",
                self.min_cohort
            )));
        }
        if self.audit > crate::view::MAX_AUDIT {
            return Err(PolicyError::Invalid(format!(
                "an audit of {} leaves is above the most a server answers, {}",
                self.audit,
                crate::view::MAX_AUDIT
            )));
        }
        if self.adversary != Adversary::Curious && self.trust == Trust::Unauthenticated {
            return Err(PolicyError::NeedsEnrollment);
        }
        if let Some(f) = &self.privacy
            && !(f.epsilon.is_finite() && f.epsilon > 0.0 && f.delta > 0.0 && f.delta < 1.0)
        {
            return Err(PolicyError::Invalid(format!(
                "privacy floor ε = {}, δ = {} needs ε > 0 and 0 < δ < 1",
                f.epsilon, f.delta
            )));
        }
        Ok(())
    }

    /// Checks a round configuration before anything is sent: b, the PRG, the context, the
    /// self-selection epoch, the round size against c + T, (n, k, t) against the
    /// planner's security bound with c colluders, and the round's DP noise (see
    /// [`check_privacy`](Self::check_privacy)). Returns the colluders every later size must
    /// be judged with: c, or the most the round's selection can admit.
    pub fn check_config(&self, config: &RoundConfig) -> Result<usize, PolicyError> {
        self.validate()?;
        let b = config.modulus().bits();
        if !self.bits.contains(&b) {
            return Err(PolicyError::Bits {
                b,
                allowed: self.bits.clone(),
            });
        }
        if !self.prgs.contains(&config.prg()) {
            return Err(PolicyError::Prg {
                prg: config.prg(),
                allowed: self.prgs.clone(),
            });
        }
        if let Some(want) = self.context
            && want != *config.context()
        {
            return Err(PolicyError::Context);
        }
        let colluders = self.colluders_for(config)?;
        self.check_size(config.clients(), colluders, "the round's client count")?;
        self.check_shape(
            config.clients(),
            config.neighbors(),
            config.threshold(),
            colluders,
        )?;
        self.check_privacy(config, colluders)?;
        Ok(colluders)
    }

    /// The honest inputs, this client's included, in any sum holding its input that the
    /// server can learn, with up to `colluders` colluders: the client reveals its shares
    /// only for a survivor list of at least the round's T (`min_survivors`) and at least
    /// c + this policy's minimum cohort, so `max(T − c, T_policy)`; against a
    /// semi-malicious server, which can isolate a target's input in a sum with as few as
    /// k − t + 1 other honest inputs (the README's threat model), at most `k − t + 2`.
    /// (Every honest client of a deployment holds the same policy; a sum without this
    /// client's input is not its concern.)
    pub fn honest_survivors(&self, config: &RoundConfig, colluders: usize) -> usize {
        let released = config
            .min_survivors()
            .saturating_sub(colluders)
            .max(self.min_cohort);
        match self.adversary {
            Adversary::Curious => released,
            _ => {
                let k = config.neighbors().min(config.clients().saturating_sub(1));
                released.min((k + 2).saturating_sub(config.threshold()))
            }
        }
    }

    /// A DP round's noise against what this policy guarantees, thinking as the server that
    /// set it: the per-client noise must have been sized for no more honest survivors than
    /// [`honest_survivors`](Self::honest_survivors) guarantees (colluders add no noise the
    /// server does not know), and with a [`privacy`](ClientPolicy::privacy) floor, one
    /// round's ε with that many honest clients' noise must be within it. A floor also
    /// refuses a round without DP.
    pub fn check_privacy(&self, config: &RoundConfig, colluders: usize) -> Result<(), PolicyError> {
        let Some(dp) = config.dp() else {
            return match self.privacy {
                Some(_) => Err(PolicyError::NoPrivacy),
                None => Ok(()),
            };
        };
        let guaranteed = self.honest_survivors(config, colluders);
        if (guaranteed as u64) < u64::from(dp.honest) {
            return Err(PolicyError::NoiseSizedForMore {
                sized_for: dp.honest,
                guaranteed,
                colluders,
            });
        }
        if let Some(floor) = self.privacy {
            let sensitivity = dp.sensitivity(config.params(), config.quantization().max_weight);
            let epsilon = crate::dp::accountant::skellam_epsilon(
                sensitivity,
                guaranteed as f64 * dp.noise,
                1,
                floor.delta,
            );
            if epsilon > floor.epsilon {
                return Err(PolicyError::Privacy(format!(
                    "one round costs ε = {epsilon:.4} at δ = {} with {guaranteed} honest clients' noise, above this client's {}",
                    floor.delta, floor.epsilon
                )));
            }
        }
        Ok(())
    }

    /// The colluders a round can hold under this policy: c, or for a self-selected round (in
    /// this epoch or the last, in a deployment with a CA) the most of c its rate admits
    /// except with probability 2^-(σ+1).
    pub fn colluders_for(&self, config: &RoundConfig) -> Result<usize, PolicyError> {
        let Some(selection) = config.selection() else {
            return Ok(self.colluders);
        };
        if self.trust == Trust::Unauthenticated {
            return Err(PolicyError::Selection(SelectionRefusal::Unauthenticated));
        }
        let now = self
            .now
            .ok_or(PolicyError::Selection(SelectionRefusal::NoClock))?;
        let current = epoch_at(now, self.epoch_secs);
        if selection.epoch() != current && selection.epoch().saturating_add(1) != current {
            return Err(PolicyError::Selection(SelectionRefusal::Epoch {
                round: selection.epoch(),
                current,
            }));
        }
        let bound = colluders_in_cohort(
            self.colluders as u64,
            selection.rate(),
            self.security_bits.saturating_add(1),
        );
        Ok(usize::try_from(bound).unwrap_or(usize::MAX))
    }

    /// The round really has `n` members (announced, cohort, key list, survivors), of which up
    /// to `colluders` may work with the server: at least T of them must be honest.
    pub fn check_size(
        &self,
        n: usize,
        colluders: usize,
        what: &'static str,
    ) -> Result<(), PolicyError> {
        if n < colluders.saturating_add(self.min_cohort) {
            return Err(PolicyError::Cohort {
                what,
                n,
                colluders,
                min: self.min_cohort,
            });
        }
        Ok(())
    }

    /// The committee quorum for a cohort of `n` holding up to `colluders` (see
    /// [`crate::view`]): how many committee nonces the graph seed must hold. Refuses a cohort
    /// whose committee cannot hold that many.
    pub fn committee_quorum(&self, n: usize, colluders: usize) -> Result<usize, PolicyError> {
        let committee = n.min(crate::view::COMMITTEE);
        let q = crate::plan::committee_quorum(
            n as u64,
            colluders as u64,
            committee as u64,
            self.security_bits
                .saturating_add(1)
                .saturating_add(crate::view::GRIND_BITS),
        );
        let q = usize::try_from(q).unwrap_or(usize::MAX);
        if q > committee {
            return Err(PolicyError::Committee {
                n,
                colluders,
                committee,
                quorum: q,
            });
        }
        Ok(q)
    }

    /// (n, k, t) against the planner's security bound for this policy with `colluders`
    /// colluding members (correctness is the operator's concern, not a reason to refuse).
    /// `k` is capped at n − 1 (the graph over fewer clients than planned is complete).
    pub fn check_shape(
        &self,
        n: usize,
        k: usize,
        t: usize,
        colluders: usize,
    ) -> Result<(), PolicyError> {
        let req = PlanRequest {
            clients: n,
            dropout_rate: self.dropout_rate,
            corrupt_fraction: 0.0,
            colluders: Some(colluders),
            security_bits: self.security_bits,
            correctness_bits: 0,
            adversary: self.adversary,
        };
        let k = k.min(n.saturating_sub(1));
        match crate::plan::check(&req, k, t) {
            Ok(_) => Ok(()),
            Err(e) if e.is_security() => Err(PolicyError::Insecure(e.to_string())),
            Err(CheckError::Shape { why }) => Err(PolicyError::Invalid(why)),
            Err(CheckError::InvalidRequest(why)) => Err(PolicyError::Invalid(why)),
            Err(_) => Ok(()),
        }
    }
}

/// The default colluder budget c: 5% of a deployment of a hundred.
pub const DEFAULT_COLLUDERS: usize = 5;
/// The default audit: 16 random leaves of each committed list.
pub const DEFAULT_AUDIT: usize = 16;
/// The default self-selection epoch: an hour.
pub const DEFAULT_EPOCH_SECS: u64 = 3600;

/// Why a client refuses a self-selected round.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectionRefusal {
    /// Without a CA, identities (and so tickets) cost nothing to make.
    #[error("a self-selected round needs enrolled identities")]
    Unauthenticated,
    /// The caller gave no clock to check the epoch against.
    #[error("no clock was given to check the round's epoch against")]
    NoClock,
    /// The epoch is neither the client's current one nor the one before.
    #[error("the round's epoch {round} is not this client's epoch {current} or the one before")]
    Epoch {
        /// The round's epoch.
        round: u64,
        /// The client's.
        current: u64,
    },
    /// This client is not eligible in the round's epoch at its rate.
    #[error("this client is not eligible in epoch {epoch} at rate {}", *threshold as f64 / 2f64.powi(64))]
    NotEligible {
        /// The epoch.
        epoch: u64,
        /// The rate times 2^64.
        threshold: u64,
    },
}

/// Why a client refuses a round.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The policy itself is incoherent.
    #[error("invalid client policy: {0}")]
    Invalid(String),
    /// A malicious-server policy needs enrolled identities.
    #[error(
        "a policy against a malicious server needs enrolled identities (a CA key): without them the server can substitute every key"
    )]
    NeedsEnrollment,
    /// (n, k, t) fails the policy's security bound (the planner's reason).
    #[error("round parameters fail this client's policy: {0}")]
    Insecure(String),
    /// The modulus is not one this client accepts.
    #[error("modulus 2^{b} is outside this client's allowed bits {}..={}", allowed.start(), allowed.end())]
    Bits {
        /// The round's b.
        b: u32,
        /// What the policy allows.
        allowed: RangeInclusive<u32>,
    },
    /// The PRG is not one this client accepts.
    #[error("mask PRG {prg:?} is not allowed by this client's policy (allowed: {allowed:?})")]
    Prg {
        /// The round's PRG.
        prg: Prg,
        /// What the policy allows.
        allowed: Vec<Prg>,
    },
    /// The round leaves fewer than T honest members once its colluders are counted out.
    #[error(
        "{what} is {n}: with up to {colluders} colluders that leaves fewer than this client's minimum of {min} honest members"
    )]
    Cohort {
        /// Which count.
        what: &'static str,
        /// The count.
        n: usize,
        /// The colluders it may hold (c, or the selection's bound).
        colluders: usize,
        /// T.
        min: usize,
    },
    /// The cohort's committee cannot hold enough honest members to seed the graph.
    #[error(
        "a cohort of {n} with up to {colluders} colluders needs {quorum} of its committee of {committee} to seed the graph: more than it has"
    )]
    Committee {
        /// The cohort's size.
        n: usize,
        /// The colluders it may hold.
        colluders: usize,
        /// The committee's size.
        committee: usize,
        /// The quorum needed.
        quorum: usize,
    },
    /// A self-selected round this client cannot accept.
    #[error("self-selection: {0}")]
    Selection(SelectionRefusal),
    /// The round's context is not the one this client expects.
    #[error("the round context differs from the one this client expects (another model?)")]
    Context,
    /// A DP round whose per-client noise was sized for more honest survivors than this
    /// policy guarantees: with only the guaranteed ones, the noise falls short of its target.
    #[error(
        "the DP noise is sized for {sized_for} honest survivors, but with up to {colluders} colluders this client's policy guarantees only {guaranteed}"
    )]
    NoiseSizedForMore {
        /// The honest survivors the configuration's noise assumes.
        sized_for: u32,
        /// What the policy guarantees.
        guaranteed: usize,
        /// The colluders it was judged with.
        colluders: usize,
    },
    /// A DP round that costs more than the policy's privacy floor.
    #[error("the round's privacy fails this client's floor: {0}")]
    Privacy(String),
    /// The policy has a privacy floor and the round has no distributed DP.
    #[error("this client's policy requires distributed DP and the round has none")]
    NoPrivacy,
}
