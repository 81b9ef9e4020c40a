//! [`check`]: a pair `(k, t)` the caller fixed, against the planner's bounds, and what would
//! repair it.

use std::fmt;

use super::population::{Budget, Population};
use super::{Adversary, Plan, PlanError, PlanRequest, plan, to_log2, validate};

/// Evaluates a neighbour count `k` and threshold `t` the caller fixed against the request's
/// adversary, `σ` and `η`, with the planner's budgets: each security event (exposure and
/// disconnection) at most `2^-(σ+1)`, correctness at most `2^-η`. Every pair [`plan`]
/// returns passes.
///
/// `k` may be anything in `1..=n - 1` (odd degrees included; `n - 1` is the complete
/// graph) and `t` anything in `min(2, k)..=k + 1` (`t = k + 1` needs every neighbour and
/// the owner). On success the [`Plan`] carries the bounds achieved; otherwise the error
/// names the first bound that fails (security before correctness) and what would fix it.
///
/// ```
/// use secagg_host::plan::{CheckError, PlanRequest, check};
/// # fn main() -> Result<(), CheckError> {
/// let request = PlanRequest { clients: 1000, ..PlanRequest::default() }; // curious server
///
/// let p = check(&request, 40, 20)?;
/// assert!(p.log2_insecurity <= -40.0 && p.log2_failure <= -20.0);
///
/// // t = 10 of 40: too few corrupted neighbours would rebuild an honest client's secrets.
/// let err = check(&request, 40, 10).unwrap_err();
/// assert!(err.is_security());
/// let CheckError::Exposure { fix, .. } = err else { panic!("{err}") };
/// assert_eq!(fix.threshold_range(), Some((19, 22))); // what works at k = 40
/// assert_eq!(fix.planned, Some((36, 19))); // what plan() picks
/// # Ok(())
/// # }
/// ```
pub fn check(req: &PlanRequest, neighbors: usize, threshold: usize) -> Result<Plan, CheckError> {
    validate(req).map_err(|e| match e {
        PlanError::InvalidRequest(why) => CheckError::InvalidRequest(why),
        other => CheckError::InvalidRequest(other.to_string()),
    })?;
    let n = req.clients;
    let (k, t) = (neighbors, threshold);
    if k == 0 || k >= n {
        return Err(CheckError::Shape {
            why: format!(
                "k = {k} neighbours is outside 1..={} for n = {n} clients ({} is the complete \
                 graph)",
                n - 1,
                n - 1
            ),
        });
    }
    let floor = Population::threshold_floor(k as u64) as usize;
    if t < floor || t > k + 1 {
        return Err(CheckError::Shape {
            why: format!(
                "t = {t} is outside {floor}..={} for k = {k} (the shares are held by the {k} \
                 neighbours and the owner)",
                k + 1
            ),
        });
    }
    let pop = Population::for_request(req);
    let budget = Budget::for_request(req);
    let (k64, t64) = (k as u64, t as u64);
    let security_target = req.security_bits.saturating_add(1);
    let fix = || Fix {
        min_secure_threshold: pop.min_secure_t(k64, k64 + 1, &budget).map(|t| t as usize),
        max_correct_threshold: pop.max_correct_t(k64, &budget).map(|t| t as usize),
        planned: plan(req).ok().map(|p| (p.neighbors, p.threshold)),
    };

    let ln_disconnect = pop.ln_disconnect(k64);
    if ln_disconnect > budget.ln_security_half {
        return Err(CheckError::Disconnection {
            k,
            log2: to_log2(ln_disconnect),
            target_bits: security_target,
            min_neighbors: pop.min_connected_k(&budget) as usize,
            planned: plan(req).ok().map(|p| (p.neighbors, p.threshold)),
        });
    }
    let ln_exposure = pop.ln_exposure(k64, t64);
    if ln_exposure > budget.ln_security_half {
        let log2 = to_log2(ln_exposure);
        return Err(match req.adversary {
            Adversary::Curious => CheckError::Exposure {
                k,
                t,
                log2,
                target_bits: security_target,
                fix: fix(),
            },
            Adversary::SemiMalicious => CheckError::SplitView {
                k,
                t,
                corrupt_needed: Adversary::SemiMalicious.corrupt_neighbours_needed(k, t),
                log2,
                target_bits: security_target,
                fix: fix(),
            },
        });
    }
    let ln_unrecoverable = pop.ln_unrecoverable(k64, t64);
    if ln_unrecoverable > budget.ln_correctness {
        return Err(CheckError::Correctness {
            k,
            t,
            log2: to_log2(ln_unrecoverable),
            target_bits: req.correctness_bits,
            fix: fix(),
        });
    }
    Ok(pop.plan_for(k64, t64))
}

