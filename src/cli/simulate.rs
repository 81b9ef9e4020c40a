//! `secagg simulate`: one whole round in memory, checked against the plaintext sum.

use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use secagg_engine::{Backend, BackendSpec, Prg};
use secagg_host::config::bits_needed;
use secagg_host::plan::{
    Adversary, DpPlan, DpRequest, DpTarget, PlanRequest, check, colluders_in_cohort, plan, plan_dp,
    threshold_for,
};
use secagg_host::policy::DEFAULT_EPOCH_SECS;
use secagg_host::selection::{Selection, epoch_at};
use secagg_host::sim::{self, DropMode, DropSchedule, Progress, SimConfig, SimReport};
use secagg_host::{ClientPolicy, Quantization, RoundConfig, Stage};
use serde_json::json;

use super::{EXIT_ABORTED, EXIT_CHECK_FAILED, human_bytes, human_duration};

/// Arguments of `secagg simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Number of clients n.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Model parameters per client m.
    #[arg(long, default_value_t = 10_000)]
    params: usize,
    /// Neighbours per client k (SecAgg+); n − 1 is classic SecAgg. Default: the planner's
    /// choice for --dropout and --corrupt.
    #[arg(long)]
    neighbors: Option<usize>,
    /// Shamir threshold t per neighbourhood. Default: the planner's.
    #[arg(long)]
    threshold: Option<usize>,
    /// Fewest clients a stage may end with before the round aborts. Default: t.
    #[arg(long)]
    min_survivors: Option<usize>,
    /// Fraction of clients that drop out (the planner also plans for it). [default: 0.1,
    /// with --corrupt 0.05; both 0 where the round is too small to plan for them]
    #[arg(long = "dropout")]
    dropout_given: Option<f64>,
    /// The dropout fraction used (`--dropout` or its default).
    #[arg(skip)]
    dropout: f64,
    /// The stage the dropped clients miss: advertise-keys, share-keys, share-check,
    /// masked-input (the costliest for the server), consistency or unmasking.
    #[arg(long, default_value = "masked-input")]
    dropout_stage: Stage,
    /// Dropped clients go silent and the server waits for the deadline, instead of
    /// disconnecting.
    #[arg(long)]
    silent: bool,
    /// Fraction of the enrolled population that may collude with the server: c =
    /// ⌈corrupt × population⌉ unless --colluders gives c. [default: 0.05; see --dropout]
    #[arg(long = "corrupt")]
    corrupt_given: Option<f64>,
    /// The corrupt fraction used (`--corrupt` or its default).
    #[arg(skip)]
    corrupt: f64,
    /// c: the most enrolled identities that may collude with the server, which every
    /// client's policy holds (absolute, whatever the round's size) and the planner plans for.
    #[arg(long)]
    colluders: Option<usize>,
    /// Verifiable self-selection at rate p in (0, 1): the simulated CA enrolls a population
    /// (--population, default ⌈clients / p⌉), each identity is eligible with probability p
    /// (an RFC 9381 VRF of its key over the current epoch's seed), and the round is the
    /// eligible ones; every client checks every member's proof, and the colluders a round can
    /// hold are bounded by a binomial tail over c·p.
    #[arg(long)]
    select_rate: Option<f64>,
    /// The enrolled population for --select-rate (and for --corrupt).
    #[arg(long)]
    population: Option<usize>,
    /// The colluders the round may hold: c, or its self-selection bound.
    #[arg(skip)]
    colluders_in_round: usize,
    /// The server the clients must withstand: semi-malicious (it may lie in any message;
    /// the default) or curious (it follows the protocol). Sets the planner's bounds and every
    /// client's policy.
    #[arg(long, default_value = "semi-malicious")]
    adversary: Adversary,
    /// T in every client's policy: the fewest honest members a round may have (n − c ≥ T)
    /// and the fewest honest inputs a released sum may hold. [default: min(10, n − c)]
    #[arg(long)]
    min_cohort: Option<usize>,
    /// Clients accept any round parameters (no floor from the planner): to watch an
    /// insecure configuration run. Certificates, signatures and lists are still checked.
    #[arg(long)]
    insecure_params: bool,
    /// Clients assert their own identity keys instead of holding certificates from the
    /// simulated CA (only with --adversary curious).
    #[arg(long)]
    unauthenticated: bool,
    /// Server engine: auto (a hardware GPU adapter if one opens, else the
    /// CPU), cpu, gpu, gpu:N (adapter N of wgpu's list), or several of cpu, gpu and gpu:N
    /// separated by commas (e.g. cpu,cpu or gpu:0,gpu:1): each engine then holds and computes
    /// its own coordinate range of the accumulator (equal ranges, in the order given).
    #[arg(long, default_value = "auto")]
    backend: BackendSpec,
    /// Mask PRG: chacha20, chacha12 or chacha8.
    #[arg(long, default_value = "chacha20")]
    prg: Prg,
    /// Modulus bits b (1..=64; above 32 each element is 64 bits in memory, packed at b bits on
    /// the wire). [default: 32, or what --levels x --max-weight x --clients needs when that is
    /// more (up to 64); with --epsilon or --noise, the DP plan's]
    #[arg(long)]
    bits: Option<u32>,
    /// Clip range c: inputs are clipped to [−c, c]; with --epsilon or --noise, the L2 norm
    /// every update is clipped to.
    #[arg(long, default_value_t = 1.0)]
    clip: f32,
    /// Distributed DP for this ε (at --delta over --rounds): the DP plan sizes the noise for
    /// T − c honest survivors, every client clips, rotates, rounds and adds Skellam noise
    /// under the masks, and the report gives the ε spent, the noise and the measured error.
    #[arg(long, conflicts_with = "noise")]
    epsilon: Option<f64>,
    /// Distributed DP with this noise multiplier z (σ = z c w) instead of an ε target.
    #[arg(long)]
    noise: Option<f64>,
    /// δ of the DP guarantee.
    #[arg(long, default_value_t = 1e-6)]
    delta: f64,
    /// Rounds the DP plan accounts for (this run simulates one of them).
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// β: conditional rounding's failure probability (0: plain stochastic rounding).
    /// [default: e^-0.5]
    #[arg(long)]
    beta: Option<f64>,
    /// Quantization levels q. Default: the largest power of two up to 2^16 that cannot
    /// overflow 2^b.
    #[arg(long)]
    levels: Option<u32>,
    /// Draw each client's integer weight from 1..=W and report the weighted mean.
    #[arg(long, default_value_t = 1)]
    max_weight: u32,
    /// Seed for keys, inputs and dropouts. Default: random (printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// The planner's request for these arguments.
