//! SecAgg+ parameter planner: picks the neighbour count `k` and the Shamir threshold `t`,
//! or checks a pair the caller fixed.
//!
//! # Neighbourhood semantics
//!
//! The clients of a round are placed on a ring in the order of a uniformly random
//! permutation. For even `k` every client is joined to the `k / 2` clients on each side of
//! it (the Harary graph `H(k, n)`); `k = n - 1` is the complete graph of classic SecAgg.
//! Each client has exactly `k` neighbours. It Shamir-shares two secrets with threshold `t`
//! over `k + 1` holders, its neighbours and itself:
//!
//! * its mask-agreement secret key: it throws its own share away, so only the `k`
//!   neighbours hold shares of it, and the server asks for them when the client dropped;
//! * its self-mask seed: it keeps its own share and reveals it in the unmasking round when
//!   the survivor list it receives names it; the server asks for these shares when the
//!   client survived.
//!
//! Any `t` shares rebuild a secret and `t - 1` reveal nothing. The round configuration
//! allows `2 <= t <= k + 1`, and [`Plan::threshold`] is that `t`. An honest holder answers
//! one unmasking request per round, with one share per owner: the self-mask share if its
//! survivor list names the owner, the mask-key share otherwise.
//!
//! The reference finder (below) adds a self-edge to every node, so a client there also
//! holds `k + 1` shares including one of its own. Its bounds, however, only count the `k`
//! other holders (the "sample size" in its distributions is `k`).
//!
//! # What is bounded
//!
//! `n` clients, of which `A` are corrupted (they work with the server: `ceil(γ n)`, or the
//! absolute [`PlanRequest::colluders`] a client's policy holds, capped at `n - 1`) and
//! `D = ceil(δ n)` drop out, so `S = n - D` survive. Both are worst-case counts: the rates
//! are treated as upper bounds, as the reference does. The graph's random labelling makes
//! a client's `k` neighbours a uniformly random `k`-subset of the other `n - 1` clients, so
//! the number of corrupted or surviving neighbours is hypergeometric.
//!
//! * **Security** (`2^-σ`), the sum of two events, each held to `2^-(σ+1)` as in the
//!   reference:
//!   1. *An honest client's secrets can be rebuilt by the adversary* (the *exposure*
//!      event). Which count of corrupted neighbours `X` suffices depends on the
//!      [`Adversary`] (next section); per client it is a tail `P[X >= c]` of
//!      `X ~ Hypergeometric(population n - 1, marked A, draws k)`, and the union bound
//!      over the `n - A` honest clients multiplies by `n - A`.
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
//!   multiplies by `n`. Only neighbours' shares are counted, and the model errs on the
//!   safe side for both kinds of client: a dropped client's mask key has exactly its `k`
//!   neighbours as holders, but `S` (not `S - 1`) of its other clients survive; a
//!   survivor's self mask has one more holder, the survivor itself. Near the edge this
//!   rejects pairs that would in fact work: at `n = 100` with 5 dropouts, `k = 16`,
//!   `t = 12` gets a bound of `2^-7.4`, yet a survivor keeps at least 11 surviving
//!   neighbours plus its own share, and a dropped client at least 12 surviving
//!   neighbours, so nothing can fail. At `t = k + 1` the bound is 1: a dropped client's
//!   mask key, with `k` holders, can then never be rebuilt.
//!
//! # Adversary models
//!
//! * [`Adversary::Curious`] (honest but curious): the server follows the protocol and
//!   pools what it sees with the `A` corrupted clients. Every honest holder answers
//!   according to the true survivor list, so the secret that must stay hidden (the mask
//!   key of a survivor, the self mask of a client that dropped after sending its input)
//!   is rebuilt exactly when at least `t` of the owner's `k` neighbours are corrupted:
//!   the exposure event is `X >= t`.
//! * [`Adversary::SemiMalicious`]: the server may also lie about who survived, sending
//!   different survivor lists to different clients; otherwise it runs the protocol. To
//!   unmask the input of an honest client `u` it must rebuild both of `u`'s secrets. Its
//!   `X` corrupted neighbours hand over both shares. Of the `k - X` honest neighbours, it
//!   must tell `t - X` that `u` dropped (for mask-key shares) and `t - X - 1` others that
//!   `u` survived (for self-mask shares, the last one being `u`'s own, revealed because
//!   `u`'s list names it). Each honest holder reveals one share per owner, so this works
//!   exactly when `(t - X) + (t - X - 1) <= k - X`, that is when `X >= 2t - k - 1`. (If
//!   `u` is shown a list without itself it reveals nothing and the server needs
//!   `X >= 2t - k`, a smaller event.) The exposure event is therefore
//!   `X >= 2t - k - 1`; since `2t - k - 1 <= t` for every `t <= k + 1`, it contains the
//!   curious event, and the semi-malicious threshold is never below the curious one for
//!   the same `k`. The protocol's consistency round (holders sign the survivor list, and
//!   a holder reveals a share only with `t` signatures on its own list from the owner's
//!   `k + 1` holders, as in Bonawitz et al.) gives the same condition: two different lists
//!   that each gather `t` signatures share at least `2t - k - 1` signers, all of them
//!   corrupted because honest holders sign one list.
//!
//!   Roughly, `t` must exceed `(k + γ k) / 2` while staying below the `(1 - δ) k`
//!   surviving neighbours, so a sparse graph needs about `γ + 2δ < 1`; the bounds decide
//!   the exact border. In the complete graph `X = A` for every honest client, so the
//!   conditions are exact: secure iff `t >= floor((n + A) / 2) + 1`, correct (counting
//!   neighbours) iff `t <= S - 1`, which together need `A + 2D <= n - 3`.
//!
//!   Two limits of this model, both properties of the protocol rather than of the
//!   planner. The disconnection term assumes that dropouts are not chosen by the server;
//!   a server that declares chosen honest clients dropped can cut the ring into a few
//!   large arcs and learn each arc's sum (the "sums of large subsets" leakage of Bell et
//!   al.'s malicious analysis, which this planner does not quantify; the reference does
//!   not either). And the graph seed is a hash of the advertised key list, which the
//!   server (choosing whom to list) and corrupted clients (choosing keys after seeing
//!   honest ones) can influence: an adversary that tries `2^g` lists gains up to `g`
//!   bits against the exposure bound, so add `g` to `σ` where that is a concern.
//!
//! Tails are summed exactly in log space (own log-factorial, no crates), starting at the
//! cut-off and walking away from the mode until a geometric bound on the rest is below
//! `10^-16` of the running sum.
//!
//! # Search
//!
//! Even `k` from 2 upward (Harary graphs with even degree; the disconnection bound
//! decreases with `k`, so the scan starts at the first `k` that passes it, found by
//! bisection). For each `k` the threshold is the smallest `t` in `min(2, k)..=k` meeting the
//! security budget of the request's adversary (it also leaves the most room for dropouts
//! and makes reconstruction cheapest); `k` is accepted when that `t` also meets the
//! correctness budget. The first accepted `k` below `n - 1` wins; otherwise the complete
//! graph `k = n - 1` is evaluated with the same bounds (there they are exact: for the
//! curious server `t` must lie in `[A + 1, S - 1]`, for the semi-malicious one in
//! `[floor((n + A) / 2) + 1, S - 1]`). If even that fails the request is
//! [`PlanError::Infeasible`]: for the curious server, since the corrupted count of an
//! honest client's neighbourhood stochastically dominates its surviving count whenever
//! `A >= S - 1`, no sparse graph could work either; for the semi-malicious one the
//! complete graph fails only when `A + 2D >= n - 2`, and there the expected counts of
//! corrupted and surviving neighbours leave a sparse graph less than one share of room
//! between its two constraints, far less than the tails demand.
//!
//! [`check`] evaluates a pair the caller fixed against the same per-event budgets
//! (`2^-(σ+1)` for each security event, `2^-η` for correctness), so every planned pair
//! passes, and it says which bound fails otherwise.
//!
//! # Sources and deviations
//!
//! * Bell, Bonawitz, Gascón, Lepoint, Raykova, "Secure Single-Server Aggregation with
//!   (Poly)Logarithmic Overhead", CCS 2020 (ePrint 2020/704): the SecAgg+ construction
//!   over a randomly labelled Harary graph, and the two requirements above (a client's
//!   shares stay below the threshold among corrupted neighbours; honest survivors stay
//!   connected; enough surviving neighbours to reconstruct).
//! * Bonawitz, Ivanov, Kreuter, Marcedone, McMahan, Patel, Ramage, Segal, Seth,
//!   "Practical Secure Aggregation for Privacy-Preserving Machine Learning", CCS 2017:
//!   the complete-graph protocol and its threshold against a server that lies about
//!   dropouts.
//! * Google's `HararyGraphParameterFinder`, `fcp/secagg/server/graph_parameter_finder.cc`
//!   in `google-parfait/federated-compute`, commit
//!   `e7157f0625b52fdf5912fd4eb9074f003424ceb1` (curious- and semi-malicious-server
//!   classes): the same three events, the same split of `σ` into two halves, per-client
//!   union bounds, the gap-pair count for disconnection, the smallest-secure `t` floored
//!   at 2 and the scan over even `k`. This module is an independent implementation of
//!   that approach.
//!
//! Deviations from the finder, all on the conservative side or documented here:
//! * Counts are rounded up (`ceil(γ n)`, `ceil(δ n)`); the finder rounds down.
//! * A client's neighbours are drawn from the other `n - 1` clients (honest client:
//!   `A` corrupted among them; surviving client: `S - 1` survivors among them); the
//!   finder uses a population of `n` with `A` and `S` marked, which is slightly
//!   optimistic in both events.
//! * The security union bound is over the `n - A` honest clients, not all `n`.
//! * Semi-malicious threshold: the finder takes its curious cut-off `t1` (the largest
//!   count of corrupted neighbours not yet ruled out) and sets
//!   `t = ceil((t1 + k - 1.25) / 2) + 1`, the smallest `t` with `2t > t1 + k`: its
//!   holders are the `k` neighbours only. Here the owner holds a share too (one more
//!   holder the server can address), so the condition is `2t > t1 + k + 1`, and the `t`
//!   chosen here is one higher whenever `t1 + k` is odd (for the same `t1`).
//! * The finder only supports `n <= 10^6`, refuses `γ + δ > 0.9` (curious) and
//!   `γ + 2δ > 0.9` (semi-malicious) up front and has no complete-graph fallback inside
//!   the finder (its caller switches to classic SecAgg); here any `n >= 2` is accepted,
//!   the bounds alone decide, and the complete graph is the last candidate.
//! * `σ` and `η` are parameters (the finder fixes 40 and 20).
//! * Above `k = 4096` the scan gallops (doubling, then bisection). Feasibility is monotone
//!   in `k` up to integer rounding, so there the returned `k` is valid but may exceed the
//!   true minimum by a few.

