//! `secagg server`: run one aggregation round over TCP and write the sum as a model file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use secagg::model::{ModelFormat, ModelLayout, ModelStream, TensorSpec, write_model};
use secagg_engine::{Backend, BackendSpec};
use secagg_host::codec::layout_digest;
use secagg_host::config::{Quantization, RoundConfig, bits_needed};
use secagg_host::dp::accountant::PrivacyEvent;
use secagg_host::identity::CaPublicKey;
use secagg_host::plan::{
    Adversary, DpPlan, DpRequest, DpTarget, PlanRequest, check, colluders_in_cohort, plan_dp,
    threshold_for,
};
use secagg_host::policy::DEFAULT_EPOCH_SECS;
use secagg_host::selection::{Selection, epoch_at};
use secagg_host::transport::tls::{self, TlsAcceptor};
use secagg_host::transport::{RoundReport, ServeOptions, serve};
use serde::Deserialize;
use serde_json::json;

use super::{EXIT_ABORTED, human_bytes, human_duration, load_config, pick};

/// Arguments of `secagg server`. Each flag may also come from `--config FILE` (TOML, the
/// flag names as keys, e.g. `clients = 10`); flags on the command line win.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Address to listen on, e.g. 0.0.0.0:7000. [required]
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Number of clients N the round waits for. [required]
    #[arg(long)]
    clients: Option<usize>,
    /// T: the fewest clients a stage may end with; in SecAgg (the default complete graph)
    /// also the Shamir threshold. [required]
    #[arg(long)]
    threshold: Option<usize>,
    /// Neighbours per client K. N − 1 is SecAgg; smaller selects SecAgg+, with the
    /// per-neighbourhood Shamir threshold from the planner. [default: N − 1]
    #[arg(long)]
    neighbors: Option<usize>,
    /// Modulus bits b (1..=64; above 32 elements are 64 bits): sums are computed mod 2^b.
    /// [default: 32]
    #[arg(long)]
    bits: Option<u32>,
    /// Inputs are clipped to [−C, C] before quantization. [default: 1.0]
    #[arg(long)]
    clip: Option<f32>,
    /// Quantization levels q. [default: the largest power of two up to 65536 for which
    /// N·(q−1) < 2^b]
    #[arg(long)]
    levels: Option<u32>,
    /// Largest integer weight a client may send. [default: the largest power of two up to
    /// 65536 for which N·(q−1)·W < 2^b]
    #[arg(long)]
    max_weight: Option<u32>,
    /// Deadline of each stage, in milliseconds; a client that misses it is a dropout. The
    /// first deadline also bounds how long the server waits for N clients. [default: 30000]
    #[arg(long)]
    deadline_ms: Option<u64>,
    /// Aggregation engine: auto (a hardware GPU adapter if one opens, else the
    /// CPU), cpu, gpu, gpu:N (adapter N of wgpu's list), or several of cpu, gpu and gpu:N
    /// separated by commas (e.g. cpu,cpu or gpu:0,gpu:1): each engine then holds and computes
    /// its own coordinate range of the accumulator (equal ranges, in the order given). [default: auto]
    #[arg(long)]
    backend: Option<BackendSpec>,
    /// Where to write the aggregate sum: .npy (float32, the inputs' shape) or .safetensors
    /// (the inputs' tensor names and shapes). Not written if the round aborts. [required]
    #[arg(long)]
    output: Option<PathBuf>,
    /// Where to write a JSON summary: included and dropped clients, stage timings, bytes,
    /// and the weighted mean when clients sent weights.
    #[arg(long)]
    summary: Option<PathBuf>,
    /// Masked uploads staged at once until whole (each in memory up to 16 MiB packed,
    /// beyond that in an unlinked file in --spill-dir). [default: 4]
    #[arg(long)]
    max_uploads: Option<usize>,
    /// Where uploads larger than 16 MiB packed are staged until whole: the server's memory
    /// stays the accumulator plus a few chunks, and this directory holds at most
    /// --max-uploads packed uploads. [default: the system's temporary directory]
    #[arg(long)]
    spill_dir: Option<PathBuf>,
    /// The model the round aggregates updates of (.npy or .safetensors, e.g. the global
    /// model the clients train): clients whose update has other tensor names or shapes are
    /// refused, and the sum is written with its layout. [this or --params is required]
    #[arg(long, conflicts_with = "params")]
    model: Option<PathBuf>,
    /// The number of parameters every client must send (any layout with that many): the sum
    /// is written as one flat tensor. [this or --model is required]
    #[arg(long)]
    params: Option<usize>,
    /// The server's TLS certificate chain, PEM, leaf first (`secagg tls new` makes a test
    /// one). [required unless --insecure-plaintext]
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// The server's TLS private key, PEM (mode 0600). [required with --tls-cert]
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Run over plaintext TCP: anyone on the path can read and rewrite every frame. For
    /// local experiments only.
    #[arg(long)]
    insecure_plaintext: bool,
    /// How long a new connection has to finish TLS and send a valid hello, in
    /// milliseconds. [default: 5000]
    #[arg(long)]
    hello_timeout_ms: Option<u64>,
    /// Most connections waiting to be admitted at once; beyond that the server stops
    /// accepting until some finish. [default: 256]
    #[arg(long)]
    max_pending: Option<usize>,
    /// How long one client's whole masked upload may take, in milliseconds, once it starts
    /// sending it. [default: a quarter of --deadline-ms, at least 1000]
    #[arg(long)]
    upload_deadline_ms: Option<u64>,
    /// The deployment CA's public key (ca.pub from `secagg ca new`): only clients holding a
    /// certificate from it take part. Without it the round runs unauthenticated, which is
    /// only allowed with --adversary curious.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// The server model the round's parameters must be secure against: semi-malicious (the
    /// clients' default policy) or curious. [default: semi-malicious]
    #[arg(long)]
    adversary: Option<Adversary>,
    /// Fraction of the enrolled clients that may collude with the server, for the security
    /// check: c = ⌈corrupt × n⌉ unless --colluders gives c. [default: 0.05]
    #[arg(long)]
    corrupt: Option<f64>,
    /// c: the most enrolled identities that may collude with the server, in the whole
    /// deployment (what the clients' policies hold: give theirs, or they may refuse the round).
    #[arg(long)]
    colluders: Option<usize>,
    /// Verifiable self-selection at rate p in (0, 1): only clients whose VRF ticket for the
    /// current epoch admits them at this rate may take part (needs --ca); the round's
    /// colluders are then bounded by a binomial tail over c·p.
    #[arg(long)]
    select_rate: Option<f64>,
    /// The length of a self-selection epoch in seconds (the deployment's; clients hold the
    /// same). [default: 3600]
    #[arg(long)]
    epoch_secs: Option<u64>,
    /// Expected dropout rate, for the planner's threshold and the security check.
    /// [default: 0.1]
    #[arg(long)]
    dropout: Option<f64>,
    /// Start even when (n, k, t) fails the security check (a warning says which bound);
    /// clients with their own policy still refuse such a round.
    #[arg(long)]
    insecure_params: bool,
    /// The round context, 64 hex digits (for example the SHA-256 of the global model):
    /// clients that expect another context refuse the round. [default: zeros]
    #[arg(long)]
    context: Option<String>,
    /// The round context as the SHA-256 of this file (the global model the clients train).
    #[arg(long, conflicts_with = "context")]
    context_file: Option<PathBuf>,
    /// Distributed DP for this ε (at --delta over --rounds): the DP plan sizes each
    /// client's Skellam noise for T − c honest survivors alone, --clip becomes the L2 norm
    /// every update is clipped to, b is the plan's unless --bits, and the summary records
    /// the round's privacy event.
    #[arg(long, conflicts_with = "noise")]
    epsilon: Option<f64>,
    /// Distributed DP with this noise multiplier z (σ = z c w) instead of an ε target.
    #[arg(long)]
    noise: Option<f64>,
    /// δ of the DP guarantee. [default: 1e-6]
    #[arg(long)]
    delta: Option<f64>,
    /// Rounds the DP plan accounts for. [default: 1]
    #[arg(long)]
    rounds: Option<u32>,
    /// β: conditional rounding's failure probability (0: plain stochastic rounding).
    /// [default: e^-0.5]
    #[arg(long)]
    beta: Option<f64>,
    /// Read flags from this TOML file.
    #[arg(long)]
    config: Option<PathBuf>,
}

