//! SecAgg+ parameter planner: picks the neighbour count `k` and the Shamir threshold `t`.
//!
//! # Neighbourhood semantics
//!
//! The clients of a round are placed on a ring in the order of a uniformly random
//! permutation. For even `k` every client is joined to the `k / 2` clients on each side of
//! it (the Harary graph `H(k, n)`); `k = n - 1` is the complete graph of classic SecAgg.
//! Each client has exactly `k` neighbours and Shamir-shares its mask-agreement secret key
//! and its self-mask seed among those `k` neighbours only. It keeps no share of its own
//! secrets. Any `t` of the `k` shares rebuild a secret and `t - 1` reveal nothing, so
//! `1 <= t <= k`, and [`Plan::threshold`] is that `t`.
//!
//! The reference finder (below) adds a self-edge to every node, so a client there holds
//! `k + 1` shares including one of its own. Its bounds, however, only count the `k` other
//! holders (the "sample size" in its distributions is `k`). The two `t` values therefore
//! mean the same thing: shares held by the `k` neighbours.
//!
//! # What is bounded
//!
//! `n` clients, of which `A = ceil(γ n)` are corrupted (they work with the server) and
//! `D = ceil(δ n)` drop out, so `S = n - D` survive. Both are worst-case counts: the rates
//! are treated as upper bounds, as the reference does. The graph's random labelling makes
//! a client's `k` neighbours a uniformly random `k`-subset of the other `n - 1` clients, so
//! the number of corrupted or surviving neighbours is hypergeometric.
//!
//! * **Security** (`2^-σ`), the sum of two events, each held to `2^-(σ+1)` as in the
//!   reference:
//!   1. *An honest client's secrets can be rebuilt by the adversary*: it has `>= t`
//!      corrupted neighbours. Per client this is `P[X >= t]`,
//!      `X ~ Hypergeometric(population n - 1, marked A, draws k)`; the union bound over
//!      the `n - A` honest clients multiplies by `n - A`.
//!   2. *The graph of honest survivors falls apart*: then the server could learn the
//!      separate sums of the pieces (in the worst case a single input) instead of one sum
//!      of at least `n - A - D` honest inputs. Removing nodes from the ring graph
//!      `H(k, n)` can only disconnect it if two disjoint runs of `k / 2` consecutive ring
//!      positions, with remaining nodes between them on both sides, are all removed. There
//!      are `n (n - k - 1) / 2` such pairs of runs, and a fixed set of `k` positions is
//!      entirely corrupted-or-dropped with probability `(B)_k / (n)_k` (falling
//!      factorials, `B = A + D`). The union bound is their product. For odd `k` the bound
//!      of `k - 1` is used: a Harary-style graph of odd degree contains `H(k - 1, n)`, so
//!      it cannot be disconnected when that subgraph is not. (This assumes the round's
//!      graph builder joins every client at least to its `floor(k / 2)` nearest ring
//!      positions on each side, as Harary's odd-degree construction does.)
//! * **Correctness** (`2^-η`): *some client's secret cannot be rebuilt* because fewer than
//!   `t` of its neighbours survive. For the worst client (a survivor, whose other
//!   clients hold `S - 1` survivors) this is `P[Y <= t - 1]`,
//!   `Y ~ Hypergeometric(n - 1, S - 1, k)`; the union bound over all `n` clients
//!   multiplies by `n`.
//!
//! Tails are summed exactly in log space (own log-factorial, no crates), starting at the
//! cut-off and walking away from the mode until a geometric bound on the rest is below
//! `10^-16` of the running sum.
//!
//! # Search
//!
//! Even `k` from 2 upward (Harary graphs with even degree; the disconnection bound
//! decreases with `k`, so the scan starts at the first `k` that passes it, found by
//! bisection). For each `k` the threshold is the smallest `t >= min(2, k)` meeting the
//! security budget (it also leaves the most room for dropouts and makes reconstruction
//! cheapest); `k` is accepted when that `t` also meets the correctness budget. The first
//! accepted `k` below `n - 1` wins; otherwise the complete graph `k = n - 1` is evaluated
//! with the same bounds (there they are exact: `t` must lie in `[A + 1, S - 1]`). If
//! even that fails the request is [`PlanError::Infeasible`], and since the corrupted
//! count of an honest client's neighbourhood stochastically dominates its surviving
//! count whenever `A >= S - 1`, no sparse graph could work either.
//!
//! # Sources and deviations
//!
//! * Bell, Bonawitz, Gascón, Lepoint, Raykova, "Secure Single-Server Aggregation with
//!   (Poly)Logarithmic Overhead", CCS 2020 (ePrint 2020/704): the SecAgg+ construction
//!   over a randomly labelled Harary graph, and the two requirements above (a client's
//!   shares stay below the threshold among corrupted neighbours; honest survivors stay
//!   connected; enough surviving neighbours to reconstruct).
//! * Google's `HararyGraphParameterFinder`, `fcp/secagg/server/graph_parameter_finder.cc`
//!   in `google-parfait/federated-compute`, commit
//!   `e7157f0625b52fdf5912fd4eb9074f003424ceb1` (curious-server adversary class): the
//!   same three events, the same split of `σ` into two halves, per-client union bounds,
//!   the gap-pair count for disconnection, the smallest-secure `t` floored at 2 and the
//!   scan over even `k`. This module is an independent implementation of that approach.
//!
//! Deviations from the finder, all on the conservative side or documented here:
//! * Counts are rounded up (`ceil(γ n)`, `ceil(δ n)`); the finder rounds down.
//! * A client's neighbours are drawn from the other `n - 1` clients (honest client:
//!   `A` corrupted among them; surviving client: `S - 1` survivors among them); the
//!   finder uses a population of `n` with `A` and `S` marked, which is slightly
//!   optimistic in both events.
//! * The security union bound is over the `n - A` honest clients, not all `n`.
//! * The finder only supports `n <= 10^6`, refuses `γ + δ > 0.9` up front and has no
//!   complete-graph fallback inside the finder (its caller switches to classic SecAgg);
//!   here any `n >= 2` is accepted and the complete graph is the last candidate.
//! * `σ` and `η` are parameters (the finder fixes 40 and 20).
//! * Above `k = 4096` the scan gallops (doubling, then bisection). Feasibility is monotone
//!   in `k` up to integer rounding, so there the returned `k` is valid but may exceed the
//!   true minimum by a few.
//!
//! The semi-malicious variant of the finder (threshold above `(k + corrupted) / 2`) is not
//! implemented: this planner serves the honest-but-curious server model.