use std::f64::consts::LN_2;
use std::fmt;
use std::str::FromStr;

mod check;
pub mod dp;
mod population;
mod tails;
#[cfg(test)]
mod tests;

pub use check::{CheckError, Fix, check};
pub use dp::{DpPlan, DpPlanError, DpRequest, DpTarget, plan_dp};
pub use tails::{colluders_in_cohort, committee_quorum};

use population::{Budget, Population};

/// What the server may do to learn more than the sum. See the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Adversary {
    /// Honest but curious: the server follows the protocol and pools what it sees with the
    /// corrupted clients. Written `curious`.
    Curious,
    /// The server may also send different survivor lists to different clients in the
    /// unmasking round. Written `semi-malicious`.
    SemiMalicious,
}

impl Adversary {
    /// Both models, weakest first.
    pub const ALL: [Adversary; 2] = [Adversary::Curious, Adversary::SemiMalicious];

    /// The name [`FromStr`] accepts and [`Display`](fmt::Display) prints.
    pub const fn name(self) -> &'static str {
        match self {
            Adversary::Curious => "curious",
            Adversary::SemiMalicious => "semi-malicious",
        }
    }

    /// The fewest corrupted neighbours (out of `k`) of an honest client that let this
    /// adversary rebuild its input, at threshold `t`: `t` for the curious server,
    /// `2t - k - 1` (at least 0) for the semi-malicious one.
    pub const fn corrupt_neighbours_needed(self, k: usize, t: usize) -> usize {
        match self {
            Adversary::Curious => t,
            Adversary::SemiMalicious => (2 * t).saturating_sub(k + 1),
        }
    }
}