/// What would repair a failed [`check`], worked out for the request that was checked.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Fix {
    /// The smallest threshold in `min(2, k)..=k + 1` that meets the exposure budget at the
    /// checked `k`, if any (none when no client is honest).
    pub min_secure_threshold: Option<usize>,
    /// The largest threshold in `min(2, k)..=k + 1` that meets the correctness budget at
    /// the checked `k`, if any.
    pub max_correct_threshold: Option<usize>,
    /// The `(k, t)` that [`plan`] chooses for the same request, if it finds one.
    pub planned: Option<(usize, usize)>,
}

impl Fix {
    /// Whether some threshold at the checked `k` meets both its exposure and its
    /// correctness budget.
    pub fn threshold_range(&self) -> Option<(usize, usize)> {
        match (self.min_secure_threshold, self.max_correct_threshold) {
            (Some(lo), Some(hi)) if lo <= hi => Some((lo, hi)),
            _ => None,
        }
    }
}

impl fmt::Display for Fix {
    /// The advice, at the checked `k` (which the caller prints).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (
            self.threshold_range(),
            self.min_secure_threshold,
            self.max_correct_threshold,
        ) {
            (Some((lo, hi)), _, _) if lo == hi => write!(f, "use t = {lo}")?,
            (Some((lo, hi)), _, _) => write!(f, "use t in {lo}..={hi} (smallest: {lo})")?,
            (None, Some(lo), Some(hi)) => write!(
                f,
                "no threshold works at this k (security needs t >= {lo}, correctness \
                 t <= {hi}): raise k"
            )?,
            (None, Some(lo), None) => write!(
                f,
                "security needs t >= {lo}, but no threshold meets correctness at this k: \
                 raise k"
            )?,
            (None, None, _) => write!(f, "no threshold is secure at this k: raise k")?,
        }
        write_planned(f, self.planned)
    }
}

fn write_planned(f: &mut fmt::Formatter<'_>, planned: Option<(usize, usize)>) -> fmt::Result {
    match planned {
        Some((k, t)) => write!(f, "; the planner picks k = {k}, t = {t} for this request"),
        None => write!(f, "; no (k, t) meets this request (the planner says why)"),
    }
}

/// A probability given as its `log2`, for messages.
fn show_log2(log2: f64) -> String {
    if log2 == f64::NEG_INFINITY {
        "0".into()
    } else if log2 >= 0.0 {
        "1".into()
    } else {
        format!("2^{log2:.1}")
    }
}