/// The same flags, from a TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ServerFile {
    listen: Option<SocketAddr>,
    clients: Option<usize>,
    threshold: Option<usize>,
    neighbors: Option<usize>,
    bits: Option<u32>,
    clip: Option<f32>,
    levels: Option<u32>,
    max_weight: Option<u32>,
    deadline_ms: Option<u64>,
    backend: Option<String>,
    output: Option<PathBuf>,
    summary: Option<PathBuf>,
    max_uploads: Option<usize>,
    spill_dir: Option<PathBuf>,
    model: Option<PathBuf>,
    params: Option<usize>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    insecure_plaintext: Option<bool>,
    hello_timeout_ms: Option<u64>,
    max_pending: Option<usize>,
    upload_deadline_ms: Option<u64>,
    ca: Option<PathBuf>,
    adversary: Option<String>,
    corrupt: Option<f64>,
    colluders: Option<usize>,
    select_rate: Option<f64>,
    epoch_secs: Option<u64>,
    dropout: Option<f64>,
    insecure_params: Option<bool>,
    context: Option<String>,
    context_file: Option<PathBuf>,
    epsilon: Option<f64>,
    noise: Option<f64>,
    delta: Option<f64>,
    rounds: Option<u32>,
    beta: Option<f64>,
}

/// Everything the server needs, merged and checked.
struct Settings {
    listen: SocketAddr,
    config: RoundConfig,
    backend: BackendSpec,
    output: PathBuf,
    summary: Option<PathBuf>,
    /// The layout the sum is written with.
    layout: ModelLayout,
    /// Whether clients must match `layout` exactly (--model) or only its size (--params).
    pin_layout: bool,
    options: ServeOptions,
    /// The DP plan, in a DP round.
    privacy: Option<(DpPlan, DpRequest)>,
}