fn plan_request(a: &SimulateArgs) -> PlanRequest {
    PlanRequest {
        clients: a.clients,
        dropout_rate: a.dropout,
        corrupt_fraction: a.corrupt,
        colluders: Some(a.colluders_in_round),
        adversary: a.adversary,
        ..PlanRequest::default()
    }
}

/// c: given, or ⌈γ P⌉ for the enrolled population P.
fn total_colluders(a: &SimulateArgs, population: usize) -> usize {
    a.colluders
        .unwrap_or_else(|| (a.corrupt * population as f64 - 1e-6).ceil().max(0.0) as usize)
}

/// The smallest threshold for `k` neighbours that meets the security bound of `req`, if any.
fn secure_threshold(req: &PlanRequest, k: usize) -> Option<usize> {
    (2.min(k)..=k + 1).find(|&t| match check(req, k, t) {
        Ok(_) => true,
        Err(e) => !e.is_security(),
    })
}

/// The neighbours and threshold to use, and a line saying where they came from.
fn choose_graph(a: &SimulateArgs) -> Result<(usize, usize, String), String> {
    let n = a.clients;
    let req = plan_request(a);
    match (a.neighbors, a.threshold) {
        (None, t) => {
            let p = plan(&req).map_err(|e| e.to_string())?;
            let why = format!(
                "{} planner (dropout {}, {} colluders): insecurity {}, failure {}",
                a.adversary,
                a.dropout,
                a.colluders_in_round,
                super::pow2(p.log2_insecurity),
                super::pow2(p.log2_failure)
            );
            Ok((p.neighbors, t.unwrap_or(p.threshold), why))
        }
        (Some(k), Some(t)) => Ok((k, t, "given".into())),
        (Some(k), None) if a.adversary == Adversary::SemiMalicious => {
            let k = k.min(n.saturating_sub(1));
            let t = secure_threshold(&req, k).ok_or_else(|| {
                format!("no threshold makes k = {k} secure against a semi-malicious server; raise --neighbors or use the planner")
            })?;
            Ok((k, t, format!("smallest t secure at k = {k}")))
        }
        (Some(k), None) if k + 1 >= n => Ok((k, (n / 2 + 1).min(k), "majority of n".into())),
        (Some(k), None) => {
            let p = threshold_for(
                n,
                k,
                a.dropout.max(0.0),
                a.colluders_in_round as f64 / n as f64,
            );
            Ok((
                k,
                p.threshold,
                format!(
                    "t balancing the planner's bounds at k = {k}: insecurity {}, failure {}",
                    super::pow2(p.log2_insecurity),
                    super::pow2(p.log2_failure)
                ),
            ))
        }
    }
}

