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
use crate::plan::{Adversary, CheckError, PlanRequest};

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
    /// γ: the fraction of the round's clients that may collude with the server.
    pub corrupt_fraction: f64,
    /// δ: the dropout rate the neighbour-graph connectivity bound assumes.
    pub dropout_rate: f64,
    /// σ: the round's parameters must keep the insecurity bound at or below 2^-σ.
    pub security_bits: u32,
    /// T: the fewest clients a round may have, and the fewest inputs a released sum may hold.
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
}

impl ClientPolicy {
    /// The safe defaults for a deployment whose CA key is `ca`.
    pub fn enrolled(ca: CaPublicKey) -> Self {
        Self::defaults(Adversary::SemiMalicious, Trust::Enrolled(ca))
    }

    fn defaults(adversary: Adversary, trust: Trust) -> Self {
        Self {
            adversary,
            corrupt_fraction: 0.05,
            dropout_rate: 0.1,
            security_bits: 40,
            min_cohort: 10,
            bits: 1..=32,
            prgs: vec![Prg::ChaCha20, Prg::ChaCha12],
            trust,
            context: None,
        }
    }

    /// A policy for an honest-but-curious server without enrolled identities (what a
    /// deployment with no CA can have): curious adversary, otherwise the defaults.
    pub fn curious_unauthenticated() -> Self {
        Self::defaults(Adversary::Curious, Trust::Unauthenticated)
    }

    /// The policy is coherent: rates in [0, 1), T ≥ 3, a malicious adversary with enrolled
    /// identities.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let rate_ok = |r: f64| r.is_finite() && (0.0..1.0).contains(&r);
        if !rate_ok(self.corrupt_fraction) || !rate_ok(self.dropout_rate) {
            return Err(PolicyError::Invalid(format!(
                "rates must lie in [0, 1): corrupt {}, dropout {}",
                self.corrupt_fraction, self.dropout_rate
            )));
        }
        if self.min_cohort < 3 {
            return Err(PolicyError::Invalid(format!(
                "minimum cohort {} is below 3",
                self.min_cohort
            )));
        }
        if self.adversary != Adversary::Curious && self.trust == Trust::Unauthenticated {
            return Err(PolicyError::NeedsEnrollment);
        }
        Ok(())
    }

    /// Checks a round configuration before anything is sent: b, the PRG, the context, the
    /// round size against T, and (n, k, t) against the planner's security bound.
    pub fn check_config(&self, config: &RoundConfig) -> Result<(), PolicyError> {
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
        self.check_size(config.clients(), "the round's client count")?;
        self.check_shape(config.clients(), config.neighbors(), config.threshold())
    }

    /// The round really has `n` members (cohort, key list, survivors): at least T.
    pub fn check_size(&self, n: usize, what: &'static str) -> Result<(), PolicyError> {
        if n < self.min_cohort {
            return Err(PolicyError::Cohort {
                what,
                n,
                min: self.min_cohort,
            });
        }
        Ok(())
    }

    /// (n, k, t) against the planner's security bound for this policy (correctness is the
    /// operator's concern, not a reason to refuse). `k` is capped at n − 1 (the graph over
    /// fewer clients than planned is complete).
    pub fn check_shape(&self, n: usize, k: usize, t: usize) -> Result<(), PolicyError> {
        let req = PlanRequest {
            clients: n,
            dropout_rate: self.dropout_rate,
            corrupt_fraction: self.corrupt_fraction,
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
    /// The round is smaller than T.
    #[error("{what} is {n}, below this client's minimum cohort of {min}")]
    Cohort {
        /// Which count.
        what: &'static str,
        /// The count.
        n: usize,
        /// T.
        min: usize,
    },
    /// The round's context is not the one this client expects.
    #[error("the round context differs from the one this client expects (another model?)")]
    Context,
}
