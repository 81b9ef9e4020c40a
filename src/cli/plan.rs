//! `secagg plan`: the planner's answer for a deployment, or a check of a pair fixed by
//! hand.

use std::process::ExitCode;

use secagg_host::config::bits_needed;
use secagg_host::plan::dp::MAX_DP_BITS;
use secagg_host::plan::{
    Adversary, CheckError, DpPlan, DpRequest, DpTarget, PlanError, PlanRequest, check,
    colluders_in_cohort, log2_correctness_failure, log2_security_failure_for, plan, plan_dp,
};

/// Exit status when no `(k, t)` meets the request, or when the checked pair misses a bound.
const EXIT_FAILS_BOUNDS: u8 = 1;

/// Arguments of `secagg plan`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 when the chosen or checked pair meets every bound; \
    1 when no pair meets the request, or the checked pair is insecure or fails correctness \
    (the reason goes to stderr); 2 for malformed input (a rate outside [0, 1), too few \
    clients, k or t out of range, --neighbors without --threshold)."
)]
pub struct PlanArgs {
    /// Number of clients n.
    #[arg(long)]
    clients: usize,
    /// Expected fraction of clients that drop out (an upper bound).
    #[arg(long, default_value_t = 0.1)]
    dropout: f64,
    /// Fraction of the enrolled population that may collude with the server (an upper
    /// bound): c = ⌈corrupt × population⌉ colluders, unless --colluders gives c.
    #[arg(long, default_value_t = 0.05)]
    corrupt: f64,
    /// c: the most enrolled identities that may collude with the server, in the whole
    /// deployment (what every client's policy holds; overrides --corrupt).
    #[arg(long)]
    colluders: Option<usize>,
    /// P: the enrolled population, for --corrupt [default: --clients, a deployment whose
    /// every client is in the round].
    #[arg(long)]
    population: Option<usize>,
    /// p: the rate of verifiable self-selection, in (0, 1): each enrolled client is eligible
    /// with probability p, so a round of n members is drawn from a population of about n / p,
    /// and the colluders in it are bounded by a binomial tail over c·p instead of c.
    #[arg(long)]
    select_rate: Option<f64>,
    /// The server the security bounds hold against. The default is semi-malicious: the
    /// server is the party secure aggregation guards against, so it is not trusted to
    /// report survivors honestly.
    #[arg(long, value_enum, default_value_t = AdversaryArg::SemiMalicious)]
    adversary: AdversaryArg,
    /// Check this neighbour count k instead of choosing one (with --threshold). k = n − 1
    /// is the complete graph; odd k is allowed.
    #[arg(long, requires = "threshold")]
    neighbors: Option<usize>,
    /// The threshold t to check with --neighbors: shares needed out of the k neighbours
    /// and the owner, 2 ≤ t ≤ k + 1.
    #[arg(long, requires = "neighbors")]
    threshold: Option<usize>,
    /// Statistical security σ: the server learns more than the sum with probability ≤ 2^-σ.
    #[arg(long, default_value_t = 40)]
    security_bits: u32,
    /// Correctness η: the round fails to unmask with probability ≤ 2^-η.
    #[arg(long, default_value_t = 20)]
    correctness_bits: u32,
    /// Quantization levels per input (precision wanted); sets the modulus bits.
    #[arg(long, default_value_t = 1 << 16)]
    levels: u32,
    /// Largest integer weight per client.
    #[arg(long, default_value_t = 1)]
    max_weight: u32,
    #[command(flatten)]
    dp: DpArgs,
}

/// The distributed-DP plan's arguments (`--epsilon` or `--noise` turns it on).
#[derive(Debug, clap::Args)]
pub struct DpArgs {
    /// Plan distributed DP for this ε (at --delta, over --rounds): prints the noise, the
    /// bits it needs, the expected error of the mean and the ε actually spent.
    #[arg(long, conflicts_with = "noise")]
    pub epsilon: Option<f64>,
    /// Plan distributed DP for this noise multiplier z (the central noise's standard
    /// deviation over the clip, σ = z c w) and report the ε it spends.
    #[arg(long)]
    pub noise: Option<f64>,
    /// δ of the DP guarantee.
    #[arg(long, default_value_t = 1e-6)]
    pub delta: f64,
    /// Rounds the privacy is accounted over (each round releases one noisy sum).
    #[arg(long, default_value_t = 1)]
    pub rounds: u32,
    /// c: every update is clipped to this L2 norm.
    #[arg(long, default_value_t = 1.0)]
    pub clip: f32,
    /// d: parameters per update (required for the DP plan).
    #[arg(long)]
    pub params: Option<usize>,
    /// β: conditional rounding's failure probability (0: plain stochastic rounding, whose
    /// norm bound c s + √d is looser). [default: e^-0.5]
    #[arg(long)]
    pub beta: Option<f64>,
    /// Use this modulus 2^b (2..=64; above 32 each element is 64 bits) instead of choosing
    /// the smallest within --slack.
    #[arg(long)]
    pub bits: Option<u32>,
    /// The chance, per round, that any coordinate of the noisy sum wraps mod 2^b.
    #[arg(long, default_value_t = 1e-6)]
    pub wrap_prob: f64,
    /// The cost of rounding accepted against the continuous Gaussian when choosing b.
    #[arg(long, default_value_t = 0.1)]
    pub slack: f64,
}

