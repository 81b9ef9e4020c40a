//! The population model (worst-case head counts of corrupted and dropped clients), the
//! three bounds on it (exposure, disconnection, correctness) and the planner's search over
//! `(k, t)`. See the [module documentation](super) for the model.

use std::f64::consts::LN_2;

use super::tails::{Hypergeometric, ln_add_exp, ln_falling};
use super::{Adversary, Plan, PlanError, PlanRequest, to_log2};

/// Largest `k` scanned one even step at a time; beyond it the scan gallops.
pub(super) const LINEAR_SCAN_LIMIT: u64 = 4096;

/// Log-space targets for one plan.
pub(super) struct Budget {
    /// Each of the two security events gets half of `2^-σ`.
    pub(super) ln_security_half: f64,
    /// The correctness event gets all of `2^-η`.
    pub(super) ln_correctness: f64,
}

impl Budget {
    pub(super) fn for_request(req: &PlanRequest) -> Self {
        Self {
            ln_security_half: -(f64::from(req.security_bits) + 1.0) * LN_2,
            ln_correctness: -f64::from(req.correctness_bits) * LN_2,
        }
    }
}

/// Worst-case head counts for a round, and who attacks it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Population {
    pub(super) n: u64,
    pub(super) corrupt: u64,
    pub(super) dropped: u64,
    pub(super) adversary: Adversary,
}

/// `ceil(rate * n)`, ignoring floating-point dust such as `0.1 * 1000 = 100.00000000000001`.
pub(super) fn head_count(rate: f64, n: u64) -> u64 {
    let exact = rate * n as f64;
    let count = (exact - 1e-6).ceil().max(0.0) as u64;
    count.min(n)
}

impl Population {
    /// The head counts, against a curious server.
    pub(super) fn new(n: u64, corrupt_fraction: f64, dropout_rate: f64) -> Self {
        Self {
            n,
            corrupt: head_count(corrupt_fraction, n),
            dropped: head_count(dropout_rate, n),
            adversary: Adversary::Curious,
        }
    }

    pub(super) fn for_request(req: &PlanRequest) -> Self {
        let pop = Self::new(req.clients as u64, req.corrupt_fraction, req.dropout_rate);
        let corrupt = match req.colluders {
            Some(c) => (c as u64).min(pop.n.saturating_sub(1)),
            None => pop.corrupt,
        };
        Self { corrupt, ..pop }.against(req.adversary)
    }

    pub(super) fn against(self, adversary: Adversary) -> Self {
        Self { adversary, ..self }
    }

    pub(super) fn survivors(&self) -> u64 {
        self.n - self.dropped
    }

    /// Smallest threshold the planner will hand out for `k` neighbours.
    pub(super) fn threshold_floor(k: u64) -> u64 {
        k.min(2)
    }

    /// ln of the bound on "honest survivors disconnected" for the ring graph of degree `k`.
    pub(super) fn ln_disconnect(&self, k: u64) -> f64 {
        let n = self.n;
        if k + 1 >= n {
            return f64::NEG_INFINITY; // complete graph: removing nodes leaves it complete
        }
        let even = k - k % 2;
        if even == 0 {
            return 0.0; // a perfect matching on more than two nodes is never connected
        }
        let bad = (self.corrupt + self.dropped).min(n);
        if bad < even {
            return f64::NEG_INFINITY;
        }
        // even <= k <= n - 2, so n - even - 1 >= 1.
        let ln_pairs = (n as f64).ln() + ((n - even - 1) as f64).ln() - LN_2;
        let ln_all_bad = ln_falling(bad, even) - ln_falling(n, even);
        (ln_pairs + ln_all_bad).min(0.0)
    }

    /// The fewest corrupted neighbours that expose an honest client (see [`Adversary`]).
    pub(super) fn exposing(&self, k: u64, t: u64) -> u64 {
        // k and t never exceed n, which came from a usize.
        self.adversary
            .corrupt_neighbours_needed(k as usize, t as usize) as u64
    }