/// The round's shape from --model or --params.
fn shape(model: Option<PathBuf>, params: Option<usize>) -> Result<(ModelLayout, bool), String> {
    match (model, params) {
        (Some(_), Some(_)) => Err("give --model or --params, not both".into()),
        (Some(path), None) => {
            // The layout only: the header is read, not the values.
            let model =
                ModelStream::open(&path).map_err(|e| format!("--model {}: {e}", path.display()))?;
            Ok((model.layout().clone(), true))
        }
        (None, Some(m)) => Ok((
            ModelLayout {
                format: ModelFormat::Npy,
                tensors: vec![TensorSpec {
                    name: String::new(),
                    shape: vec![m],
                }],
            },
            false,
        )),
        (None, None) => Err(
            "the server fixes the round's shape: give --model FILE (the model whose updates are              summed) or --params N"
                .into(),
        ),
    }
}

/// TLS from --tls-cert/--tls-key, or plaintext with --insecure-plaintext.
fn tls_settings(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    plaintext: bool,
) -> Result<Option<TlsAcceptor>, String> {
    match (cert, key, plaintext) {
        (Some(_), _, true) | (_, Some(_), true) => {
            Err("--insecure-plaintext conflicts with --tls-cert/--tls-key".into())
        }
        (Some(cert), Some(key), false) => tls::server_config(&cert, &key)
            .map(Some)
            .map_err(|e| format!("TLS: {e}")),
        (Some(_), None, false) => Err("--tls-cert needs --tls-key".into()),
        (None, Some(_), false) => Err("--tls-key needs --tls-cert".into()),
        (None, None, true) => {
            eprintln!(
                "warning: --insecure-plaintext: every frame crosses the network unencrypted and unauthenticated"
            );
            log::warn!("serving over plaintext TCP (--insecure-plaintext)");
            Ok(None)
        }
        (None, None, false) => Err(
            "TLS is required: give --tls-cert and --tls-key (`secagg tls new --out tls` makes a              test pair), or --insecure-plaintext for a local experiment"
                .into(),
        ),
    }
}