impl DpArgs {
    /// Whether a DP plan was asked for.
    pub fn wanted(&self) -> bool {
        self.epsilon.is_some() || self.noise.is_some()
    }

    /// The request for `clients` clients, `honest` honest survivors (T − c) and
    /// `survivors` expected survivors, weights up to `max_weight`.
    pub fn request(
        &self,
        clients: usize,
        honest: usize,
        survivors: usize,
        max_weight: u32,
    ) -> Result<DpRequest, String> {
        let target = match (self.epsilon, self.noise) {
            (Some(e), _) => DpTarget::Epsilon(e),
            (None, Some(z)) => DpTarget::Noise(z),
            (None, None) => return Err("--epsilon or --noise is needed".into()),
        };
        let params = self
            .params
            .ok_or("the DP plan needs --params (the parameters per update)")?;
        let base = DpRequest::new(target, params, clients);
        Ok(DpRequest {
            delta: self.delta,
            rounds: self.rounds,
            clip: self.clip,
            honest,
            survivors,
            max_weight,
            beta: self.beta.unwrap_or(base.beta),
            bits: self.bits,
            wrap_probability: self.wrap_prob,
            slack: self.slack,
            ..base
        })
    }
}

/// The honest inputs a DP round's noise rests on: T − c (T the survivors a released sum
/// needs), and against a semi-malicious server at most k − t + 2 (the target and the
/// k − t + 1 other honest inputs it can be isolated with: the README's threat model); an
/// error when none is guaranteed. `k` is capped at n − 1.
pub fn honest_survivors(
    big_t: usize,
    colluders: usize,
    (n, k, t): (usize, usize, usize),
    adversary: Adversary,
) -> Result<usize, String> {
    let released = big_t.saturating_sub(colluders);
    let h = match adversary {
        Adversary::Curious => released,
        _ => released.min((k.min(n.saturating_sub(1)) + 2).saturating_sub(t)),
    };
    if h == 0 {
        return Err(format!(
            "with T = {big_t}, t = {t}, k = {k} and {colluders} colluders no honest input is guaranteed in a released sum: DP noise cannot rest on the honest clients (raise t or lower the colluders)"
        ));
    }
    Ok(h)
}

/// How `h` came about, for the printout.
pub fn describe_honest(h: usize, big_t: usize, colluders: usize, (k, t): (usize, usize)) -> String {
    if h + colluders == big_t {
        format!("h = T - c = {big_t} - {colluders} = {h}")
    } else {
        format!(
            "h = k - t + 2 = {k} - {t} + 2 = {h} (below T - c = {big_t} - {colluders}: a semi-malicious server can isolate an input with k - t + 1 other honest ones)"
        )
    }
}

/// Prints a DP plan (what `secagg plan` and `secagg simulate` show); `honest` says how h
/// came about.
pub fn print_dp(p: &DpPlan, req: &DpRequest, honest: &str) {
    let rounds = if req.rounds == 1 {
        "1 round".to_string()
    } else {
        format!("{} rounds", req.rounds)
    };
    let target = match req.target {
        DpTarget::Epsilon(e) => format!("ε ≤ {e} at δ = {:e} over {rounds}", req.delta),
        DpTarget::Noise(z) => format!(
            "noise multiplier z = {z}, accounted at δ = {:e} over {rounds}",
            req.delta
        ),
    };
    println!("  distributed DP (Skellam noise under the masks): {target}");
    println!("    noise sized for the honest inputs alone: {honest}");
    let cost = match req.target {
        DpTarget::Epsilon(_) => format!(
            "rounding costs {:.1}% over the continuous Gaussian",
            (p.central_error / p.ideal_std - 1.0) * 100.0
        ),
        DpTarget::Noise(_) => format!(
            "rounding costs {:.1}% in ε over the continuous Gaussian",
            (p.epsilon / p.ideal_epsilon - 1.0) * 100.0
        ),
    };
    let slack = if req.bits.is_none() && !p.within_slack {
        format!(
            " (not within {}% at any b up to {MAX_DP_BITS})",
            req.slack * 100.0
        )
    } else {
        String::new()
    };
    println!(
        "    modulus bits b = {}: {cost}{slack}; the sum wraps with p ≈ {:.1e} per round",
        p.bits, p.wrap_probability
    );
    println!(
        "    scale s = {:.6}, clip c = {}, conditional rounding β = {:.4}",
        p.dp.scale, p.dp.clip, p.dp.beta
    );
    println!(
        "    noise: each client adds Skellam variance μ_c = {:.6} (integer units); central σ = {:.6} from h clients alone (Gaussian ideal {:.6})",
        p.dp.noise, p.noise_std, p.ideal_std
    );
    println!(
        "    sensitivity after rounding: Δ2 = {:.3}, Δ1 = {:.3} (integer units)",
        p.sensitivity.l2, p.sensitivity.l1
    );
    println!(
        "    expected error of the mean: {:.6} per coordinate (RMS over {} survivors, unit weights), {:.6} in L2",
        p.mean_error,
        req.survivors,
        p.mean_error * (req.params as f64).sqrt()
    );
    println!(
        "    ε spent: {:.4} at δ = {:e} (Rényi order {})",
        p.epsilon, p.delta, p.order
    );
    println!(
        "    sampler: within total variation {:.1e} of exact over all draws; adds (1 + e^ε) × that = {:.1e} to δ",
        p.sampler_tv, p.sampler_delta
    );
}