/// The default dropout and corruption fractions.
const DEFAULT_DROPOUT: f64 = 0.1;
const DEFAULT_CORRUPT: f64 = 0.05;

/// Fills in `--dropout` and `--corrupt`. Left to their defaults on a round too small to
/// plan for them (a handful of clients cannot survive a dropout and a corrupted client at
/// once against a lying server), both become 0, and a note says so.
fn resolve_fractions(a: &mut SimulateArgs, population: usize) {
    a.dropout = a.dropout_given.unwrap_or(DEFAULT_DROPOUT);
    a.corrupt = a.corrupt_given.unwrap_or(DEFAULT_CORRUPT);
    a.colluders_in_round = colluders_in_round(a, population);
    let defaults = a.dropout_given.is_none() && a.corrupt_given.is_none() && a.colluders.is_none();
    if defaults && a.neighbors.is_none() && plan(&plan_request(a)).is_err() {
        eprintln!(
            "note: {} clients are too few to plan for {DEFAULT_DROPOUT} dropout and \
             {DEFAULT_CORRUPT} corruption against a {} server; simulating with neither \
             (give --dropout and --corrupt to choose)",
            a.clients, a.adversary
        );
        a.dropout = 0.0;
        a.corrupt = 0.0;
        a.colluders = Some(0);
        a.colluders_in_round = 0;
    }
}

/// The colluders the round may hold: c, or under self-selection the binomial tail bound.
fn colluders_in_round(a: &SimulateArgs, population: usize) -> usize {
    let c = total_colluders(a, population);
    match a.select_rate {
        Some(p) => colluders_in_cohort(c as u64, p, SECURITY_BITS + 1) as usize,
        None => c,
    }
}

/// The clients' σ (the policy default).
const SECURITY_BITS: u32 = 40;