fn settings(a: ServerArgs) -> Result<Settings, String> {
    let file: ServerFile = load_config(a.config.as_deref())?;
    let listen = pick(a.listen, file.listen, "listen")?;
    let n = pick(a.clients, file.clients, "clients")?;
    let big_t = pick(a.threshold, file.threshold, "threshold")?;
    let output = pick(a.output, file.output, "output")?;
    check_output_path(&output)?;
    let bits = a.bits.or(file.bits).unwrap_or(32);
    let clip = a.clip.or(file.clip).unwrap_or(1.0);
    let backend = match (a.backend, file.backend) {
        (Some(b), _) => b,
        (None, Some(s)) => s
            .parse()
            .map_err(|e| format!("config file: backend: {e}"))?,
        (None, None) => BackendSpec::Auto,
    };
    let k = a
        .neighbors
        .or(file.neighbors)
        .unwrap_or(n.saturating_sub(1));
    let ca = match a.ca.or(file.ca) {
        Some(path) => {
            Some(CaPublicKey::load(&path).map_err(|e| format!("--ca {}: {e}", path.display()))?)
        }
        None => None,
    };
    let adversary = match (a.adversary, file.adversary) {
        (Some(x), _) => x,
        (None, Some(s)) => s
            .parse()
            .map_err(|e| format!("config file: adversary: {e}"))?,
        (None, None) => Adversary::SemiMalicious,
    };
    if ca.is_none() && adversary != Adversary::Curious {
        return Err(
            "a round secure against a semi-malicious server needs enrolled clients: give --ca ca.pub \
             (see `secagg ca new` and `secagg enroll`), or --adversary curious for an unauthenticated round"
                .into(),
        );
    }
    let corrupt = a.corrupt.or(file.corrupt).unwrap_or(0.05);
    let total_colluders = a
        .colluders
        .or(file.colluders)
        .unwrap_or_else(|| (corrupt * n as f64 - 1e-6).ceil().max(0.0) as usize);
    let selection = match a.select_rate.or(file.select_rate) {
        None => None,
        Some(_) if ca.is_none() => {
            return Err(
                "--select-rate needs --ca: eligibility is proved with enrolled identity keys"
                    .into(),
            );
        }
        Some(p) => {
            let epoch_secs = a
                .epoch_secs
                .or(file.epoch_secs)
                .unwrap_or(DEFAULT_EPOCH_SECS);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            Some(
                Selection::new(epoch_at(now, epoch_secs), p)
                    .map_err(|e| format!("--select-rate: {e}"))?,
            )
        }
    };
    let colluders = match &selection {
        None => total_colluders,
        Some(s) => colluders_in_cohort(total_colluders as u64, s.rate(), 41) as usize,
    };
    let req = PlanRequest {
        clients: n,
        dropout_rate: a.dropout.or(file.dropout).unwrap_or(0.1),
        corrupt_fraction: corrupt,
        colluders: Some(colluders),
        adversary,
        ..PlanRequest::default()
    };
    let insecure_ok = a.insecure_params || file.insecure_params.unwrap_or(false);
    // SecAgg: T is the Shamir threshold too. SecAgg+: the smallest secure per-neighbourhood t
    // (curious: the planner's balance of its two bounds).
    let t = if k + 1 >= n {
        big_t
    } else {
        let t = match adversary {
            Adversary::Curious => {
                threshold_for(n, k, req.dropout_rate, colluders as f64 / n as f64).threshold
            }
            _ => (2..=k + 1)
                .find(|&t| check(&req, k, t).map_or_else(|e| !e.is_security(), |_| true))
                .unwrap_or(k + 1),
        };
        log::info!("SecAgg+ with k = {k}: per-neighbourhood threshold t = {t}");
        if t > big_t {
            return Err(format!(
                "--threshold {big_t} is below the per-neighbourhood threshold {t} for --neighbors {k}: \
                 raise --threshold to at least {t} or --neighbors"
            ));
        }
        t
    };
    match check(&req, k, t) {
        Ok(p) => log::info!(
            "round parameters secure against a {adversary} server: insecurity {}, failure {}",
            super::pow2(p.log2_insecurity),
            super::pow2(p.log2_failure)
        ),
        Err(e) if e.is_security() && !insecure_ok => {
            return Err(format!(
                "refusing to start an insecure round (n = {n}, k = {k}, t = {t}, {adversary} server, {colluders} colluders): {e}; \
                 --insecure-params starts it anyway (clients with their own policy will still refuse it)"
            ));
        }
        Err(e) if e.is_security() => {
            eprintln!("warning: insecure round parameters (--insecure-params): {e}")
        }
        Err(e) => eprintln!("warning: {e}"),
    }
    if ca.is_none() {
        eprintln!(
            "warning: no --ca: clients are not authenticated; the round is secure only against a server that follows the protocol"
        );
    }
    let context = super::parse_context(
        a.context.or(file.context).as_deref(),
        a.context_file.or(file.context_file).as_deref(),
    )?;
    let (layout, pin_layout) = shape(a.model.or(file.model), a.params.or(file.params))?;
    let target = match (a.epsilon.or(file.epsilon), a.noise.or(file.noise)) {
        (Some(_), Some(_)) => return Err("give --epsilon or --noise, not both".into()),
        (Some(e), None) => Some(DpTarget::Epsilon(e)),
        (None, Some(z)) => Some(DpTarget::Noise(z)),
        (None, None) => None,
    };
    let privacy = match target {
        None => None,
        Some(target) => {
            let honest = super::plan::honest_survivors(big_t, colluders, (n, k, t), adversary)?;
            let base = DpRequest::new(target, layout.params(), n);
            let dp_req = DpRequest {
                delta: a.delta.or(file.delta).unwrap_or(base.delta),
                rounds: a.rounds.or(file.rounds).unwrap_or(1),
                clip,
                honest,
                survivors: n - (req.dropout_rate * n as f64).ceil() as usize,
                max_weight: a.max_weight.or(file.max_weight).unwrap_or(1),
                beta: a.beta.or(file.beta).unwrap_or(base.beta),
                bits: a.bits.or(file.bits),
                ..base
            };
            let p = plan_dp(&dp_req).map_err(|e| format!("DP plan: {e}"))?;
            eprintln!(
                "distributed DP: ε {:.4} at δ = {:e} over {} rounds, noise sized for {honest} honest inputs alone (T = {big_t}, c = {colluders}, k = {k}, t = {t}), b = {}, s = {:.4}, μ_c = {:.4}",
                p.epsilon, p.delta, dp_req.rounds, p.bits, p.dp.scale, p.dp.noise
            );
            Some((p, dp_req))
        }
    };
    let bits = privacy.as_ref().map_or(bits, |(p, _)| p.bits);
    let levels = match a.levels.or(file.levels) {
        Some(q) => q,
        None if privacy.is_some() => 2,
        None => (1..=16u32)
            .rev()
            .map(|e| 1u32 << e)
            .find(|&q| bits_needed(n, q, 1) <= bits)
            .ok_or_else(|| format!("--bits {bits} cannot hold a sum of {n} clients"))?,
    };
    let max_weight = match a.max_weight.or(file.max_weight) {
        Some(w) => w,
        // A DP round's noise is sized for the largest weight: 1 unless asked.
        None if privacy.is_some() => 1,
        None => (0..=16u32)
            .rev()
            .map(|e| 1u32 << e)
            .find(|&w| bits_needed(n, levels, w) <= bits)
            .unwrap_or(1),
    };
    let deadline = Duration::from_millis(a.deadline_ms.or(file.deadline_ms).unwrap_or(30_000));
    let tls = tls_settings(
        a.tls_cert.or(file.tls_cert),
        a.tls_key.or(file.tls_key),
        a.insecure_plaintext || file.insecure_plaintext.unwrap_or(false),
    )?;
    // The round id only has to differ between rounds; the clock gives that.
    let round_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let config = RoundConfig::builder(n, layout.params())
        .neighbors(k)
        .threshold(t)
        .min_survivors(big_t)
        .bits(bits)
        .quantization(Quantization {
            clip,
            levels,
            max_weight,
        })
        .stage_timeout(deadline)
        .round_id(round_id)
        .context(context)
        .selection(selection)
        .dp(privacy.as_ref().map(|(p, _)| p.dp))
        .build()
        .map_err(|e| e.to_string())?;
    let defaults = ServeOptions::default();
    let options = ServeOptions {
        max_concurrent_uploads: a.max_uploads.or(file.max_uploads).unwrap_or(4),
        layout: pin_layout.then(|| layout_digest(&layout.to_bytes())),
        ca,
        insecure_plaintext: tls.is_none(),
        tls,
        hello_timeout: a
            .hello_timeout_ms
            .or(file.hello_timeout_ms)
            .map_or(defaults.hello_timeout, Duration::from_millis),
        max_pending: a
            .max_pending
            .or(file.max_pending)
            .unwrap_or(defaults.max_pending),
        upload_deadline: a
            .upload_deadline_ms
            .or(file.upload_deadline_ms)
            .map(Duration::from_millis),
        spill_dir: a.spill_dir.clone().or(file.spill_dir.clone()),
        ..defaults
    };
    Ok(Settings {
        listen,
        config,
        backend,
        output,
        summary: a.summary.or(file.summary),
        layout,
        pin_layout,
        options,
        privacy,
    })
}