/// The adversary model, as written on the command line.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum AdversaryArg {
    /// Follows the protocol and pools what it sees with the corrupted clients.
    Curious,
    /// May also send different survivor lists to different clients.
    SemiMalicious,
}

impl From<AdversaryArg> for Adversary {
    fn from(a: AdversaryArg) -> Self {
        match a {
            AdversaryArg::Curious => Adversary::Curious,
            AdversaryArg::SemiMalicious => Adversary::SemiMalicious,
        }
    }
}

/// The colluders a round can hold: c (given, or ⌈γ P⌉), and with self-selection the
/// binomial tail bound over c·p at 2^-(σ+1).
struct Colluders {
    /// c in the deployment.
    total: usize,
    /// The most in the round.
    in_round: usize,
}

fn colluders(a: &PlanArgs) -> Result<Colluders, String> {
    let population = a.population.unwrap_or(a.clients);
    if !(a.corrupt.is_finite() && (0.0..1.0).contains(&a.corrupt)) {
        return Err(format!(
            "corrupt fraction must be a number in [0, 1), got {}",
            a.corrupt
        ));
    }
    let total = a
        .colluders
        .unwrap_or_else(|| (a.corrupt * population as f64 - 1e-6).ceil().max(0.0) as usize);
    let in_round = match a.select_rate {
        None => total,
        Some(p) if p > 0.0 && p < 1.0 => {
            colluders_in_cohort(total as u64, p, a.security_bits.saturating_add(1)) as usize
        }
        Some(p) => return Err(format!("--select-rate must lie in (0, 1), got {p}")),
    };
    Ok(Colluders { total, in_round })
}

fn describe_colluders(a: &PlanArgs, c: &Colluders) -> String {
    match a.select_rate {
        None => format!("colluders ≤ {}", c.total),
        Some(p) => format!(
            "colluders ≤ {} of {} enrolled, self-selected at rate {p} (2^-{} tail)",
            c.in_round,
            c.total,
            a.security_bits.saturating_add(1)
        ),
    }
}

pub fn run(a: PlanArgs) -> Result<ExitCode, String> {
    let c = colluders(&a)?;
    let req = PlanRequest {
        clients: a.clients,
        dropout_rate: a.dropout,
        corrupt_fraction: a.corrupt,
        colluders: Some(c.in_round),
        security_bits: a.security_bits,
        correctness_bits: a.correctness_bits,
        adversary: a.adversary.into(),
    };
    match (a.neighbors, a.threshold) {
        (None, None) => choose(&a, &c, &req),
        (Some(k), Some(t)) => check_pair(&a, &c, &req, k, t),
        // clap already insists on both or neither.
        _ => Err("--neighbors and --threshold go together".into()),
    }
}

/// Plans `(k, t)` for the request.
fn choose(a: &PlanArgs, c: &Colluders, req: &PlanRequest) -> Result<ExitCode, String> {
    let p = match plan(req) {
        Ok(p) => p,
        Err(e @ PlanError::Infeasible(_)) => {
            eprintln!("error: no secure parameters: {e}");
            return Ok(ExitCode::from(EXIT_FAILS_BOUNDS));
        }
        Err(e) => return Err(e.to_string()),
    };
    println!(
        "n = {}, dropout ≤ {}, {}: {}",
        a.clients,
        a.dropout,
        describe_colluders(a, c),
        graph(a.clients, p.neighbors)
    );
    println!("  adversary: {}", describe(req.adversary));
    println!("  neighbors k = {}", p.neighbors);
    println!("  threshold t = {}", p.threshold);
    print_bounds(a, p.log2_insecurity, p.log2_failure);
    if a.dp.wanted() {
        return dp_part(a, c, p.neighbors, p.threshold);
    }
    print_modulus(a);
    Ok(ExitCode::SUCCESS)
}