/// Why a caller-fixed `(k, t)` does not meet a request; see [`check`].
///
/// Security failures ([`is_security`](Self::is_security)) mean the server may learn more
/// than the sum, which a client should refuse; a correctness failure means the round may
/// fail to unmask, which only the operator minds.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum CheckError {
    /// The request itself is malformed (too few clients, a rate outside `[0, 1)` or NaN).
    InvalidRequest(String),
    /// `k` or `t` is out of range: `k` must be in `1..=n - 1`, `t` in `min(2, k)..=k + 1`.
    Shape {
        /// What is out of range.
        why: String,
    },
    /// The graph of honest survivors may fall apart (security).
    Disconnection {
        /// The checked neighbour count.
        k: usize,
        /// `log2` of the disconnection bound.
        log2: f64,
        /// The event's budget is `2^-target_bits` (`σ + 1`).
        target_bits: u32,
        /// The smallest even `k` (or `n - 1`) whose disconnection bound fits.
        min_neighbors: usize,
        /// The `(k, t)` that [`plan`] chooses for the same request, if any.
        planned: Option<(usize, usize)>,
    },
    /// Curious server: an honest client may have at least `t` corrupted neighbours
    /// (security).
    Exposure {
        /// The checked neighbour count.
        k: usize,
        /// The checked threshold.
        t: usize,
        /// `log2` of the exposure bound.
        log2: f64,
        /// The event's budget is `2^-target_bits` (`σ + 1`).
        target_bits: u32,
        /// What would work instead.
        fix: Fix,
    },
    /// Semi-malicious server: an honest client may have at least `2t - k - 1` corrupted
    /// neighbours, enough for a server that shows different survivor lists to rebuild
    /// both of its secrets (security).
    SplitView {
        /// The checked neighbour count.
        k: usize,
        /// The checked threshold.
        t: usize,
        /// `max(2t - k - 1, 0)`: corrupted neighbours that suffice.
        corrupt_needed: usize,
        /// `log2` of the exposure bound.
        log2: f64,
        /// The event's budget is `2^-target_bits` (`σ + 1`).
        target_bits: u32,
        /// What would work instead.
        fix: Fix,
    },
    /// Some client may keep fewer than `t` surviving neighbours, so its secret cannot be
    /// rebuilt and the round fails (correctness).
    Correctness {
        /// The checked neighbour count.
        k: usize,
        /// The checked threshold.
        t: usize,
        /// `log2` of the failure bound.
        log2: f64,
        /// The budget is `2^-target_bits` (`η`).
        target_bits: u32,
        /// What would work instead.
        fix: Fix,
    },
}

impl CheckError {
    /// Whether the pair lets the server learn more than the sum with too high a
    /// probability (exposure, split view or disconnection), as opposed to a correctness
    /// failure or a malformed input.
    pub fn is_security(&self) -> bool {
        matches!(
            self,
            Self::Disconnection { .. } | Self::Exposure { .. } | Self::SplitView { .. }
        )
    }
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRequest(why) => write!(f, "invalid planning request: {why}"),
            Self::Shape { why } => write!(f, "invalid (k, t): {why}"),
            Self::Disconnection {
                k,
                log2,
                target_bits,
                min_neighbors,
                planned,
            } => {
                write!(
                    f,
                    "insecure (disconnection bound): with k = {k} the honest survivors' graph \
                     falls apart with probability up to {}, above the 2^-{target_bits} this \
                     event may have; no threshold helps: raise k to at least {min_neighbors}",
                    show_log2(*log2)
                )?;
                write_planned(f, *planned)
            }
            Self::Exposure {
                k,
                t,
                log2,
                target_bits,
                fix,
            } => write!(
                f,
                "insecure (exposure bound): some honest client has at least t = {t} corrupted \
                 neighbours among its k = {k} with probability up to {}, above the \
                 2^-{target_bits} this event may have; at k = {k}, {fix}",
                show_log2(*log2)
            ),
            Self::SplitView {
                k,
                t,
                corrupt_needed,
                log2,
                target_bits,
                fix,
            } => write!(
                f,
                "insecure against a semi-malicious server (split-view bound): showing \
                 different survivor lists rebuilds both secrets of an honest client with at \
                 least 2t - k - 1 = {corrupt_needed} corrupted neighbours among its k = {k} \
                 (t = {t}), which happens with probability up to {}, above the \
                 2^-{target_bits} this event may have; at k = {k}, {fix}",
                show_log2(*log2)
            ),
            Self::Correctness {
                k,
                t,
                log2,
                target_bits,
                fix,
            } => write!(
                f,
                "fails correctness: some client keeps fewer than t = {t} surviving holders \
                 among its k = {k} neighbours with probability up to {}, above the \
                 2^-{target_bits} allowed, and the round cannot unmask; at k = {k}, {fix}",
                show_log2(*log2)
            ),
        }
    }
}

impl std::error::Error for CheckError {}