fn check_output_path(p: &Path) -> Result<(), String> {
    let ext = p
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("npy") | Some("safetensors") => Ok(()),
        _ => Err(format!(
            "--output {}: the sum is written as .npy or .safetensors; name the file with one of those extensions",
            p.display()
        )),
    }
}

pub fn run(a: ServerArgs) -> Result<ExitCode, String> {
    let s = settings(a)?;
    let engine = super::open_engine(&s.backend, "--backend")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(s.listen))
        .map_err(|e| format!("--listen {}: {e}", s.listen))?;
    let c = &s.config;
    eprintln!(
        "secagg server on {} ({}): waiting for {} clients with {} parameters{} ({}, T = {}, t = {}, b = {}, q = {}, max weight {}, deadline {} per stage); engine: {}",
        s.listen,
        if s.options.tls.is_some() {
            "TLS"
        } else {
            "plaintext"
        },
        c.clients(),
        c.params(),
        if s.pin_layout {
            " in the --model layout"
        } else {
            ""
        },
        if c.is_complete_graph() {
            "SecAgg".to_string()
        } else {
            format!("SecAgg+ k = {}", c.neighbors())
        },
        c.min_survivors(),
        c.threshold(),
        c.modulus().bits(),
        c.quantization().levels,
        c.quantization().max_weight,
        human_duration(c.stage_timeout()),
        engine.describe(),
    );
    let mut report = runtime
        .block_on(serve(listener, s.config.clone(), engine, s.options.clone()))
        .map_err(|e| e.to_string())?;
    finish(&s, &mut report)
}