pub fn run(mut a: SimulateArgs) -> Result<ExitCode, String> {
    let seed = a.seed.unwrap_or_else(random_seed);
    let now = unix_now();
    // Self-selection: enroll the population, keep the eligible identities.
    let (selection, members, population) = match a.select_rate {
        None => (None, None, a.population.unwrap_or(a.clients)),
        Some(p) => {
            let selection = Selection::new(epoch_at(now, DEFAULT_EPOCH_SECS), p)
                .map_err(|e| format!("--select-rate: {e}"))?;
            let population = a
                .population
                .unwrap_or_else(|| (a.clients as f64 / p).ceil() as usize);
            let population = u32::try_from(population)
                .map_err(|_| format!("--population {population} is too large"))?;
            let members = sim::eligible(seed, &selection, population);
            if !a.json {
                println!(
                    "secagg simulate: {} of {population} enrolled identities are eligible in epoch {} at rate {p}",
                    members.len(),
                    selection.epoch()
                );
            }
            a.clients = members.len();
            (Some(selection), Some(members), population as usize)
        }
    };
    resolve_fractions(&mut a, population);
    if !(0.0..=1.0).contains(&a.dropout) {
        return Err(format!(
            "--dropout {} must be a fraction in [0, 1]",
            a.dropout
        ));
    }
    if a.dropout_stage == Stage::Join {
        return Err(
            "--dropout-stage: a client that never joins is not in the round; use a later stage"
                .into(),
        );
    }
    if a.unauthenticated && a.adversary != Adversary::Curious {
        return Err("--unauthenticated needs --adversary curious: without enrolled identities a lying server can substitute every key".into());
    }
    let (k, t, why) = choose_graph(&a)?;
    let big_t = a.min_survivors.unwrap_or(t);
    let dp = dp_plan(&a, big_t, k, t)?;
    let bits = dp.as_ref().map_or_else(
        || a.bits.unwrap_or_else(|| planned_bits(&a)),
        |(p, _)| p.bits,
    );
    let mut builder = RoundConfig::builder(a.clients, a.params)
        .neighbors(k)
        .threshold(t)
        .bits(bits)
        .prg(a.prg)
        .round_id(seed)
        .selection(selection);
    if let Some(min) = a.min_survivors {
        builder = builder.min_survivors(min);
    }
    if let Some((p, _)) = &dp {
        builder = builder.dp(Some(p.dp)).quantization(Quantization {
            levels: 2,
            max_weight: a.max_weight,
            ..Quantization::default()
        });
    } else if a.levels.is_some() || a.max_weight != 1 || a.clip != 1.0 {
        // The default levels leave room for the weights asked for.
        let default_levels = (1..=16u32)
            .rev()
            .map(|e| 1u32 << e)
            .find(|&q| bits_needed(a.clients, q, a.max_weight) <= bits)
            .unwrap_or(2);
        builder = builder.quantization(Quantization {
            clip: a.clip,
            levels: a.levels.unwrap_or(default_levels),
            max_weight: a.max_weight,
        });
    }
    let round = builder.build().map_err(|e| e.to_string())?;
    let engine = super::open_engine(&a.backend, "--backend")?;
    let drops = match &members {
        None => DropSchedule::random(a.clients, a.dropout, a.dropout_stage, seed),
        Some(m) => DropSchedule::random_among(m, a.dropout, a.dropout_stage, seed),
    };
    let cfg = SimConfig {
        round: round.clone(),
        seed,
        drops,
        mode: if a.silent {
            DropMode::Silent
        } else {
            DropMode::Disconnect
        },
        random_weights: a.max_weight > 1,
        enrolled: !a.unauthenticated,
        policy: if a.insecure_params {
            sim::parameter_free_policy()
        } else {
            ClientPolicy {
                adversary: a.adversary,
                colluders: total_colluders(&a, population),
                dropout_rate: a.dropout.min(0.99),
                min_cohort: a
                    .min_cohort
                    .unwrap_or(a.clients.saturating_sub(a.colluders_in_round).clamp(3, 10)),
                prgs: vec![Prg::ChaCha20, Prg::ChaCha12, Prg::ChaCha8],
                now: Some(now),
                ..ClientPolicy::curious_unauthenticated()
            }
        },
        members,
    };
    let describe = engine.describe();
    if !a.json {
        let graph = if round.is_complete_graph() {
            "SecAgg (complete graph)".to_string()
        } else {
            format!("SecAgg+ (k = {})", round.neighbors())
        };
        let inputs = match round.dp() {
            Some(dp) => format!("distributed DP, L2 clip {}", dp.clip),
            None => format!(
                "q = {} on [-{}, {}]",
                round.quantization().levels,
                round.quantization().clip,
                round.quantization().clip
            ),
        };
        println!(
            "secagg simulate: {} clients x {} params, {graph}, t = {} [{why}], T = {}, b = {}, {}, {inputs}",
            a.clients,
            a.params,
            round.threshold(),
            round.min_survivors(),
            round.modulus().bits(),
            round.prg(),
        );
        if let Some((p, req)) = &dp {
            let honest = super::plan::describe_honest(
                req.honest,
                big_t,
                a.colluders_in_round,
                (round.neighbors(), t),
            );
            super::plan::print_dp(p, req, &honest);
        }
        println!(
            "  {} clients drop before {}{}; seed {seed}; server engine: {describe}",
            cfg.drops.len(),
            a.dropout_stage,
            if a.silent { " (silent: deadline)" } else { "" },
        );
        println!(
            "  clients {}; policy: {}",
            if a.unauthenticated {
                "assert their own identity keys"
            } else {
                "hold certificates from the simulated CA"
            },
            if a.insecure_params {
                "no floor on the parameters (--insecure-params)".to_string()
            } else {
                format!(
                    "{} server, c = {} colluders{}, T = {} honest, 2^-{} security",
                    cfg.policy.adversary,
                    cfg.policy.colluders,
                    if a.select_rate.is_some() {
                        format!(" (at most {} in the round)", a.colluders_in_round)
                    } else {
                        String::new()
                    },
                    cfg.policy.min_cohort,
                    cfg.policy.security_bits
                )
            }
        );
    }

    let bar = Mutex::new(None::<(Stage, ProgressBar)>);
    let show = !a.quiet && !a.json;
    let progress = |p: Progress| {
        if !show {
            return;
        }
        let mut slot = bar
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.as_ref().is_none_or(|(s, _)| *s != p.stage) {
            if let Some((_, old)) = slot.take() {
                old.finish_and_clear();
            }
            let pb = ProgressBar::new(p.total as u64);
            pb.set_style(
                ProgressStyle::with_template(
                    "  {msg:>14} [{bar:30}] {pos}/{len} clients {elapsed}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            pb.set_message(p.stage.name());
            *slot = Some((p.stage, pb));
        }
        if let Some((_, pb)) = slot.as_ref() {
            pb.set_position(p.done as u64);
        }
    };
    let report = sim::run(&cfg, engine, &progress).map_err(|e| e.to_string())?;
    if let Some((_, pb)) = bar
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    {
        pb.finish_and_clear();
    }
    let peak = secagg::process::peak_rss_bytes();
    if a.json {
        print_json(&a, &round, &report, &describe, seed, peak, dp.as_ref());
    } else {
        print_table(&round, &report, peak);
        if let Some((p, _)) = &dp {
            print_dp_result(p, &report);
        }
    }
    Ok(match (&report.outcome, &report.check) {
        (Err(_), _) => ExitCode::from(EXIT_ABORTED),
        (Ok(_), Some(c)) if c.passed() => ExitCode::SUCCESS,
        _ => ExitCode::from(EXIT_CHECK_FAILED),
    })
}

/// The DP plan for a simulated round with T = `big_t` survivors needed, `k` neighbours and
/// threshold `t`, when asked for.
fn dp_plan(
    a: &SimulateArgs,
    big_t: usize,
    k: usize,
    t: usize,
) -> Result<Option<(DpPlan, DpRequest)>, String> {
    let target = match (a.epsilon, a.noise) {
        (Some(e), _) => DpTarget::Epsilon(e),
        (None, Some(z)) => DpTarget::Noise(z),
        (None, None) => return Ok(None),
    };
    // The clients' adversary (a curious policy under --insecure-params).
    let adversary = if a.insecure_params {
        Adversary::Curious
    } else {
        a.adversary
    };
    let shape = (a.clients, k, t);
    let honest = super::plan::honest_survivors(big_t, a.colluders_in_round, shape, adversary)?;
    let dropped = (a.dropout * a.clients as f64).floor() as usize;
    let base = DpRequest::new(target, a.params, a.clients);
    let req = DpRequest {
        delta: a.delta,
        rounds: a.rounds,
        clip: a.clip,
        honest,
        survivors: a.clients.saturating_sub(dropped).max(1),
        max_weight: a.max_weight,
        beta: a.beta.unwrap_or(base.beta),
        bits: a.bits,
        ..base
    };
    let p = plan_dp(&req).map_err(|e| e.to_string())?;
    Ok(Some((p, req)))
}

/// What the DP round spent and what its noise did.
fn print_dp_result(p: &DpPlan, r: &SimReport) {
    println!(
        "  DP: ε spent {:.4} at δ = {:e} over the plan's rounds; central noise σ = {:.6} from the honest survivors alone",
        p.epsilon, p.delta, p.noise_std
    );
    if let Some(m) = &r.dp {
        println!(
            "  DP: this sum holds {} inputs' noise: σ = {:.6} per coordinate (≤ {:.6} with rounding); measured error {:.6} (mean {:+.2e}) over {} coordinates",
            m.inputs, m.noise_std, m.expected_std_max, m.measured_std, m.measured_mean, m.coords
        );
    }
}

fn print_table(round: &RoundConfig, r: &SimReport, peak: Option<u64>) {
    println!();
    println!(
        "  {:<15}{:>10}{:>13}{:>16}{:>14}{:>14}{:>10}{:>12}",
        "stage",
        "server",
        "mean client",
        "slowest client",
        "up/client",
        "down/client",
        "clients",
        "peak RSS"
    );
    for st in &r.stages {
        let Some(stage) = st.stage else { continue };
        println!(
            "  {:<15}{:>10}{:>13}{:>16}{:>14}{:>14}{:>10}{:>12}",
            stage.name(),
            human_duration(st.server),
            human_duration(st.mean_client()),
            human_duration(st.slowest_client),
            human_bytes(st.bytes_up),
            if stage == Stage::Join {
                "-".to_string()
            } else {
                human_bytes(st.bytes_down)
            },
            st.senders,
            if st.peak_rss > 0 {
                human_bytes(st.peak_rss)
            } else {
                "-".into()
            },
        );
    }
    let client: Duration = r.stages.iter().map(|st| st.mean_client()).sum();
    println!(
        "  a client's whole round: {} (mean per stage, summed)",
        human_duration(client)
    );
    println!();
    match (&r.outcome, &r.check) {
        (Ok(out), Some(c)) => {
            let verdict = if c.passed() { "OK" } else { "FAILED" };
            let error = if round.dp().is_some() {
                "RMS error (the noise)"
            } else {
                "max f32 error"
            };
            println!(
                "  result: {verdict}: sum of {} inputs (total weight {}) {} the plaintext sum mod 2^{}; \
                 {error} {:.3e} (bound {:.3e}); {} dropped",
                out.included.len(),
                out.total_weight,
                if c.exact { "equals" } else { "DIFFERS FROM" },
                round.modulus().bits(),
                c.max_error,
                c.bound,
                out.dropped.len(),
            );
            if let Some(st) = r.stages.iter().find(|s| s.stage == Some(Stage::Unmasking)) {
                let secs = st.server_finish.as_secs_f64().max(1e-9);
                println!(
                    "  unmask pass: {} to rebuild the secrets and remove {} masks ({} of keystream, {:.2} GB/s)",
                    human_duration(st.server_finish),
                    out.mask_terms,
                    human_bytes(out.keystream_bytes()),
                    out.keystream_bytes() as f64 / secs / 1e9,
                );
            }
            // Only the first few: the whole mean of a large model is gigabytes. (A DP sum is
            // rotated back as a whole first.)
            let w = out.total_weight.max(1) as f64;
            let sum = match round.dp() {
                Some(_) if !out.sum_wide.is_empty() => secagg_host::quantize::decode_sum_wide(
                    out.sum_wide.clone(),
                    out.total_weight,
                    round,
                ),
                Some(_) => secagg_host::quantize::decode_sum_owned(
                    out.sum.clone(),
                    out.total_weight,
                    round,
                ),
                None if !out.sum_wide.is_empty() => secagg_host::quantize::dequantize_sum_wide(
                    &out.sum_wide[..out.sum_wide.len().min(4)],
                    out.total_weight,
                    &round.quantization(),
                ),
                None => secagg_host::quantize::dequantize_sum(
                    &out.sum[..out.sum.len().min(4)],
                    out.total_weight,
                    &round.quantization(),
                ),
            };
            let head: Vec<String> = sum
                .iter()
                .take(4)
                .map(|v| format!("{:.4}", f64::from(*v) / w))
                .collect();
            println!("  weighted mean[..4] = [{}]", head.join(", "));
        }
        (Err(reason), _) => println!("  result: ABORTED: {reason} (nothing was revealed)"),
        (Ok(_), None) => println!("  result: completed without a check"),
    }
    println!(
        "  wall {}; process peak RSS {} (server and all simulated clients in one process)",
        human_duration(r.wall),
        peak.map(human_bytes).unwrap_or_else(|| "unknown".into())
    );
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn print_json(
    a: &SimulateArgs,
    round: &RoundConfig,
    r: &SimReport,
    engine: &str,
    seed: u64,
    peak: Option<u64>,
    dp: Option<&(DpPlan, DpRequest)>,
) {
    let stages: Vec<_> = r
        .stages
        .iter()
        .filter_map(|st| {
            st.stage.map(|s| {
                json!({
                    "stage": s.name(),
                    "server_s": secs(st.server),
                    "server_finish_s": secs(st.server_finish),
                    "slowest_client_s": secs(st.slowest_client),
                    "mean_client_s": secs(st.mean_client()),
                    "bytes_up_per_client": st.bytes_up,
                    "bytes_down_per_client": st.bytes_down,
                    "clients": st.senders,
                    "peak_rss_bytes": st.peak_rss,
                })
            })
        })
        .collect();
    let result = match (&r.outcome, &r.check) {
        (Ok(out), Some(c)) => json!({
            "status": if c.passed() { "ok" } else { "check-failed" },
            "exact": c.exact,
            "included": out.included.iter().map(|c| c.0).collect::<Vec<_>>(),
            "dropped": out.dropped.iter().map(|d| json!({"id": d.client.0, "stage": d.stage.name()})).collect::<Vec<_>>(),
            "total_weight": out.total_weight,
            "mask_terms": out.mask_terms,
            "keystream_bytes": out.keystream_bytes(),
            "max_error": c.max_error,
            // The weighted mean's largest error: the sum's over the total weight.
            "mean_max_error": c.max_error / out.total_weight.max(1) as f64,
            "error_bound": c.bound,
        }),
        (Err(reason), _) => json!({"status": "aborted", "reason": reason.to_string()}),
        (Ok(_), None) => json!({"status": "unchecked"}),
    };
    let v = json!({
        "clients": a.clients,
        "params": a.params,
        "neighbors": round.neighbors(),
        "threshold": round.threshold(),
        "min_survivors": round.min_survivors(),
        "bits": round.modulus().bits(),
        "prg": round.prg().name(),
        "levels": round.quantization().levels,
        "dropout": a.dropout,
        "dropout_stage": a.dropout_stage.name(),
        "adversary": a.adversary.name(),
        "colluders": a.colluders,
        "colluders_in_round": a.colluders_in_round,
        "select_rate": a.select_rate,
        "bytes_down_per_client": r.stages.iter().map(|st| st.bytes_down).sum::<u64>(),
        "bytes_up_per_client": r.stages.iter().map(|st| st.bytes_up).sum::<u64>(),
        "seed": seed,
        "engine": engine,
        "stages": stages,
        "result": result,
        "wall_s": secs(r.wall),
        "peak_rss_bytes": peak,
        "privacy": dp.map(|(p, req)| privacy_json(p, req, r)),
    });
    println!("{v}");
}

/// The DP plan and what the round measured, for `--json`.
fn privacy_json(p: &DpPlan, req: &DpRequest, r: &SimReport) -> serde_json::Value {
    json!({
        "mechanism": "skellam",
        "epsilon": p.epsilon,
        "delta": p.delta,
        "rounds": req.rounds,
        "rdp_order": p.order,
        "sampler_delta": p.sampler_delta,
        "clip": p.dp.clip,
        "scale": p.dp.scale,
        "noise_per_client": p.dp.noise,
        "honest_survivors": p.dp.honest,
        "beta": p.dp.beta,
        "l2_sensitivity": p.sensitivity.l2,
        "l1_sensitivity": p.sensitivity.l1,
        "central_noise_std": p.noise_std,
        "expected_mean_error": p.mean_error,
        "measured": r.dp.as_ref().map(|m| json!({
            "inputs": m.inputs,
            "noise_std": m.noise_std,
            "expected_std_max": m.expected_std_max,
            "measured_std": m.measured_std,
            "measured_mean": m.measured_mean,
            "coords": m.coords,
        })),
    })
}

/// b when --bits is not given: 32, or the fewest bits in which the sum of --levels levels
/// times --max-weight over --clients cannot wrap when that is more (at most 64; above, the
/// configuration reports the overflow).
fn planned_bits(a: &SimulateArgs) -> u32 {
    a.levels
        .map_or(32, |q| bits_needed(a.clients, q, a.max_weight))
        .clamp(32, 64)
}