use std::f64::consts::LN_2;
use std::fmt;

/// What the planner is asked.
///
/// The [`Default`] is a small cross-device round: 100 clients, 10 % dropout, 5 %
/// corrupted clients, 40 bits of statistical security and a `2^-20` failure probability
/// (the security and correctness levels of Google's finder).
#[derive(Clone, Debug, PartialEq)]
pub struct PlanRequest {
    /// Number of clients `n` that start the round; at least 2.
    pub clients: usize,
    /// Upper bound `δ` on the fraction of clients that drop out, in `[0, 1)`.
    pub dropout_rate: f64,
    /// Upper bound `γ` on the fraction of clients that collude with the server, in `[0, 1)`.
    pub corrupt_fraction: f64,
    /// Statistical security parameter `σ`: the adversary learns more than the sum with
    /// probability at most `2^-σ`.
    pub security_bits: u32,
    /// Correctness parameter `η`: the round fails to unmask with probability at most
    /// `2^-η`.
    pub correctness_bits: u32,
}

impl Default for PlanRequest {
    fn default() -> Self {
        Self {
            clients: 100,
            dropout_rate: 0.1,
            corrupt_fraction: 0.05,
            security_bits: 40,
            correctness_bits: 20,
        }
    }
}

/// The planner's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Neighbour count `k`: each client shares its secrets with, and agrees pairwise masks
    /// with, exactly `k` other clients. `k = n - 1` means the complete graph (classic
    /// SecAgg).
    pub neighbors: usize,
    /// Shamir threshold `t` per neighbourhood: the number of the `k` neighbours' shares
    /// needed to rebuild a client's secret (the client holds no share of its own).
    pub threshold: usize,
    /// `log2` of the correctness-failure bound achieved (at most `-η`; may be
    /// `-inf` when failure is impossible under the model).
    pub log2_failure: f64,
    /// `log2` of the insecurity bound achieved (at most `-σ`; may be `-inf`).
    pub log2_insecurity: f64,
}

/// Why no plan was produced.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PlanError {
    /// The request itself is malformed (too few clients, a rate outside `[0, 1)` or NaN).
    InvalidRequest(String),
    /// The request is well formed but no `(k, t)`, not even the complete graph, meets it.
    Infeasible(String),
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRequest(why) => write!(f, "invalid planning request: {why}"),
            Self::Infeasible(why) => write!(f, "infeasible planning request: {why}"),
        }
    }
}

impl std::error::Error for PlanError {}

/// Chooses the smallest even neighbour count `k` (or the complete graph) and a threshold
/// `t` meeting both the security and the correctness target of `req`.
///
/// See the module documentation for the bounds and the search.
pub fn plan(req: &PlanRequest) -> Result<Plan, PlanError> {
    validate(req)?;
    let pop = Population::new(req.clients as u64, req.corrupt_fraction, req.dropout_rate);
    let budget = Budget {
        ln_security_half: -(f64::from(req.security_bits) + 1.0) * LN_2,
        ln_correctness: -f64::from(req.correctness_bits) * LN_2,
    };
    let n = pop.n;
    let complete = n - 1;

    // The complete graph is the most forgiving candidate; if it fails nothing does.
    let Some(t_complete) = pop.evaluate(complete, &budget) else {
        return Err(pop.infeasible(req));
    };

    if let Some((k, t)) = pop.search_sparse(&budget) {
        return Ok(pop.plan_for(k, t));
    }
    Ok(pop.plan_for(complete, t_complete))
}

/// `log2` of the union bound on the probability that some client's secret cannot be
/// rebuilt: fewer than `t` of its `k` neighbours survive, with `n` clients of which
/// `ceil(δ n)` drop out.
///
/// Returns `0.0` (a bound of one: no guarantee) for meaningless inputs: `n < 2`,
/// `k == 0`, `k >= n`, `t == 0`, `t > k`, or a rate outside `[0, 1)`.
pub fn log2_correctness_failure(n: usize, k: usize, t: usize, dropout_rate: f64) -> f64 {
    if !valid_shape(n, k, t) || !valid_rate(dropout_rate) {
        return 0.0;
    }
    let pop = Population::new(n as u64, 0.0, dropout_rate);
    to_log2(pop.ln_unrecoverable(k as u64, t as u64))
}