fn finish(s: &Settings, report: &mut RoundReport) -> Result<ExitCode, String> {
    let stages: Vec<_> = report
        .stages
        .iter()
        .map(|t| {
            json!({
                "stage": t.stage.name(),
                "started_s": t.started.as_secs_f64(),
                "ended_s": t.ended.as_secs_f64(),
                "seconds": (t.ended - t.started).as_secs_f64(),
                "clients": t.clients,
            })
        })
        .collect();
    let mut summary = json!({
        "clients": s.config.clients(),
        "threshold": s.config.min_survivors(),
        "shamir_threshold": s.config.threshold(),
        "neighbors": s.config.neighbors(),
        "bits": s.config.modulus().bits(),
        "stages": stages,
        "bytes_received": report.bytes_received,
        "bytes_sent": report.bytes_sent,
        "connections": report.connections,
        "peak_pending": report.peak_pending,
        "uploads_staged_on_disk": report.staged_on_disk,
        "refused_by_reason": report
            .refusals
            .iter()
            .map(|(k, v)| (k.label().to_string(), json!(v)))
            .collect::<serde_json::Map<_, _>>(),
        "refused": report.refused,
        "elapsed_s": report.elapsed.as_secs_f64(),
        "peak_rss_bytes": secagg::process::peak_rss_bytes(),
        "cpu_s": secagg::process::process_cpu_time().map(|d| d.as_secs_f64()),
    });
    if report.refusal_count() > 0 {
        let by_reason: Vec<String> = report
            .refusals
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        eprintln!(
            "refused or cut off {} connections: {}",
            report.refusal_count(),
            by_reason.join(", ")
        );
    }
    let code = match &mut report.outcome {
        Ok(out) => {
            let config = &s.config;
            // The sum's memory becomes the f32 result: no second copy of a large model (at
            // b > 32 the 64-bit sum is decoded into a new, half-size buffer).
            let sum = if out.sum_wide.is_empty() {
                secagg_host::quantize::decode_sum_owned(
                    std::mem::take(&mut out.sum),
                    out.total_weight,
                    config,
                )
            } else {
                secagg_host::quantize::decode_sum_wide(
                    std::mem::take(&mut out.sum_wide),
                    out.total_weight,
                    config,
                )
            };
            let written = write_model(&s.output, &s.layout, &sum);
            summary["status"] = json!(if written.is_ok() {
                "completed"
            } else {
                "output-failed"
            });
            summary["included"] = json!(out.included.iter().map(|c| c.0).collect::<Vec<_>>());
            summary["dropped"] = json!(
                out.dropped
                    .iter()
                    .map(|d| json!({"id": d.client.0, "stage": d.stage.name(), "reason": d.reason.to_string()}))
                    .collect::<Vec<_>>()
            );
            summary["total_weight"] = json!(out.total_weight);
            if let Some((p, req)) = &s.privacy {
                summary["privacy"] = privacy_event(p, req, out.included.len());
            }
            summary["mask_terms"] = json!(out.mask_terms);
            summary["output"] = json!(s.output.display().to_string());
            if report.weighted {
                let w = out.total_weight.max(1) as f64;
                let mean: Vec<f32> = sum.iter().map(|&v| (f64::from(v) / w) as f32).collect();
                summary["weighted_mean"] = json!(mean);
            }
            match written {
                Ok(()) => {
                    eprintln!(
                        "round completed: {} clients in the sum, {} dropped; {} received, {} sent; {}; sum written to {}",
                        out.included.len(),
                        out.dropped.len(),
                        human_bytes(report.bytes_received),
                        human_bytes(report.bytes_sent),
                        human_duration(report.elapsed),
                        s.output.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("round completed, but the sum could not be written: {e}");
                    summary["reason"] = json!(e.to_string());
                    ExitCode::from(super::EXIT_FAILED)
                }
            }
        }
        Err(reason) => {
            summary["status"] = json!("aborted");
            if s.privacy.is_some() {
                summary["privacy"] = json!({"released": false});
            }
            summary["reason"] = json!(reason.to_string());
            eprintln!("round aborted: {reason}; nothing was revealed and no output was written");
            ExitCode::from(EXIT_ABORTED)
        }
    };
    if let Some(path) = &s.summary {
        let text = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("--summary {}: {e}", path.display()))?;
    }
    Ok(code)
}