impl fmt::Display for Adversary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An adversary name that is neither `curious` nor `semi-malicious`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseAdversaryError(String);

impl fmt::Display for ParseAdversaryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown adversary {:?}: expected `curious` or `semi-malicious`",
            self.0
        )
    }
}

impl std::error::Error for ParseAdversaryError {}

impl FromStr for Adversary {
    type Err = ParseAdversaryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Adversary::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| ParseAdversaryError(s.to_string()))
    }
}

/// What the planner is asked.
///
/// The [`Default`] is a small cross-device round: 100 clients, 10 % dropout, 5 %
/// corrupted clients, 40 bits of statistical security and a `2^-20` failure probability
/// (the security and correctness levels of Google's finder), against a
/// [curious](Adversary::Curious) server. The default adversary is kept curious so that
/// callers written before the semi-malicious model keep their answers; a deployment whose
/// server is not trusted to report survivors honestly should ask for
/// [`Adversary::SemiMalicious`] (the `secagg plan` command does by default).
#[derive(Clone, Debug, PartialEq)]
pub struct PlanRequest {
    /// Number of clients `n` that start the round; at least 2.
    pub clients: usize,
    /// Upper bound `δ` on the fraction of clients that drop out, in `[0, 1)`.
    pub dropout_rate: f64,
    /// Upper bound `γ` on the fraction of clients that collude with the server, in `[0, 1)`:
    /// `ceil(γ n)` colluders, for a deployment whose whole population is this round. Ignored
    /// when [`colluders`](Self::colluders) is set.
    pub corrupt_fraction: f64,
    /// The absolute number `c` of enrolled identities that may collude with the server,
    /// whatever the round's size: what a client's policy holds (a fraction of a round the
    /// server sizes is no budget, since the server chooses the size). Capped at `n - 1` (the
    /// client judging the round is honest). `None` uses `ceil(γ n)`.
    pub colluders: Option<usize>,
    /// Statistical security parameter `σ`: the adversary learns more than the sum with
    /// probability at most `2^-σ`.
    pub security_bits: u32,
    /// Correctness parameter `η`: the round fails to unmask with probability at most
    /// `2^-η`.
    pub correctness_bits: u32,
    /// What the server may do; the security bounds are taken against it.
    pub adversary: Adversary,
}