/// The DP plan for a round of `k` neighbours and threshold `t` (T = t survivors needed).
fn dp_part(a: &PlanArgs, c: &Colluders, k: usize, t: usize) -> Result<ExitCode, String> {
    let shape = (a.clients, k, t);
    let honest = match honest_survivors(t, c.in_round, shape, a.adversary.into()) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_FAILS_BOUNDS));
        }
    };
    let dropped = (a.dropout * a.clients as f64).ceil() as usize;
    let survivors = a.clients.saturating_sub(dropped).max(1);
    let req = a.dp.request(a.clients, honest, survivors, a.max_weight)?;
    match plan_dp(&req) {
        Ok(p) => {
            print_dp(&p, &req, &describe_honest(honest, t, c.in_round, (k, t)));
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ secagg_host::plan::DpPlanError::NoFit { .. }) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(EXIT_FAILS_BOUNDS))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Evaluates the caller's `(k, t)` against the request.
fn check_pair(
    a: &PlanArgs,
    c: &Colluders,
    req: &PlanRequest,
    k: usize,
    t: usize,
) -> Result<ExitCode, String> {
    let outcome = check(req, k, t);
    if let Err(e @ (CheckError::InvalidRequest(_) | CheckError::Shape { .. })) = &outcome {
        return Err(e.to_string());
    }
    println!(
        "n = {}, dropout ≤ {}, {}: checking {}",
        a.clients,
        a.dropout,
        describe_colluders(a, c),
        graph(a.clients, k)
    );
    println!("  adversary: {}", describe(req.adversary));
    println!("  neighbors k = {k}");
    println!("  threshold t = {t}");
    // Shape and request are valid here, so the helpers give the same bounds check used.
    let insecurity = log2_security_failure_for(req, k, t);
    let failure = log2_correctness_failure(a.clients, k, t, a.dropout);
    print_bounds(a, insecurity, failure);
    if a.dp.wanted() {
        let code = dp_part(a, c, k, t)?;
        if code != ExitCode::SUCCESS {
            return Ok(code);
        }
    } else {
        print_modulus(a);
    }
    match outcome {
        Ok(_) => {
            println!("  verdict: meets every bound");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let verdict = if e.is_security() {
                "insecure"
            } else {
                "fails correctness"
            };
            println!("  verdict: {verdict}");
            eprintln!("error: {e}");
            Ok(ExitCode::from(EXIT_FAILS_BOUNDS))
        }
    }
}

fn graph(n: usize, k: usize) -> String {
    if k + 1 >= n {
        "the complete graph (classic SecAgg)".to_string()
    } else if k % 2 == 0 {
        format!("a {k}-regular Harary graph (SecAgg+)")
    } else {
        format!("a Harary graph of degree {k} (SecAgg+)")
    }
}

fn describe(adversary: Adversary) -> String {
    let what = match adversary {
        Adversary::Curious => {
            "follows the protocol and pools what it sees with the corrupted clients"
        }
        Adversary::SemiMalicious => "may also send different survivor lists to different clients",
    };
    format!("{adversary} server ({what})")
}

fn print_bounds(a: &PlanArgs, log2_insecurity: f64, log2_failure: f64) {
    println!(
        "  insecurity ≤ {} (target 2^-{}, 2^-{} per event), failure ≤ {} (target 2^-{})",
        super::pow2(log2_insecurity),
        a.security_bits,
        a.security_bits.saturating_add(1),
        super::pow2(log2_failure),
        a.correctness_bits
    );
}

fn print_modulus(a: &PlanArgs) {
    let bits = bits_needed(a.clients, a.levels, a.max_weight);
    if bits > 64 {
        println!(
            "  modulus: {} levels x weight {} over {} clients needs {bits} bits, above 64: lower the levels",
            a.levels, a.max_weight, a.clients
        );
    } else if bits > 32 {
        println!(
            "  modulus bits b = {bits} ({} levels x weight {} over {} clients): 64-bit elements, {} bytes per element on the wire",
            a.levels,
            a.max_weight,
            a.clients,
            f64::from(bits) / 8.0
        );
    } else {
        println!(
            "  modulus bits b = {bits} ({} levels x weight {} over {} clients)",
            a.levels, a.max_weight, a.clients
        );
    }
}