/// `log2` of the union bound on the probability that the adversary learns more than the
/// sum: some honest client has at least `t` corrupted neighbours among its `k`, or the
/// graph of honest survivors is disconnected, with `n` clients, `ceil(γ n)` corrupted
/// and `ceil(δ n)` dropped.
///
/// For odd `k` the disconnection term is that of `k - 1` (see the module
/// documentation). Returns `0.0` (no guarantee) for meaningless inputs, as
/// [`log2_correctness_failure`] does, and when no client is honest.
pub fn log2_security_failure(
    n: usize,
    k: usize,
    t: usize,
    corrupt_fraction: f64,
    dropout_rate: f64,
) -> f64 {
    if !valid_shape(n, k, t) || !valid_rate(corrupt_fraction) || !valid_rate(dropout_rate) {
        return 0.0;
    }
    let pop = Population::new(n as u64, corrupt_fraction, dropout_rate);
    to_log2(pop.ln_insecurity(k as u64, t as u64))
}

/// The threshold for a neighbour count the caller fixed: the `t` in `2..=k` that maximises
/// the weaker of the two guarantees (`min(−log2 insecurity, −log2 failure)`), with the
/// bounds it achieves. Used when a deployment pins `k` (for example Flower's default of
/// 21 shares) instead of asking [`plan`] for it; the bounds say honestly how strong that
/// choice is.
pub fn threshold_for(n: usize, k: usize, dropout_rate: f64, corrupt_fraction: f64) -> Plan {
    let k = k.clamp(1, n.saturating_sub(1).max(1));
    let lo = 2.min(k);
    let mut best: Option<Plan> = None;
    for t in lo..=k {
        let plan = Plan {
            neighbors: k,
            threshold: t,
            log2_failure: log2_correctness_failure(n, k, t, dropout_rate),
            log2_insecurity: log2_security_failure(n, k, t, corrupt_fraction, dropout_rate),
        };
        let strength = |p: &Plan| (-p.log2_failure).min(-p.log2_insecurity);
        if best.as_ref().is_none_or(|b| strength(&plan) > strength(b)) {
            best = Some(plan);
        }
    }
    best.unwrap_or(Plan {
        neighbors: k,
        threshold: lo,
        log2_failure: 0.0,
        log2_insecurity: 0.0,
    })
}

// ---------------------------------------------------------------------------------------
// Request checks.

fn valid_rate(rate: f64) -> bool {
    rate.is_finite() && (0.0..1.0).contains(&rate)
}

fn valid_shape(n: usize, k: usize, t: usize) -> bool {
    n >= 2 && k >= 1 && k < n && t >= 1 && t <= k
}

fn validate(req: &PlanRequest) -> Result<(), PlanError> {
    if req.clients < 2 {
        return Err(PlanError::InvalidRequest(format!(
            "at least 2 clients are needed, got {}",
            req.clients
        )));
    }
    if !valid_rate(req.dropout_rate) {
        return Err(PlanError::InvalidRequest(format!(
            "dropout rate must be a number in [0, 1), got {}",
            req.dropout_rate
        )));
    }
    if !valid_rate(req.corrupt_fraction) {
        return Err(PlanError::InvalidRequest(format!(
            "corrupt fraction must be a number in [0, 1), got {}",
            req.corrupt_fraction
        )));
    }
    Ok(())
}

/// Converts a natural log of a probability bound to `log2`, capped at 0 (probability 1).
fn to_log2(ln_p: f64) -> f64 {
    if ln_p.is_nan() {
        return 0.0;
    }
    (ln_p / LN_2).min(0.0)
}

// ---------------------------------------------------------------------------------------
// The population model and the planner's search.

/// Largest `k` scanned one even step at a time; beyond it the scan gallops.
const LINEAR_SCAN_LIMIT: u64 = 4096;

/// Log-space targets for one plan.
struct Budget {
    /// Each of the two security events gets half of `2^-σ`.
    ln_security_half: f64,
    /// The correctness event gets all of `2^-η`.
    ln_correctness: f64,
}

/// Worst-case head counts for a round.
#[derive(Clone, Copy, Debug)]
struct Population {
    n: u64,
    corrupt: u64,
    dropped: u64,
}

/// `ceil(rate * n)`, ignoring floating-point dust such as `0.1 * 1000 = 100.00000000000001`.
fn head_count(rate: f64, n: u64) -> u64 {
    let exact = rate * n as f64;
    let count = (exact - 1e-6).ceil().max(0.0) as u64;
    count.min(n)
}

impl Population {
    fn new(n: u64, corrupt_fraction: f64, dropout_rate: f64) -> Self {
        Self {
            n,
            corrupt: head_count(corrupt_fraction, n),
            dropped: head_count(dropout_rate, n),
        }
    }

    fn survivors(&self) -> u64 {
        self.n - self.dropped
    }

    /// Smallest threshold the planner will hand out for `k` neighbours.
    fn threshold_floor(k: u64) -> u64 {
        k.min(2)
    }

