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

/// The most of `colluders` enrolled identities that can be in a cohort whose members each
/// became eligible independently with probability `rate` (verifiable self-selection; see
/// `crate::selection`), except with probability at most `2^-security_bits`: the smallest `a`
/// with `P[X > a] <= 2^-σ` for `X ~ Binomial(colluders, rate)`, summed exactly in log space.
/// A rate of 1 (no selection) gives `colluders`.
///
/// ```
/// use secagg_host::plan::colluders_in_cohort;
/// assert_eq!(colluders_in_cohort(50, 1.0, 40), 50);
/// assert_eq!(colluders_in_cohort(50_000, 0.0, 40), 0);
/// // 5% of a million enrolled devices, one in a thousand eligible: about 50 expected,
/// // and well under 150 except with probability 2^-40.
/// let a = colluders_in_cohort(50_000, 0.001, 40);
/// assert!((90..150).contains(&a), "{a}");
/// ```
pub fn colluders_in_cohort(colluders: u64, rate: f64, security_bits: u32) -> u64 {
    if rate.is_nan() || rate <= 0.0 || colluders == 0 {
        return 0;
    }
    if rate >= 1.0 {
        return colluders;
    }
    let target = -f64::from(security_bits) * LN_2;
    let (ln_p, ln_q) = (rate.ln(), (-rate).ln_1p());
    let c = colluders;
    // Walk down from X = c, adding pmf(j) to the upper tail while it stays within budget;
    // pmf(j - 1) / pmf(j) = j / (c - j + 1) * q / p.
    let mut ln_pmf = c as f64 * ln_p;
    let mut ln_tail = f64::NEG_INFINITY;
    let mut j = c;
    while j > 0 {
        let with = ln_add_exp(ln_tail, ln_pmf);
        if with > target {
            return j; // P[X > j] fits the budget, P[X >= j] does not
        }
        ln_tail = with;
        ln_pmf += (j as f64).ln() - ((c - j + 1) as f64).ln() + ln_q - ln_p;
        j -= 1;
    }
    0
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

// ---------------------------------------------------------------------------------------
// Request checks.

fn valid_rate(rate: f64) -> bool {
    rate.is_finite() && (0.0..1.0).contains(&rate)
}

/// Any pair the bounds can be evaluated for: `t` may reach `k + 1` (neighbours and owner).
fn valid_shape(n: usize, k: usize, t: usize) -> bool {
    n >= 2 && k >= 1 && k < n && t >= 1 && t <= k + 1
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

impl Budget {
    fn for_request(req: &PlanRequest) -> Self {
        Self {
            ln_security_half: -(f64::from(req.security_bits) + 1.0) * LN_2,
            ln_correctness: -f64::from(req.correctness_bits) * LN_2,
        }
    }
}

/// Worst-case head counts for a round, and who attacks it.
#[derive(Clone, Copy, Debug)]
struct Population {
    n: u64,
    corrupt: u64,
    dropped: u64,
    adversary: Adversary,
}

/// `ceil(rate * n)`, ignoring floating-point dust such as `0.1 * 1000 = 100.00000000000001`.
fn head_count(rate: f64, n: u64) -> u64 {
    let exact = rate * n as f64;
    let count = (exact - 1e-6).ceil().max(0.0) as u64;
    count.min(n)
}

impl Population {
    /// The head counts, against a curious server.
    fn new(n: u64, corrupt_fraction: f64, dropout_rate: f64) -> Self {
        Self {
            n,
            corrupt: head_count(corrupt_fraction, n),
            dropped: head_count(dropout_rate, n),
            adversary: Adversary::Curious,
        }
    }

    fn for_request(req: &PlanRequest) -> Self {
        let pop = Self::new(req.clients as u64, req.corrupt_fraction, req.dropout_rate);
        let corrupt = match req.colluders {
            Some(c) => (c as u64).min(pop.n.saturating_sub(1)),
            None => pop.corrupt,
        };
        Self { corrupt, ..pop }.against(req.adversary)
    }

    fn against(self, adversary: Adversary) -> Self {
        Self { adversary, ..self }
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

    /// The fewest corrupted neighbours that expose an honest client (see [`Adversary`]).
    fn exposing(&self, k: u64, t: u64) -> u64 {
        // k and t never exceed n, which came from a usize.
        self.adversary
            .corrupt_neighbours_needed(k as usize, t as usize) as u64
    }

    /// ln of the union bound, over honest clients, of "enough corrupted neighbours to
    /// expose it": at least `t` of them for the curious server, `2t - k - 1` for the
    /// semi-malicious one.
    fn ln_exposure(&self, k: u64, t: u64) -> f64 {
        let honest = self.n - self.corrupt;
        if honest == 0 {
            return 0.0;
        }
        let corrupt_neighbours = Hypergeometric::new(self.n - 1, self.corrupt, k);
        ((honest as f64).ln() + corrupt_neighbours.ln_at_least(self.exposing(k, t))).min(0.0)
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

    /// The smallest `t` in `threshold_floor(k)..=max_t` whose exposure bound fits, if any.
    fn min_secure_t(&self, k: u64, max_t: u64, budget: &Budget) -> Option<u64> {
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
    fn max_correct_t(&self, k: u64, budget: &Budget) -> Option<u64> {
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
    fn evaluate(&self, k: u64, budget: &Budget) -> Option<u64> {
        if self.ln_disconnect(k) > budget.ln_security_half {
            return None;
        }
        let t = self.min_secure_t(k, k, budget)?;
        (self.ln_unrecoverable(k, t) <= budget.ln_correctness).then_some(t)
    }

    /// The smallest even `k < n - 1` whose disconnection bound fits, or `n - 1` (the
    /// complete graph, never disconnected) when none does.
    fn min_connected_k(&self, budget: &Budget) -> u64 {
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
    fn search_sparse(&self, budget: &Budget) -> Option<(u64, u64)> {
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
                adversary: Adversary::Curious,
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

    // -----------------------------------------------------------------------------------
    // Adversary models and `check`.

    fn semi(r: PlanRequest) -> PlanRequest {
        PlanRequest {
            adversary: Adversary::SemiMalicious,
            ..r
        }
    }

    #[test]
    fn adversary_names_round_trip() {
        for a in Adversary::ALL {
            assert_eq!(a.to_string().parse::<Adversary>(), Ok(a), "{a:?}");
        }
        assert_eq!("curious".parse(), Ok(Adversary::Curious));
        assert_eq!("semi-malicious".parse(), Ok(Adversary::SemiMalicious));
        for bad in [
            "",
            "Curious",
            "semi_malicious",
            "malicious",
            "semi-malicious ",
        ] {
            let err = bad.parse::<Adversary>().err();
            assert!(err.is_some(), "{bad:?} should not parse");
            let msg = err.map(|e| e.to_string()).unwrap_or_default();
            assert!(msg.contains("semi-malicious"), "{bad:?}: {msg}");
        }
        assert_eq!(PlanRequest::default().adversary, Adversary::Curious);
    }

    /// The split-view condition from first principles: the server holds `X` corrupted
    /// neighbours' shares of both secrets, tells `a` honest neighbours that the owner
    /// dropped (mask-key shares) and `b` others that it survived (self-mask shares); the
    /// owner adds its own self-mask share when its list names it.
    #[test]
    fn split_view_condition_matches_share_counting() {
        for k in 1..=14_usize {
            for t in 1..=k + 1 {
                for x in 0..=k {
                    let honest = k - x;
                    let breaks = |owner_share: usize| {
                        (0..=honest).any(|a| {
                            (0..=honest - a).any(|b| x + a >= t && x + b + owner_share >= t)
                        })
                    };
                    let with_owner = breaks(1);
                    let without_owner = breaks(0);
                    let needed = Adversary::SemiMalicious.corrupt_neighbours_needed(k, t);
                    assert_eq!(
                        with_owner,
                        x >= needed,
                        "k={k} t={t} X={x}: counting says {with_owner}, 2t-k-1 = {needed}"
                    );
                    // Hiding the owner from its own list never helps the server.
                    assert!(!without_owner || with_owner, "k={k} t={t} X={x}");
                    // The curious server only ever has the corrupted neighbours' shares.
                    assert_eq!(
                        x >= Adversary::Curious.corrupt_neighbours_needed(k, t),
                        x >= t,
                        "k={k} t={t} X={x}"
                    );
                    assert!(
                        needed <= t,
                        "k={k} t={t}: split view needs more than curious"
                    );
                }
            }
        }
    }

    /// Exact binomial coefficient for the small cases of the reference below.
    fn choose_u128(a: u64, b: u64) -> u128 {
        if b > a {
            return 0;
        }
        let b = b.min(a - b);
        let mut c: u128 = 1;
        for i in 0..b {
            // c * (a - i) / (i + 1) stays an integer at every step.
            c = c * u128::from(a - i) / u128::from(i + 1);
        }
        c
    }

    /// Independent reference for the bounds at `n <= 60`: direct sums of exact
    /// hypergeometric weights and a direct product for the disconnection term. Rates are
    /// whole percentages so the head counts are exact integers. Returns the probability
    /// bounds (security, correctness), each capped at 1.
    fn reference_bounds(
        adversary: Adversary,
        n: u64,
        k: u64,
        t: u64,
        corrupt_pct: u64,
        dropout_pct: u64,
    ) -> (f64, f64) {
        let a = (corrupt_pct * n).div_ceil(100);
        let d = (dropout_pct * n).div_ceil(100);
        let s = n - d;
        let all = choose_u128(n - 1, k) as f64;
        // Exposure: P[X >= c], X ~ Hyp(n - 1, a, k), times the n - a honest clients.
        let c = match adversary {
            Adversary::Curious => t,
            Adversary::SemiMalicious => (2 * t).saturating_sub(k + 1),
        };
        let exposure = if a == n {
            1.0
        } else {
            let hits: u128 = (c..=k)
                .map(|x| choose_u128(a, x) * choose_u128(n - 1 - a, k - x))
                .sum();
            ((n - a) as f64 * hits as f64 / all).min(1.0)
        };
        // Disconnection: n (n - k' - 1) / 2 gap pairs, each all-bad with (B)_k' / (n)_k'.
        let even = k - k % 2;
        let bad = (a + d).min(n);
        let disconnect = if k + 1 >= n {
            0.0
        } else if even == 0 {
            1.0
        } else if bad < even {
            0.0
        } else {
            let pairs = (n * (n - even - 1)) as f64 / 2.0;
            let all_bad: f64 = (0..even)
                .map(|i| (bad - i) as f64 / (n - i) as f64)
                .product();
            (pairs * all_bad).min(1.0)
        };
        // Correctness: P[Y <= t - 1], Y ~ Hyp(n - 1, s - 1, k), times n.
        let others = s.saturating_sub(1);
        let short: u128 = (0..t.min(k + 1))
            .map(|y| choose_u128(others, y) * choose_u128(n - 1 - others, k - y))
            .sum();
        let failure = (n as f64 * short as f64 / all).min(1.0);
        ((exposure + disconnect).min(1.0), failure)
    }

    fn assert_log2_matches(got: f64, want: f64, what: &str) {
        if want == 0.0 {
            assert_eq!(got, f64::NEG_INFINITY, "{what}: want 0, got 2^{got}");
        } else if want >= 1.0 {
            assert!(got > -1e-9, "{what}: want 1, got 2^{got}");
        } else {
            let w = want.log2();
            assert!(
                (got - w).abs() <= 1e-9 * w.abs().max(1.0),
                "{what}: got 2^{got}, exact 2^{w}"
            );
        }
    }

    const SMALL_RATES: &[(u64, u64)] = &[(0, 0), (5, 5), (10, 20), (20, 10), (30, 0), (0, 30)];

    #[test]
    fn bounds_match_exact_enumeration_up_to_sixty_clients() {
        for n in (3..=60_u64).step_by(3).chain([59, 60]) {
            for &(gp, dp) in SMALL_RATES {
                let (g, d) = (gp as f64 / 100.0, dp as f64 / 100.0);
                for k in 1..n {
                    for t in 1..=k + 1 {
                        let (nu, ku, tu) = (n as usize, k as usize, t as usize);
                        for adv in Adversary::ALL {
                            let (sec, _) = reference_bounds(adv, n, k, t, gp, dp);
                            let got = log2_security_failure_with(adv, nu, ku, tu, g, d);
                            let what = format!("{adv} security n={n} k={k} t={t} γ={g} δ={d}");
                            assert_log2_matches(got, sec, &what);
                        }
                        let (_, fail) = reference_bounds(Adversary::Curious, n, k, t, gp, dp);
                        let got = log2_correctness_failure(nu, ku, tu, d);
                        let what = format!("correctness n={n} k={k} t={t} δ={d}");
                        assert_log2_matches(got, fail, &what);
                        assert_eq!(
                            log2_security_failure(nu, ku, tu, g, d),
                            log2_security_failure_with(Adversary::Curious, nu, ku, tu, g, d),
                            "n={n} k={k} t={t}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn semi_malicious_plans_are_minimal_by_exact_enumeration() {
        let half = 2.0_f64.powi(-41);
        let eta = 2.0_f64.powi(-20);
        // Whether (k, t) passes every budget by the reference, with disconnection and
        // exposure held to 2^-41 each.
        let passes = |n: u64, k: u64, t: u64, gp: u64, dp: u64| {
            let adv = Adversary::SemiMalicious;
            let (sec, fail) = reference_bounds(adv, n, k, t, gp, dp);
            let (conn, _) = reference_bounds(adv, n, k, k + 1, gp, dp); // exposure 0
            let exposure = sec - conn;
            (conn <= half, exposure <= half, fail <= eta)
        };
        let mut sparse_seen = 0;
        for n in 6..=60_u64 {
            for &(gp, dp) in SMALL_RATES {
                let r = semi(req(n as usize, dp as f64 / 100.0, gp as f64 / 100.0));
                let Ok(p) = plan(&r) else {
                    // Infeasible: not even the complete graph passes.
                    let k = n - 1;
                    assert!(
                        (2..=k).all(|t| {
                            let (c, e, f) = passes(n, k, t, gp, dp);
                            !(c && e && f)
                        }),
                        "{r:?} was called infeasible but the complete graph passes"
                    );
                    continue;
                };
                let (k, t) = (p.neighbors as u64, p.threshold as u64);
                let (c, e, f) = passes(n, k, t, gp, dp);
                assert!(
                    c && e && f,
                    "{r:?} -> {p:?} fails the reference ({c}, {e}, {f})"
                );
                // The smallest secure threshold for its k.
                if t > 2 {
                    let (_, e1, _) = passes(n, k, t - 1, gp, dp);
                    assert!(!e1, "{r:?} -> {p:?}: t - 1 is already secure");
                }
                // No smaller even k works with any threshold.
                for k2 in (2..k.min(n - 1)).step_by(2) {
                    for t2 in 2..=k2 {
                        let (c, e, f) = passes(n, k2, t2, gp, dp);
                        assert!(!(c && e && f), "{r:?} -> {p:?}, but k={k2} t={t2} passes");
                    }
                }
                if k + 1 < n {
                    sparse_seen += 1;
                }
            }
        }
        assert!(
            sparse_seen > 20,
            "too few sparse plans exercised: {sparse_seen}"
        );
    }

    #[test]
    fn semi_malicious_threshold_exceeds_curious_and_the_quantile() {
        for &(n, d, g) in &[
            (100_usize, 0.05, 0.05),
            (100, 0.1, 0.05),
            (1000, 0.05, 0.05),
            (1000, 0.1, 0.05),
            (1000, 0.1, 0.2),
            (10_000, 0.05, 0.05),
            (10_000, 0.1, 0.05),
            (10_000, 0.0, 0.3),
        ] {
            let r = semi(req(n, d, g));
            let p = ok_plan(&r);
            let (k, t) = (p.neighbors as u64, p.threshold as u64);
            let budget = Budget::for_request(&r);
            let curious = Population::new(n as u64, g, d);
            let malicious = curious.against(Adversary::SemiMalicious);
            // X_max: the largest count of corrupted neighbours the union bound does not
            // rule out, (n - A) P[X >= x] > 2^-(σ+1).
            let x_max = (0..=k)
                .filter(|&x| {
                    let ln = ((n as u64 - curious.corrupt) as f64).ln()
                        + Hypergeometric::new(n as u64 - 1, curious.corrupt, k).ln_at_least(x);
                    ln > budget.ln_security_half
                })
                .max()
                .unwrap_or(0);
            assert!(
                2 * t > k + 1 + x_max,
                "{r:?} -> k={k} t={t}: 2t <= k + 1 + X_max = {}",
                k + 1 + x_max
            );
            if t > 2 {
                assert!(
                    2 * (t - 1) <= k + 1 + x_max,
                    "{r:?} -> k={k} t={t}: t - 1 would already do (X_max = {x_max})"
                );
            }
            let t_curious = curious.min_secure_t(k, k, &budget);
            assert_eq!(t_curious, Some((x_max + 1).max(2)), "{r:?} k={k}");
            assert!(
                t_curious.is_some_and(|tc| tc <= t),
                "{r:?} k={k}: {t_curious:?} > {t}"
            );
            // At every k, the semi-malicious threshold is at least the curious one.
            for k2 in (2..=k).step_by(2) {
                let tc = curious.min_secure_t(k2, k2 + 1, &budget);
                let ts = malicious.min_secure_t(k2, k2 + 1, &budget);
                assert!(
                    matches!((tc, ts), (Some(a), Some(b)) if a <= b),
                    "{r:?} k={k2}: curious {tc:?}, semi-malicious {ts:?}"
                );
            }
            // Never a smaller graph than the curious plan.
            let pc = ok_plan(&req(n, d, g));
            assert!(pc.neighbors <= p.neighbors, "{r:?}: {pc:?} vs {p:?}");
        }
    }

    #[test]
    fn complete_graph_is_exact_for_semi_malicious() {
        // Every honest client has all A corrupted clients as neighbours: the split view
        // works iff A >= 2t - n, and a client counts on S - 1 surviving neighbours.
        for n in 3..=30_u64 {
            for corrupt in 0..n {
                for dropped in 0..n {
                    let pop = Population {
                        n,
                        corrupt,
                        dropped,
                        adversary: Adversary::SemiMalicious,
                    };
                    let k = n - 1;
                    let need = (n + corrupt) / 2 + 1;
                    for t in 1..=n {
                        let secure = pop.ln_insecurity(k, t) == f64::NEG_INFINITY;
                        assert_eq!(secure, 2 * t > n + corrupt, "n={n} A={corrupt} t={t}");
                        assert_eq!(secure, t >= need, "n={n} A={corrupt} t={t}");
                    }
                    let budget = Budget {
                        ln_security_half: -41.0 * LN_2,
                        ln_correctness: -20.0 * LN_2,
                    };
                    let want = (need < n && need < n - dropped).then_some(need);
                    assert_eq!(
                        pop.evaluate(k, &budget),
                        want,
                        "n={n} A={corrupt} D={dropped}"
                    );
                    if want.is_some() {
                        assert!(
                            corrupt + 2 * dropped + 3 <= n,
                            "n={n} A={corrupt} D={dropped}"
                        );
                    }
                }
            }
        }
        // Through the public API: 10 clients, 1 corrupted, 3 dropped. Sparse degrees fail
        // (k = 8 needs t = 6 but may keep only 5 surviving neighbours), the complete graph
        // needs t >= floor(11 / 2) + 1 = 6 and allows t <= 10 - 3 - 1 = 6.
        let r = semi(req(10, 0.3, 0.1));
        let p = ok_plan(&r);
        assert_eq!((p.neighbors, p.threshold), (9, 6), "{r:?} -> {p:?}");
        assert_eq!(p.log2_insecurity, f64::NEG_INFINITY, "{p:?}");
        assert_eq!(p.log2_failure, f64::NEG_INFINITY, "{p:?}");
        assert!(matches!(check(&r, 9, 6), Ok(q) if q == p));
        assert!(
            matches!(check(&r, 9, 5), Err(CheckError::SplitView { corrupt_needed: 0, log2, .. }) if log2 == 0.0),
            "{:?}",
            check(&r, 9, 5)
        );
        assert!(
            matches!(check(&r, 9, 7), Err(CheckError::Correctness { .. })),
            "{:?}",
            check(&r, 9, 7)
        );
        // The curious server only needs t > A = 1 there.
        assert!(check(&req(10, 0.3, 0.1), 9, 2).is_ok());
    }

    #[test]
    fn check_accepts_planned_pairs_and_names_the_failing_bound() {
        for &(n, d, g) in &[
            (100_usize, 0.1, 0.05),
            (1000, 0.05, 0.05),
            (1000, 0.1, 0.05),
            (10_000, 0.1, 0.05),
            (50, 0.2, 0.1),
        ] {
            for adversary in Adversary::ALL {
                let r = PlanRequest {
                    adversary,
                    ..req(n, d, g)
                };
                let p = ok_plan(&r);
                let (k, t) = (p.neighbors, p.threshold);
                assert_eq!(check(&r, k, t), Ok(p.clone()), "{r:?}");

                // One below: insecure, with the right variant and the fix pointing back.
                if t > 2 {
                    let e = check(&r, k, t - 1).err();
                    let fix = match (&e, adversary) {
                        (Some(CheckError::Exposure { fix, t: t1, .. }), Adversary::Curious)
                        | (
                            Some(CheckError::SplitView { fix, t: t1, .. }),
                            Adversary::SemiMalicious,
                        ) => {
                            assert_eq!(*t1, t - 1);
                            fix.clone()
                        }
                        other => panic!("{r:?} k={k} t={}: {other:?}", t - 1),
                    };
                    assert_eq!(fix.min_secure_threshold, Some(t), "{r:?} k={k}");
                    assert_eq!(fix.planned, Some((k, t)), "{r:?}");
                    let e = e.unwrap_or(CheckError::InvalidRequest(String::new()));
                    assert!(e.is_security(), "{e}");
                    let msg = e.to_string();
                    assert!(msg.contains("insecure"), "{msg}");
                    assert!(msg.contains(&format!("t = {t}")), "{msg}");
                }

                // Too high for the surviving neighbours: correctness, not security.
                let e = check(&r, k, k + 1).err();
                match &e {
                    Some(CheckError::Correctness { fix, .. }) => {
                        let hi = fix.max_correct_threshold.unwrap_or(0);
                        assert!(hi >= t && hi <= k, "{r:?} k={k}: {fix:?}");
                        if hi < k {
                            assert!(
                                matches!(check(&r, k, hi + 1), Err(CheckError::Correctness { .. })),
                                "{r:?} k={k} t={}",
                                hi + 1
                            );
                        }
                        assert!(check(&r, k, hi).is_ok(), "{r:?} k={k} t={hi}");
                    }
                    other => panic!("{r:?} k={k} t={}: {other:?}", k + 1),
                }
                let e = e.unwrap_or(CheckError::InvalidRequest(String::new()));
                assert!(!e.is_security(), "{e}");
                assert!(e.to_string().contains("correctness"), "{e}");

                // Out of range.
                for (k2, t2) in [(k, k + 2), (k, 1), (0, 2), (n, 2), (n + 5, 3)] {
                    assert!(
                        matches!(check(&r, k2, t2), Err(CheckError::Shape { .. })),
                        "{r:?} k={k2} t={t2}: {:?}",
                        check(&r, k2, t2)
                    );
                }
            }
        }
    }

    #[test]
    fn check_reports_disconnection_and_invalid_requests() {
        let r = semi(req(1000, 0.1, 0.05));
        match check(&r, 4, 3) {
            Err(e @ CheckError::Disconnection { min_neighbors, .. }) => {
                assert!(e.is_security());
                assert!(min_neighbors > 4 && min_neighbors % 2 == 0, "{e}");
                // The suggested degree does stay connected.
                assert!(!matches!(
                    check(&r, min_neighbors, min_neighbors + 1),
                    Err(CheckError::Disconnection { .. })
                ));
                if min_neighbors > 4 {
                    assert!(matches!(
                        check(&r, min_neighbors - 2, 2),
                        Err(CheckError::Disconnection { .. })
                    ));
                }
                let msg = e.to_string();
                assert!(msg.contains("disconnection"), "{msg}");
                assert!(msg.contains(&format!("at least {min_neighbors}")), "{msg}");
            }
            other => panic!("expected a disconnection failure, got {other:?}"),
        }
        for bad in [
            semi(req(100, 1.0, 0.05)),
            semi(req(1, 0.1, 0.05)),
            req(100, 0.1, f64::NAN),
        ] {
            assert!(
                matches!(check(&bad, 2, 2), Err(CheckError::InvalidRequest(_))),
                "{bad:?}"
            );
        }
        // A pair with no fix at its degree says "raise k".
        let r = semi(req(1000, 0.1, 0.05));
        let p = ok_plan(&r);
        let small = p.neighbors - 10;
        match check(&r, small, small / 2) {
            Err(e @ CheckError::SplitView { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("raise k"), "{msg}");
                assert!(
                    msg.contains(&format!("k = {}, t = {}", p.neighbors, p.threshold)),
                    "{msg}"
                );
            }
            other => panic!("k={small}: {other:?}"),
        }
    }

    #[test]
    fn semi_malicious_infeasible_requests_explain_themselves() {
        // 100 clients, 20 corrupted, 40 dropped: the complete graph needs
        // t >= floor(120 / 2) + 1 = 61 but only 59 other clients survive.
        let r = semi(req(100, 0.4, 0.2));
        match plan(&r) {
            Err(PlanError::Infeasible(msg)) => {
                assert!(msg.contains("semi-malicious"), "{msg}");
                assert!(msg.contains("at least 61"), "{msg}");
                assert!(msg.contains("lower dropout to at most 0.38"), "{msg}");
                assert!(msg.contains("corruption to at most 0.17"), "{msg}");
                assert!(plan(&semi(req(100, 0.38, 0.2))).is_ok());
                assert!(plan(&semi(req(100, 0.4, 0.17))).is_ok());
            }
            other => panic!("expected Infeasible for {r:?}, got {other:?}"),
        }
        // γ + 2δ near 1: Google's finder refuses 0.33 / 0.33 up front; here the complete
        // graph passes (330 + 2 * 330 <= 1000 - 3: t = 1330 / 2 + 1 = 666 with 669 other
        // survivors), and so does a nearly complete one. At 0.34 / 0.34
        // (340 + 680 > 997) only the curious server can be planned for.
        let p = ok_plan(&semi(req(1000, 0.33, 0.33)));
        assert!(p.neighbors > 900, "{p:?}");
        assert!(check(&semi(req(1000, 0.33, 0.33)), 999, 666).is_ok());
        assert!(plan(&req(1000, 0.34, 0.34)).is_ok());
        assert!(matches!(
            plan(&semi(req(1000, 0.34, 0.34))),
            Err(PlanError::Infeasible(_))
        ));
        // Two clients: t = 1 hands either one both secrets of the other.
        assert!(matches!(
            plan(&semi(req(2, 0.0, 0.0))),
            Err(PlanError::Infeasible(_))
        ));
    }

    /// Google's finder test table (same file and commit as above), semi-malicious rows
    /// with σ = 40, η = 20: (n, γ, δ, k, largest expected t).
    const GOOGLE_SEMI_MALICIOUS_SERVER: &[(usize, f64, f64, usize, usize)] = &[
        (100, 0.3, 0.3, 92, 62),
        (1000, 0.3, 0.3, 872, 584),
        (10_000, 0.3, 0.3, 4822, 3230),
        (100, 0.05, 0.33, 72, 39),
        (1000, 0.05, 0.33, 398, 223),
        (10_000, 0.05, 0.33, 746, 420),
        (100_000, 0.05, 0.33, 882, 496),
        (100, 0.33, 0.05, 42, 37),
        (1000, 0.33, 0.05, 132, 109),
        (10_000, 0.33, 0.05, 178, 146),
        (100_000, 0.33, 0.05, 196, 160),
        (1_000_000, 0.33, 0.05, 212, 173),
        (100, 0.05, 0.05, 16, 11),
        (1000, 0.05, 0.05, 52, 37),
        (10_000, 0.05, 0.05, 62, 44),
        (100_000, 0.05, 0.05, 68, 48),
        (1_000_000, 0.05, 0.05, 74, 52),
        (100, 0.33, 0.0, 26, 26),
        (1000, 0.33, 0.0, 38, 37),
        (10_000, 0.33, 0.0, 42, 41),
        (1_000_000, 0.33, 0.0, 50, 49),
        (100, 0.0, 0.33, 68, 35),
        (1000, 0.0, 0.33, 228, 115),
        (10_000, 0.0, 0.33, 326, 164),
        (1_000_000, 0.0, 0.33, 410, 206),
        (1000, 0.0, 0.0, 2, 2),
    ];

    #[test]
    fn agrees_with_google_finder_semi_malicious_table() {
        for &(n, g, d, k_ref, t_ref) in GOOGLE_SEMI_MALICIOUS_SERVER {
            let p = ok_plan(&semi(req(n, d, g)));
            let (k, t) = (p.neighbors, p.threshold);
            // As for the curious table, plus one share for the owner's own (module docs).
            let hi = k_ref + 4 + k_ref / 20;
            let lo = k_ref.saturating_sub(2 + k_ref / 50);
            assert!(
                (lo..=hi).contains(&k),
                "n={n} γ={g} δ={d}: k={k}, Google's finder gives {k_ref}"
            );
            assert!(
                t <= t_ref + (k - k_ref.min(k)) + 2 && t + 2 >= t_ref.min(t + 2),
                "n={n} γ={g} δ={d}: k={k} t={t}, Google's finder gives k={k_ref} t<={t_ref}"
            );
        }
    }
}