impl Default for PlanRequest {
    fn default() -> Self {
        Self {
            clients: 100,
            dropout_rate: 0.1,
            corrupt_fraction: 0.05,
            colluders: None,
            security_bits: 40,
            correctness_bits: 20,
            adversary: Adversary::Curious,
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
    /// Shamir threshold `t`: the number of shares needed to rebuild a client's secret,
    /// from its `k` neighbours (and, for its self mask, itself).
    pub threshold: usize,
    /// `log2` of the correctness-failure bound achieved (at most `-η`; may be
    /// `-inf` when failure is impossible under the model).
    pub log2_failure: f64,
    /// `log2` of the insecurity bound achieved (at most `-σ`; may be `-inf`).
    pub log2_insecurity: f64,
}

/// Why no plan was produced.
///
/// ```
/// use secagg_host::plan::{Adversary, PlanError, PlanRequest, plan};
///
/// // Half the clients drop out and 30 % collude: no threshold is both safe and reachable.
/// let request = PlanRequest {
///     dropout_rate: 0.5,
///     corrupt_fraction: 0.3,
///     adversary: Adversary::SemiMalicious,
///     ..PlanRequest::default()
/// };
/// assert!(matches!(plan(&request), Err(PlanError::Infeasible(_))));
///
/// let one_client = PlanRequest { clients: 1, ..PlanRequest::default() };
/// assert!(matches!(plan(&one_client), Err(PlanError::InvalidRequest(_))));
/// ```
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
///
/// The answer feeds a [`RoundConfig`](crate::RoundConfig) directly:
///
/// ```
/// use secagg_host::RoundConfig;
/// use secagg_host::plan::{Adversary, PlanRequest, plan};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let request = PlanRequest {
///     clients: 1000,
///     adversary: Adversary::SemiMalicious,
///     ..PlanRequest::default() // 10 % dropout, 5 % corrupted, σ = 40, η = 20
/// };
/// let p = plan(&request)?;
/// assert_eq!((p.neighbors, p.threshold), (78, 52)); // 78 neighbours instead of 999
/// assert!(p.log2_insecurity <= -40.0 && p.log2_failure <= -20.0);
///
/// let config = RoundConfig::builder(request.clients, 10_000)
///     .neighbors(p.neighbors)
///     .threshold(p.threshold)
///     .build()?;
/// assert!(!config.is_complete_graph());
/// # Ok(())
/// # }
/// ```
pub fn plan(req: &PlanRequest) -> Result<Plan, PlanError> {
    validate(req)?;
    let pop = Population::for_request(req);
    let budget = Budget::for_request(req);
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
/// `k == 0`, `k >= n`, `t == 0`, `t > k + 1`, or a rate outside `[0, 1)`. At `t = k + 1`
/// the bound is one as well (see the module documentation).
pub fn log2_correctness_failure(n: usize, k: usize, t: usize, dropout_rate: f64) -> f64 {
    if !valid_shape(n, k, t) || !valid_rate(dropout_rate) {
        return 0.0;
    }
    let pop = Population::new(n as u64, 0.0, dropout_rate);
    to_log2(pop.ln_unrecoverable(k as u64, t as u64))
}

/// `log2` of the union bound on the probability that a [curious](Adversary::Curious)
/// server learns more than the sum: some honest client has at least `t` corrupted
/// neighbours among its `k`, or the graph of honest survivors is disconnected, with `n`
/// clients, `ceil(γ n)` corrupted and `ceil(δ n)` dropped.
///
/// For odd `k` the disconnection term is that of `k - 1` (see the module
/// documentation). Returns `0.0` (no guarantee) for meaningless inputs, as
/// [`log2_correctness_failure`] does, and when no client is honest. The same as
/// [`log2_security_failure_with`] for [`Adversary::Curious`].
pub fn log2_security_failure(
    n: usize,
    k: usize,
    t: usize,
    corrupt_fraction: f64,
    dropout_rate: f64,
) -> f64 {
    log2_security_failure_with(Adversary::Curious, n, k, t, corrupt_fraction, dropout_rate)
}

/// `log2` of the union bound on the probability that `adversary` learns more than the
/// sum: some honest client has at least
/// [`adversary.corrupt_neighbours_needed(k, t)`](Adversary::corrupt_neighbours_needed)
/// corrupted neighbours among its `k` (`t` for the curious server, `2t - k - 1` for the
/// semi-malicious one), or the graph of honest survivors is disconnected, with `n`
/// clients, `ceil(γ n)` corrupted and `ceil(δ n)` dropped.
///
/// Returns `0.0` (no guarantee) for meaningless inputs (`n < 2`, `k == 0`, `k >= n`,
/// `t == 0`, `t > k + 1`, a rate outside `[0, 1)`) and when no client is honest.
pub fn log2_security_failure_with(
    adversary: Adversary,
    n: usize,
    k: usize,
    t: usize,
    corrupt_fraction: f64,
    dropout_rate: f64,
) -> f64 {
    if !valid_shape(n, k, t) || !valid_rate(corrupt_fraction) || !valid_rate(dropout_rate) {
        return 0.0;
    }
    let pop = Population::new(n as u64, corrupt_fraction, dropout_rate).against(adversary);
    to_log2(pop.ln_insecurity(k as u64, t as u64))
}

/// `log2` of the security bound of `(k, t)` for the whole request (its adversary, its
/// colluders — absolute or a fraction — and its dropout rate): what [`check`] compares with
/// `2^-(σ+1)` per event, summed. `0.0` (no guarantee) for meaningless inputs.
pub fn log2_security_failure_for(req: &PlanRequest, k: usize, t: usize) -> f64 {
    if validate(req).is_err() || !valid_shape(req.clients, k, t) {
        return 0.0;
    }
    to_log2(Population::for_request(req).ln_insecurity(k as u64, t as u64))
}

/// The threshold for a neighbour count the caller fixed: the `t` in `2..=k` that maximises
/// the weaker of the two guarantees (`min(−log2 insecurity, −log2 failure)`), with the
/// bounds it achieves. Used when a deployment pins `k` (for example Flower's default of
/// 21 shares) instead of asking [`plan`] for it; the bounds say honestly how strong that
/// choice is.
///
/// [`RoundConfig::builder`](crate::RoundConfig::builder) takes its default threshold from
/// here (at 10 % dropout and 5 % corruption) when only `k` is given:
///
/// ```
/// use secagg_host::RoundConfig;
/// use secagg_host::plan::threshold_for;
/// # fn main() -> Result<(), secagg_host::ConfigError> {
/// let p = threshold_for(1000, 20, 0.1, 0.05);
/// assert_eq!(p.neighbors, 20);
/// assert!(p.log2_insecurity > -40.0); // weaker than the planner's default target
///
/// let config = RoundConfig::builder(1000, 1).neighbors(20).build()?;
/// assert_eq!(config.threshold(), p.threshold);
/// # Ok(())
/// # }
/// ```
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
// Request checks, shared by the search and the check.

pub(crate) fn valid_rate(rate: f64) -> bool {
    rate.is_finite() && (0.0..1.0).contains(&rate)
}

/// Any pair the bounds can be evaluated for: `t` may reach `k + 1` (neighbours and owner).
pub(crate) fn valid_shape(n: usize, k: usize, t: usize) -> bool {
    n >= 2 && k >= 1 && k < n && t >= 1 && t <= k + 1
}

pub(crate) fn validate(req: &PlanRequest) -> Result<(), PlanError> {
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
pub(crate) fn to_log2(ln_p: f64) -> f64 {
    if ln_p.is_nan() {
        return 0.0;
    }
    (ln_p / LN_2).min(0.0)
}