    /// ln of the bound on "honest survivors disconnected" for the ring graph of degree `k`.
    fn ln_disconnect(&self, k: u64) -> f64 {
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

    /// ln of the union bound, over honest clients, of "at least `t` corrupted neighbours".
    fn ln_exposure(&self, k: u64, t: u64) -> f64 {
        let honest = self.n - self.corrupt;
        if honest == 0 {
            return 0.0;
        }
        let corrupt_neighbours = Hypergeometric::new(self.n - 1, self.corrupt, k);
        ((honest as f64).ln() + corrupt_neighbours.ln_at_least(t)).min(0.0)
    }

    /// ln of the total insecurity bound for `(k, t)`.
    fn ln_insecurity(&self, k: u64, t: u64) -> f64 {
        ln_add_exp(self.ln_disconnect(k), self.ln_exposure(k, t)).min(0.0)
    }

    /// ln of the union bound, over all clients, of "fewer than `t` surviving neighbours".
    fn ln_unrecoverable(&self, k: u64, t: u64) -> f64 {
        if t == 0 {
            return f64::NEG_INFINITY;
        }
        let others_surviving = self.survivors().saturating_sub(1);
        let surviving_neighbours = Hypergeometric::new(self.n - 1, others_surviving, k);
        ((self.n as f64).ln() + surviving_neighbours.ln_at_most(t - 1)).min(0.0)
    }

    /// The threshold for `k` neighbours if `k` meets both budgets.
    fn evaluate(&self, k: u64, budget: &Budget) -> Option<u64> {
        if self.ln_disconnect(k) > budget.ln_security_half {
            return None;
        }
        let secure = |t: u64| self.ln_exposure(k, t) <= budget.ln_security_half;
        // The exposure bound only falls as t grows; bisect for the first secure t.
        let (mut lo, mut hi) = (Self::threshold_floor(k), k);
        if !secure(hi) {
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
        (self.ln_unrecoverable(k, lo) <= budget.ln_correctness).then_some(lo)
    }

    /// The smallest even `k < n - 1` that meets both budgets, with its threshold.
    fn search_sparse(&self, budget: &Budget) -> Option<(u64, u64)> {
        if self.n < 4 {
            return None; // no even k in [2, n - 2]
        }
        let largest = (self.n - 2) & !1; // largest even k below n - 1
        // First even k whose disconnection bound fits (the bound falls as k grows).
        let connected = |k: u64| self.ln_disconnect(k) <= budget.ln_security_half;
        if !connected(largest) {
            return None;
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
        let start = 2 * lo;

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

    fn plan_for(&self, k: u64, t: u64) -> Plan {
        Plan {
            neighbors: k as usize,
            threshold: t as usize,
            log2_failure: to_log2(self.ln_unrecoverable(k, t)),
            log2_insecurity: to_log2(self.ln_insecurity(k, t)),
        }
    }

    /// Explains why even the complete graph fails and what would make it work.
    fn infeasible(&self, req: &PlanRequest) -> PlanError {
        let n = self.n;
        let k = n - 1;
        let floor = Self::threshold_floor(k);
        let need_t = (self.corrupt + 1).max(floor);
        let usable = self.survivors().saturating_sub(1);
        let mut msg = format!(
            "dropout {} with corruption {} cannot be met at n={}: with {} corrupted and {} \
             dropped clients a threshold must be at least {} to keep secrets from the \
             corrupted clients, but a client can only count on {} surviving neighbours, \
             even in the complete graph (k={})",
            req.dropout_rate,
            req.corrupt_fraction,
            n,
            self.corrupt,
            self.dropped,
            need_t,
            usable,
            k
        );
        // Dropout that would work at this corruption: survivors - 1 >= need_t.
        let max_dropped = n.checked_sub(need_t + 1);
        // Corruption that would work at this dropout: corrupt + 1 <= survivors - 1.
        let max_corrupt = usable.checked_sub(1).filter(|_| usable >= floor);
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
fn rate_label(count: u64, n: u64) -> String {
    let rate = ((count as f64 / n as f64) * 1e4).floor() / 1e4;
    format!("{rate}")
}

// ---------------------------------------------------------------------------------------
// Log-space arithmetic.

/// `ln(m!)`: exact product for small `m`, Stirling's series otherwise (error < 1e-14).
fn ln_factorial(m: u64) -> f64 {
    if m < 18 {
        // 17! < 2^53, so the product is exact.
        let product: f64 = (2..=m).map(|i| i as f64).product();
        return product.ln();
    }
    let x = m as f64;
    let inv = 1.0 / x;
    let inv2 = inv * inv;
    // 1/(12x) - 1/(360x^3) + 1/(1260x^5) - 1/(1680x^7)
    let series = inv * (1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 * (1.0 / 1260.0 - inv2 / 1680.0)));
    x * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI * x).ln() + series
}

/// `ln C(a, b)`, `-inf` when `b > a`.
fn ln_choose(a: u64, b: u64) -> f64 {
    if b > a {
        return f64::NEG_INFINITY;
    }
    ln_factorial(a) - ln_factorial(b) - ln_factorial(a - b)
}

/// `ln (a)_j = ln(a (a-1) ... (a-j+1))`, `-inf` when `j > a`.
fn ln_falling(a: u64, j: u64) -> f64 {
    if j > a {
        return f64::NEG_INFINITY;
    }
    ln_factorial(a) - ln_factorial(a - j)
}

/// `ln(e^a + e^b)` without overflow.
fn ln_add_exp(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if hi == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// Relative size below which the rest of a tail is dropped.
const TAIL_REL_TOL: f64 = 1e-16;

/// Number of marked items among `draws` taken without replacement from `population`
/// items of which `marked` are marked.
#[derive(Clone, Copy, Debug)]
struct Hypergeometric {
    population: u64,
    marked: u64,
    draws: u64,
}

impl Hypergeometric {
    /// Clamps `marked` and `draws` to the population.
    fn new(population: u64, marked: u64, draws: u64) -> Self {
        Self {
            population,
            marked: marked.min(population),
            draws: draws.min(population),
        }
    }

    fn min_value(&self) -> u64 {
        (self.draws + self.marked).saturating_sub(self.population)
    }

    fn max_value(&self) -> u64 {
        self.draws.min(self.marked)
    }

    /// A most likely value, clamped to the support.
    fn mode(&self) -> u64 {
        let num = u128::from(self.draws + 1) * u128::from(self.marked + 1);
        let m = (num / u128::from(self.population + 2)) as u64;
        m.clamp(self.min_value(), self.max_value())
    }

    fn ln_pmf(&self, x: u64) -> f64 {
        if x < self.min_value() || x > self.max_value() {
            return f64::NEG_INFINITY;
        }
        ln_choose(self.marked, x) + ln_choose(self.population - self.marked, self.draws - x)
            - ln_choose(self.population, self.draws)
    }

    /// `pmf(x + 1) / pmf(x)` for `x` in `[min, max)`; decreasing in `x`.
    fn ratio_up(&self, x: u64) -> f64 {
        let (big_n, big_k, k, x) = (
            self.population as f64,
            self.marked as f64,
            self.draws as f64,
            x as f64,
        );
        ((big_k - x) * (k - x)) / ((x + 1.0) * (big_n - big_k - k + x + 1.0))
    }

    /// `pmf(x - 1) / pmf(x)` for `x` in `(min, max]`; decreasing as `x` decreases.
    fn ratio_down(&self, x: u64) -> f64 {
        let (big_n, big_k, k, x) = (
            self.population as f64,
            self.marked as f64,
            self.draws as f64,
            x as f64,
        );
        (x * (big_n - big_k - k + x)) / ((big_k - x + 1.0) * (k - x + 1.0))
    }

    /// `ln P[X >= from]` for `from >= mode`: terms only shrink going right.
    fn ln_sum_rightward(&self, from: u64) -> f64 {
        let end = self.max_value();
        let (mut x, mut term, mut sum) = (from, 1.0_f64, 1.0_f64);
        while x < end {
            let r = self.ratio_up(x);
            // Later ratios are at most r, so the rest is at most term * r / (1 - r).
            if r < 1.0 && term * r <= (1.0 - r) * sum * TAIL_REL_TOL {
                break;
            }
            term *= r;
            sum += term;
            x += 1;
        }
        self.ln_pmf(from) + sum.ln()
    }

    /// `ln P[X <= from]` for `from <= mode`: terms only shrink going left.
    fn ln_sum_leftward(&self, from: u64) -> f64 {
        let end = self.min_value();
        let (mut x, mut term, mut sum) = (from, 1.0_f64, 1.0_f64);
        while x > end {
            let r = self.ratio_down(x);
            if r < 1.0 && term * r <= (1.0 - r) * sum * TAIL_REL_TOL {
                break;
            }
            term *= r;
            sum += term;
            x -= 1;
        }
        self.ln_pmf(from) + sum.ln()
    }

    /// `ln P[X >= t]`.
    fn ln_at_least(&self, t: u64) -> f64 {
        if t <= self.min_value() {
            return 0.0;
        }
        if t > self.max_value() {
            return f64::NEG_INFINITY;
        }
        if t >= self.mode() {
            self.ln_sum_rightward(t)
        } else {
            ln_one_minus(self.ln_sum_leftward(t - 1))
        }
    }

    /// `ln P[X <= x]`.
    fn ln_at_most(&self, x: u64) -> f64 {
        if x >= self.max_value() {
            return 0.0;
        }
        if x < self.min_value() {
            return f64::NEG_INFINITY;
        }
        if x <= self.mode() {
            self.ln_sum_leftward(x)
        } else {
            ln_one_minus(self.ln_sum_rightward(x + 1))
        }
    }
}

/// `ln(1 - e^a)` for the complement of a tail that does not contain the mode (so the
/// complement holds at least the mode's mass); rounding to 1 is read as probability 1.
fn ln_one_minus(ln_p: f64) -> f64 {
    let p = ln_p.exp();
    if p < 1.0 { (-p).ln_1p() } else { 0.0 }
}

// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn req(n: usize, dropout: f64, corrupt: f64) -> PlanRequest {
        PlanRequest {
            clients: n,
            dropout_rate: dropout,
            corrupt_fraction: corrupt,
            ..PlanRequest::default()
        }
    }

    fn ok_plan(r: &PlanRequest) -> Plan {
        match plan(r) {
            Ok(p) => p,
            Err(e) => panic!("expected a plan for {r:?}, got {e}"),
        }
    }

    /// Exact distribution by enumerating every `draws`-subset of `population` items, the
    /// first `marked` of which are marked.
    fn brute_force_pmf(population: u32, marked: u32, draws: u32) -> Vec<f64> {
        let mut counts = vec![0_u64; draws as usize + 1];
        let mut total = 0_u64;
        let marked_mask: u32 = (1 << marked) - 1;
        for subset in 0_u32..(1 << population) {
            if subset.count_ones() == draws {
                counts[(subset & marked_mask).count_ones() as usize] += 1;
                total += 1;
            }
        }
        counts.iter().map(|&c| c as f64 / total as f64).collect()
    }

    #[test]
    fn ln_factorial_matches_direct_sum() {
        let mut direct = 0.0_f64;
        for m in 0_u64..400 {
            if m > 1 {
                direct += (m as f64).ln();
            }
            let got = ln_factorial(m);
            assert!(
                (got - direct).abs() <= 1e-12 * direct.max(1.0),
                "ln({m}!) = {got}, direct sum {direct}"
            );
        }
    }

    #[test]
    fn hypergeometric_tails_match_enumeration() {
        for &(population, marked, draws) in &[
            (9_u32, 3_u32, 4_u32),
            (12, 5, 6),
            (14, 2, 9),
            (14, 11, 5),
            (10, 0, 4),
            (10, 10, 3),
            (16, 7, 15),
        ] {
            let pmf = brute_force_pmf(population, marked, draws);
            let h = Hypergeometric::new(population.into(), marked.into(), draws.into());
            for t in 0..=draws + 1 {
                let exact_ge: f64 = pmf.iter().skip(t as usize).sum();
                let got_ge = h.ln_at_least(t.into()).exp();
                assert!(
                    (got_ge - exact_ge).abs() <= 1e-12,
                    "P[X>={t}] for {population}/{marked}/{draws}: {got_ge} vs {exact_ge}"
                );
                let exact_le: f64 = pmf.iter().take(t as usize + 1).sum();
                let got_le = h.ln_at_most(t.into()).exp();
                assert!(
                    (got_le - exact_le).abs() <= 1e-12,
                    "P[X<={t}] for {population}/{marked}/{draws}: {got_le} vs {exact_le}"
                );
            }
        }
    }

    #[test]
    fn far_tail_is_accurate_in_log_space() {
        // P[X = 30] for X ~ Hyp(1000, 50, 30): all 30 draws marked. Exact: (50)_30/(1000)_30.
        let h = Hypergeometric::new(1000, 50, 30);
        let exact: f64 = (0..30)
            .map(|i| ((50 - i) as f64 / (1000 - i) as f64).ln())
            .sum();
        let got = h.ln_at_least(30);
        assert!((got - exact).abs() < 1e-9, "{got} vs {exact}");
        assert!(got < -60.0);
    }

    /// Ring graph in which node i is joined to the `k / 2` nodes on each side of it.
    fn ring_connected_without(n: usize, k: usize, removed: u32) -> bool {
        let alive: Vec<usize> = (0..n).filter(|&i| removed & (1 << i) == 0).collect();
        let Some(&first) = alive.first() else {
            return true;
        };
        let mut seen = vec![false; n];
        let mut stack = vec![first];
        seen[first] = true;
        while let Some(u) = stack.pop() {
            for d in 1..=k / 2 {
                for v in [(u + d) % n, (u + n - d) % n] {
                    if removed & (1 << v) == 0 && !seen[v] {
                        seen[v] = true;
                        stack.push(v);
                    }
                }
            }
        }
        alive.iter().all(|&i| seen[i])
    }

    #[test]
    fn disconnection_bound_dominates_exact_probability() {
        // Exact P[disconnected] when `bad` uniformly random nodes are removed, by
        // enumerating every removed set; the bound must never be below it.
        for &(n, k, bad) in &[(8_usize, 2_u64, 3_u32), (10, 4, 5), (12, 4, 6), (11, 6, 7)] {
            let mut sets = 0_u64;
            let mut broken = 0_u64;
            for removed in 0_u32..(1 << n) {
                if removed.count_ones() == bad {
                    sets += 1;
                    if !ring_connected_without(n, k as usize, removed) {
                        broken += 1;
                    }
                }
            }
            let exact = broken as f64 / sets as f64;
            let pop = Population {
                n: n as u64,
                corrupt: u64::from(bad),
                dropped: 0,
            };
            let bound = pop.ln_disconnect(k).exp();
            assert!(exact > 0.0, "test case should be able to disconnect");
            assert!(
                bound >= exact - 1e-12,
                "n={n} k={k} bad={bad}: bound {bound} < exact {exact}"
            );
        }
    }

    #[test]
    fn default_request_is_documented_shape() {
        let d = PlanRequest::default();
        assert_eq!(d.clients, 100);
        assert_eq!(d.dropout_rate, 0.1);
        assert_eq!(d.corrupt_fraction, 0.05);
        assert_eq!(d.security_bits, 40);
        assert_eq!(d.correctness_bits, 20);
        let p = ok_plan(&d);
        assert!(
            p.neighbors < 99,
            "100 clients should not need the complete graph: {p:?}"
        );
    }

    #[test]
    fn thousand_clients_needs_tens_of_neighbours() {
        let p = ok_plan(&req(1000, 0.1, 0.05));
        assert!(
            (10..100).contains(&p.neighbors),
            "k for n=1000, δ=0.1, γ=0.05 should be in the tens: {p:?}"
        );
        assert_eq!(p.neighbors % 2, 0);
        assert!(p.threshold >= 2 && p.threshold <= p.neighbors);
        assert!(p.log2_failure <= -20.0);
        assert!(p.log2_insecurity <= -40.0);
    }

    #[test]
    fn plans_meet_their_targets_and_match_the_helpers() {
        for &(n, d, g) in &[
            (100, 0.1, 0.05),
            (1000, 0.3, 0.1),
            (10_000, 0.05, 0.05),
            (10, 0.33, 0.33),
            (2, 0.0, 0.0),
            (3, 0.0, 0.0),
        ] {
            for &(sigma, eta) in &[(40, 20), (64, 30), (20, 10)] {
                let r = PlanRequest {
                    security_bits: sigma,
                    correctness_bits: eta,
                    ..req(n, d, g)
                };
                let p = ok_plan(&r);
                assert!(p.neighbors >= 1 && p.neighbors < n, "{r:?} -> {p:?}");
                assert!(
                    p.threshold >= 1 && p.threshold <= p.neighbors,
                    "{r:?} -> {p:?}"
                );
                assert!(p.log2_failure <= -f64::from(eta), "{r:?} -> {p:?}");
                assert!(p.log2_insecurity <= -f64::from(sigma), "{r:?} -> {p:?}");
                assert_eq!(
                    p.log2_failure,
                    log2_correctness_failure(n, p.neighbors, p.threshold, d)
                );
                assert_eq!(
                    p.log2_insecurity,
                    log2_security_failure(n, p.neighbors, p.threshold, g, d)
                );
                if p.neighbors + 1 < n {
                    assert_eq!(p.neighbors % 2, 0, "sparse k must be even: {p:?}");
                }
            }
        }
    }

    #[test]
    fn smaller_even_degrees_are_rejected() {
        // The answer is the first even k that passes: no smaller even k passes.
        let r = req(1000, 0.1, 0.05);
        let p = ok_plan(&r);
        let pop = Population::new(1000, 0.05, 0.1);
        let budget = Budget {
            ln_security_half: -41.0 * LN_2,
            ln_correctness: -20.0 * LN_2,
        };
        for k in (2..p.neighbors as u64).step_by(2) {
            assert!(pop.evaluate(k, &budget).is_none(), "k={k} would already do");
        }
        assert_eq!(
            pop.evaluate(p.neighbors as u64, &budget),
            Some(p.threshold as u64)
        );
    }

    #[test]
    fn more_dropout_or_corruption_never_needs_fewer_neighbours() {
        for &n in &[100_usize, 1000, 10_000] {
            let mut prev = 0;
            for step in 0..=12 {
                let d = 0.05 * f64::from(step);
                match plan(&req(n, d, 0.05)) {
                    Ok(p) => {
                        assert!(p.neighbors >= prev, "n={n} δ={d}: {} < {prev}", p.neighbors);
                        prev = p.neighbors;
                    }
                    Err(PlanError::Infeasible(_)) => prev = usize::MAX,
                    Err(e) => panic!("unexpected {e}"),
                }
            }
            let mut prev = 0;
            for step in 0..=12 {
                let g = 0.05 * f64::from(step);
                match plan(&req(n, 0.1, g)) {
                    Ok(p) => {
                        assert!(p.neighbors >= prev, "n={n} γ={g}: {} < {prev}", p.neighbors);
                        prev = p.neighbors;
                    }
                    Err(PlanError::Infeasible(_)) => prev = usize::MAX,
                    Err(e) => panic!("unexpected {e}"),
                }
            }
        }
    }

    #[test]
    fn helper_bounds_move_the_right_way() {
        let n = 1000;
        // More dropout: failure more likely. Higher threshold: failure more likely,
        // insecurity less likely. More neighbours at fixed ratio: both improve.
        assert!(
            log2_correctness_failure(n, 40, 20, 0.3) > log2_correctness_failure(n, 40, 20, 0.1)
        );
        assert!(
            log2_correctness_failure(n, 40, 25, 0.1) > log2_correctness_failure(n, 40, 20, 0.1)
        );
        assert!(
            log2_security_failure(n, 40, 15, 0.05, 0.1)
                < log2_security_failure(n, 40, 10, 0.05, 0.1)
        );
        assert!(
            log2_security_failure(n, 60, 15, 0.05, 0.1)
                < log2_security_failure(n, 40, 10, 0.05, 0.1)
        );
        // Odd k (the project's benchmark uses k = 21 at n = 1000) gets a finite bound.
        let odd = log2_security_failure(n, 21, 8, 0.05, 0.1);
        assert!(odd < 0.0 && odd.is_finite(), "{odd}");
        assert_eq!(
            log2_security_failure(n, 21, 8, 0.05, 0.1),
            to_log2(ln_add_exp(
                Population::new(1000, 0.05, 0.1).ln_disconnect(20),
                Population::new(1000, 0.05, 0.1).ln_exposure(21, 8)
            ))
        );
        // Complete graph, classic SecAgg: exact, deterministic conditions.
        assert_eq!(
            log2_security_failure(100, 99, 6, 0.05, 0.1),
            f64::NEG_INFINITY
        );
        assert_eq!(log2_security_failure(100, 99, 5, 0.05, 0.1), 0.0);
        assert_eq!(
            log2_correctness_failure(100, 99, 89, 0.1),
            f64::NEG_INFINITY
        );
        assert_eq!(log2_correctness_failure(100, 99, 90, 0.1), 0.0);
        // Meaningless inputs give no guarantee.
        assert_eq!(log2_correctness_failure(1, 1, 1, 0.1), 0.0);
        assert_eq!(log2_correctness_failure(10, 10, 1, 0.1), 0.0);
        assert_eq!(log2_correctness_failure(10, 4, 0, 0.1), 0.0);
        assert_eq!(log2_correctness_failure(10, 4, 5, 0.1), 0.0);
        assert_eq!(log2_correctness_failure(10, 4, 2, f64::NAN), 0.0);
        assert_eq!(log2_security_failure(10, 4, 2, 1.0, 0.1), 0.0);
    }

    /// Google's finder test table (`fcp/secagg/server/graph_parameter_finder_test.cc`,
    /// google-parfait/federated-compute commit e7157f0625b52fdf5912fd4eb9074f003424ceb1),
    /// curious-server rows with σ = 40, η = 20: (n, γ, δ, k).
    const GOOGLE_CURIOUS_SERVER: &[(usize, f64, f64, usize)] = &[
        (100, 0.45, 0.45, 92),
        (1000, 0.45, 0.45, 822),
        (10_000, 0.45, 0.45, 3494),
        (100_000, 0.45, 0.45, 5508),
        (100, 0.33, 0.33, 68),
        (1000, 0.33, 0.33, 286),
        (10_000, 0.33, 0.33, 422),
        (100_000, 0.33, 0.33, 480),
        (1_000_000, 0.33, 0.33, 518),
        (100, 0.05, 0.33, 28),
        (1000, 0.05, 0.33, 72),
        (10_000, 0.05, 0.33, 86),
        (100_000, 0.05, 0.33, 96),
        (1_000_000, 0.05, 0.33, 102),
        (100, 0.33, 0.05, 34),
        (1000, 0.33, 0.05, 78),
        (10_000, 0.33, 0.05, 92),
        (100_000, 0.33, 0.05, 102),
        (1_000_000, 0.33, 0.05, 110),
        (100, 0.05, 0.05, 12),
        (1000, 0.05, 0.05, 30),
        (10_000, 0.05, 0.05, 34),
        (100_000, 0.05, 0.05, 36),
        (1_000_000, 0.05, 0.05, 38),
        (100, 0.33, 0.0, 26),
        (1000, 0.33, 0.0, 38),
        (10_000, 0.33, 0.0, 42),
        (1_000_000, 0.33, 0.0, 50),
        (1000, 0.0, 0.33, 38),
        (1_000_000, 0.0, 0.33, 50),
        (1000, 0.0, 0.0, 2),
    ];

    #[test]
    fn agrees_with_google_finder_table() {
        for &(n, g, d, k_ref) in GOOGLE_CURIOUS_SERVER {
            let p = ok_plan(&req(n, d, g));
            // Our model is a little more conservative (rounding up, n - 1 others), so
            // allow a few percent above and a little below.
            let k = p.neighbors;
            let hi = k_ref + 4 + k_ref / 20;
            let lo = k_ref.saturating_sub(2 + k_ref / 50);
            assert!(
                (lo..=hi).contains(&k),
                "n={n} γ={g} δ={d}: k={k}, Google's finder gives {k_ref}"
            );
        }
    }

    #[test]
    fn complete_graph_fallback() {
        // 10 clients, 4 dropped and 4 corrupted: the ring graph with k = 8 would be
        // disconnected by the 8 bad clients with probability about 1/9 (5 gap pairs times
        // 2/90), but classic SecAgg with t = 5 (more than 4 corrupted, at most 5 other
        // survivors) is exactly right.
        let p = ok_plan(&req(10, 0.33, 0.33));
        assert_eq!(p.neighbors, 9);
        assert_eq!(p.threshold, 5);
        assert_eq!(p.log2_failure, f64::NEG_INFINITY);
        assert_eq!(p.log2_insecurity, f64::NEG_INFINITY);
    }

    #[test]
    fn infeasible_requests_explain_themselves() {
        let r = req(100, 0.6, 0.4);
        match plan(&r) {
            Err(PlanError::Infeasible(msg)) => {
                assert!(msg.contains("n=100"), "{msg}");
                assert!(msg.contains("lower dropout to at most 0.58"), "{msg}");
                assert!(msg.contains("corruption to at most 0.38"), "{msg}");
                // The suggestions really work.
                assert!(plan(&req(100, 0.58, 0.4)).is_ok());
                assert!(plan(&req(100, 0.6, 0.38)).is_ok());
            }
            other => panic!("expected Infeasible, got {other:?}"),
        }
        // Two clients, one of them corrupted: the other's input is its sum minus a known
        // value, nothing can help.
        assert!(matches!(
            plan(&req(2, 0.0, 0.3)),
            Err(PlanError::Infeasible(_))
        ));
        assert!(matches!(
            plan(&req(1000, 0.5, 0.5)),
            Err(PlanError::Infeasible(_))
        ));
        assert!(matches!(
            plan(&req(1_000_000, 0.9, 0.1)),
            Err(PlanError::Infeasible(_))
        ));
    }

    #[test]
    fn invalid_requests_are_rejected() {
        for r in [
            req(0, 0.1, 0.05),
            req(1, 0.1, 0.05),
            req(100, 1.0, 0.05),
            req(100, -0.1, 0.05),
            req(100, f64::NAN, 0.05),
            req(100, f64::INFINITY, 0.05),
            req(100, 0.1, 1.0),
            req(100, 0.1, f64::NAN),
            req(100, 0.1, -0.0001),
        ] {
            match plan(&r) {
                Err(e @ PlanError::InvalidRequest(_)) => assert!(!e.to_string().is_empty()),
                other => panic!("expected InvalidRequest for {r:?}, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_million_clients_plan_quickly() {
        let p = ok_plan(&req(1_000_000, 0.1, 0.05));
        assert!(p.neighbors < 200, "{p:?}");
        // The hardest documented shape, with k in the thousands, also completes.
        let p = ok_plan(&req(1_000_000, 0.45, 0.45));
        assert!(p.neighbors > 1000 && p.neighbors < 20_000, "{p:?}");
    }
}