    /// ln of the union bound, over honest clients, of "enough corrupted neighbours to
    /// expose it": at least `t` of them for the curious server, `2t - k - 1` for the
    /// semi-malicious one.
    pub(super) fn ln_exposure(&self, k: u64, t: u64) -> f64 {
        let honest = self.n - self.corrupt;
        if honest == 0 {
            return 0.0;
        }
        let corrupt_neighbours = Hypergeometric::new(self.n - 1, self.corrupt, k);
        ((honest as f64).ln() + corrupt_neighbours.ln_at_least(self.exposing(k, t))).min(0.0)
    }

    /// ln of the total insecurity bound for `(k, t)`.
    pub(super) fn ln_insecurity(&self, k: u64, t: u64) -> f64 {
        ln_add_exp(self.ln_disconnect(k), self.ln_exposure(k, t)).min(0.0)
    }

    /// ln of the union bound, over all clients, of "fewer than `t` surviving neighbours".
    pub(super) fn ln_unrecoverable(&self, k: u64, t: u64) -> f64 {
        if t == 0 {
            return f64::NEG_INFINITY;
        }
        let others_surviving = self.survivors().saturating_sub(1);
        let surviving_neighbours = Hypergeometric::new(self.n - 1, others_surviving, k);
        ((self.n as f64).ln() + surviving_neighbours.ln_at_most(t - 1)).min(0.0)
    }