/// A completed DP round's privacy event for the summary: the mechanism, its noise and
/// sensitivities, ε of this round alone and as planned over the rounds, and the RDP curve
/// to compose later rounds with.
fn privacy_event(p: &DpPlan, req: &DpRequest, included: usize) -> serde_json::Value {
    let event = PrivacyEvent::of(&p.dp, req.params, req.max_weight, req.clients, req.delta);
    let (round_epsilon, round_delta, rdp) = match &event {
        Ok(e) => (
            json!(e.epsilon),
            json!(e.sampler_delta),
            e.rdp
                .curve()
                .map(|(a, v)| json!([a, v]))
                .collect::<Vec<_>>(),
        ),
        Err(_) => (json!(null), json!(null), Vec::new()),
    };
    json!({
        "released": true,
        "mechanism": "skellam",
        "epsilon_this_round": round_epsilon,
        "sampler_delta_this_round": round_delta,
        "delta": req.delta,
        "planned_rounds": req.rounds,
        "planned_epsilon": p.epsilon,
        "honest_survivors": p.dp.honest,
        "inputs_in_sum": included,
        "noise_per_client": p.dp.noise,
        "central_variance": p.dp.central_variance(),
        "central_noise_std": p.noise_std,
        "scale": p.dp.scale,
        "clip": p.dp.clip,
        "beta": p.dp.beta,
        "l2_sensitivity": p.sensitivity.l2,
        "l1_sensitivity": p.sensitivity.l1,
        "rdp": rdp,
    })
}