    /// The smallest `t` in `threshold_floor(k)..=max_t` whose exposure bound fits, if any.
    pub(super) fn min_secure_t(&self, k: u64, max_t: u64, budget: &Budget) -> Option<u64> {
        let secure = |t: u64| self.ln_exposure(k, t) <= budget.ln_security_half;
        // The exposure bound only falls as t grows; bisect for the first secure t.
        let (mut lo, mut hi) = (Self::threshold_floor(k), max_t);
        if lo > hi || !secure(hi) {
            return None;
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if secure(mid) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Some(lo)
    }

    /// The largest `t` in `threshold_floor(k)..=k + 1` whose correctness bound fits, if any.
    pub(super) fn max_correct_t(&self, k: u64, budget: &Budget) -> Option<u64> {
        let correct = |t: u64| self.ln_unrecoverable(k, t) <= budget.ln_correctness;
        // The failure bound only grows with t; bisect for the last correct t.
        let (mut lo, mut hi) = (Self::threshold_floor(k), k + 1);
        if !correct(lo) {
            return None;
        }
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if correct(mid) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Some(lo)
    }

    /// The threshold for `k` neighbours if `k` meets both budgets.
    pub(super) fn evaluate(&self, k: u64, budget: &Budget) -> Option<u64> {
        if self.ln_disconnect(k) > budget.ln_security_half {
            return None;
        }
        let t = self.min_secure_t(k, k, budget)?;
        (self.ln_unrecoverable(k, t) <= budget.ln_correctness).then_some(t)
    }

    /// The smallest even `k < n - 1` whose disconnection bound fits, or `n - 1` (the
    /// complete graph, never disconnected) when none does.
    pub(super) fn min_connected_k(&self, budget: &Budget) -> u64 {
        let complete = self.n - 1;
        if self.n < 4 {
            return complete; // no even k in [2, n - 2]
        }
        let largest = (self.n - 2) & !1; // largest even k below n - 1
        // The bound falls as k grows.
        let connected = |k: u64| self.ln_disconnect(k) <= budget.ln_security_half;
        if !connected(largest) {
            return complete;
        }
        let (mut lo, mut hi) = (1_u64, largest / 2); // in units of 2
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if connected(2 * mid) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        2 * lo
    }

    /// The smallest even `k < n - 1` that meets both budgets, with its threshold.
    pub(super) fn search_sparse(&self, budget: &Budget) -> Option<(u64, u64)> {
        let start = self.min_connected_k(budget);
        if start + 1 >= self.n {
            return None; // only the complete graph stays connected
        }
        let largest = (self.n - 2) & !1; // largest even k below n - 1

        let linear_end = largest.min(LINEAR_SCAN_LIMIT.max(start));
        let mut k = start;
        while k <= linear_end {
            if let Some(t) = self.evaluate(k, budget) {
                return Some((k, t));
            }
            k += 2;
        }
        if linear_end >= largest {
            return None;
        }

        // Gallop: double until a feasible k appears, then bisect the last bracket.
        let mut below = linear_end; // known infeasible
        let mut found = None;
        while below < largest {
            let probe = (below.saturating_mul(2)).min(largest);
            if let Some(t) = self.evaluate(probe, budget) {
                found = Some((probe, t));
                break;
            }
            below = probe;
        }
        let (mut above, mut best_t) = found?;
        while above - below > 2 {
            let mid = (below + (above - below) / 2) & !1;
            let mid = mid.max(below + 2);
            match self.evaluate(mid, budget) {
                Some(t) => {
                    above = mid;
                    best_t = t;
                }
                None => below = mid,
            }
        }
        Some((above, best_t))
    }

    pub(super) fn plan_for(&self, k: u64, t: u64) -> Plan {
        Plan {
            neighbors: k as usize,
            threshold: t as usize,
            log2_failure: to_log2(self.ln_unrecoverable(k, t)),
            log2_insecurity: to_log2(self.ln_insecurity(k, t)),
        }
    }

    /// Explains why even the complete graph fails and what would make it work.
    pub(super) fn infeasible(&self, req: &PlanRequest) -> PlanError {
        let n = self.n;
        let k = n - 1;
        let floor = Self::threshold_floor(k);
        let usable = self.survivors().saturating_sub(1);
        // In the complete graph every honest client has all A corrupted clients as
        // neighbours, so the security condition on t is exact.
        let (need_t, purpose, max_corrupt) = match self.adversary {
            Adversary::Curious => (
                self.corrupt + 1,
                "to keep secrets from the corrupted clients",
                // corrupt + 1 <= survivors - 1
                usable.checked_sub(1),
            ),
            Adversary::SemiMalicious => (
                (n + self.corrupt) / 2 + 1,
                "so that a server showing different survivor lists cannot rebuild both \
                 secrets of an honest client",
                // floor((n + corrupt) / 2) + 1 <= survivors - 1, i.e. corrupt <= 2 (S - 1) - n - 1
                (2 * usable).checked_sub(n + 1),
            ),
        };
        let need_t = need_t.max(floor);
        let max_corrupt = max_corrupt.filter(|_| usable >= floor);
        let mut msg = format!(
            "dropout {} with corruption {} cannot be met at n={} against a {} server: with \
             {} corrupted and {} dropped clients a threshold must be at least {} {}, but a \
             client can only count on {} surviving neighbours, even in the complete graph \
             (k={})",
            req.dropout_rate,
            req.corrupt_fraction,
            n,
            self.adversary,
            self.corrupt,
            self.dropped,
            need_t,
            purpose,
            usable,
            k
        );
        // Dropout that would work at this corruption: survivors - 1 >= need_t.
        let max_dropped = n.checked_sub(need_t + 1);
        match (max_dropped, max_corrupt) {
            (Some(d), Some(a)) => msg.push_str(&format!(
                "; lower dropout to at most {} or corruption to at most {}",
                rate_label(d, n),
                rate_label(a, n)
            )),
            (Some(d), None) => msg.push_str(&format!(
                "; lower dropout to at most {} (no corruption level works at this dropout)",
                rate_label(d, n)
            )),
            (None, Some(a)) => msg.push_str(&format!(
                "; lower corruption to at most {} (no dropout level works at this corruption)",
                rate_label(a, n)
            )),
            (None, None) => msg.push_str("; more clients are needed"),
        }
        PlanError::Infeasible(msg)
    }
}

/// `count / n` rounded down to 4 decimals, so that quoting it back stays within bounds.
pub(super) fn rate_label(count: u64, n: u64) -> String {
    let rate = ((count as f64 / n as f64) * 1e4).floor() / 1e4;
    format!("{rate}")
}
