//! `secagg client`: join a round with a model update file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use secagg::model::ModelStream;
use secagg_engine::Prg;
use secagg_host::codec::layout_digest;
use secagg_host::identity::{CaPublicKey, EnrolledIdentity, IdentityKey};
use secagg_host::plan::Adversary;
use secagg_host::quantize::InputError;
use secagg_host::transport::tls;
use secagg_host::transport::{ClientInput, ClientOutcome, Join, TransportError};
use secagg_host::{ClientId, ClientIdentity, ClientPolicy, ProtocolError, Stage, Trust, round_rng};
use serde::Deserialize;

use super::{EXIT_ABORTED, EXIT_FAILED, load_config, pick};

/// The stages a client can be told to leave after.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DropAfter {
    /// Leave after advertising keys (the server sees it miss share-keys).
    AdvertiseKeys,
    /// Leave after sending the share bundles (it misses the share check).
    ShareKeys,
    /// Leave after checking its shares (it misses masked-input).
    ShareCheck,
    /// Leave after sending the masked input (it misses the consistency round; its input is
    /// in the sum).
    MaskedInput,
}

impl DropAfter {
    fn stage(self) -> Stage {
        match self {
            DropAfter::AdvertiseKeys => Stage::AdvertiseKeys,
            DropAfter::ShareKeys => Stage::ShareKeys,
            DropAfter::ShareCheck => Stage::ShareCheck,
            DropAfter::MaskedInput => Stage::MaskedInput,
        }
    }
}

/// Arguments of `secagg client`. Each flag may also come from `--config FILE` (TOML, the
/// flag names as keys); flags on the command line win.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// The server's address, HOST:PORT, e.g. localhost:7000 or 127.0.0.1:7000. [required]
    #[arg(long)]
    connect: Option<String>,
    /// The CA certificate (PEM) the server's TLS certificate must chain to (ca.pem from
    /// `secagg tls new`). [required unless --insecure-plaintext]
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// The name the server's certificate must carry. [default: the host of --connect]
    #[arg(long)]
    tls_name: Option<String>,
    /// Connect over plaintext TCP: anyone on the path can read and rewrite every frame. For
    /// local experiments only.
    #[arg(long)]
    insecure_plaintext: bool,
    /// This client's id (any u32, unique in the round). [required]
    #[arg(long)]
    id: Option<u32>,
    /// The model update: .npy (float32, any shape) or .safetensors. [required]
    #[arg(long)]
    input: Option<PathBuf>,
    /// Integer weight of this update in the weighted mean (at most the server's maximum).
    /// [default: 1]
    #[arg(long)]
    weight: Option<u32>,
    /// Close the connection right after completing this stage (to demonstrate and test
    /// dropout recovery). A client that drops after masked-input is in the sum.
    #[arg(long, value_enum)]
    drop_after: Option<DropAfter>,
    /// How long to keep retrying the connection, in milliseconds. [default: 10000]
    #[arg(long)]
    connect_timeout_ms: Option<u64>,
    /// The deployment CA's public key (ca.pub): this client checks every peer's certificate
    /// against it. Without it the client runs unauthenticated (only with --adversary
    /// curious).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// This client's identity key file (client-ID.key from `secagg enroll`). [required with
    /// --ca]
    #[arg(long)]
    key: Option<PathBuf>,
    /// This client's certificate (client-ID.cert from `secagg enroll`). [required with --ca]
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Policy: the server this client must withstand, semi-malicious or curious.
    /// [default: semi-malicious]
    #[arg(long)]
    adversary: Option<Adversary>,
    /// Policy: c, the most enrolled identities in the whole deployment that may collude with
    /// the server. Absolute: every size the server shows (announced, cohort, key list,
    /// survivors) is judged with c colluders in it, and must leave T honest members.
    /// ⌈γ · P⌉ for P enrolled clients of which a fraction γ may be corrupted. [default: 5]
    #[arg(long)]
    colluders: Option<usize>,
    /// Policy: the length of a self-selection epoch in seconds (the deployment's); a
    /// self-selected round is accepted only in this client's epoch or the one before.
    /// [default: 3600]
    #[arg(long)]
    epoch_secs: Option<u64>,
    /// Policy: the dropout rate the graph-connectivity bound assumes. [default: 0.1]
    #[arg(long)]
    dropout: Option<f64>,
    /// Policy: statistical security σ; the round must keep the insecurity bound at or below
    /// 2^-σ. [default: 40]
    #[arg(long)]
    security_bits: Option<u32>,
    /// Policy: T, the fewest honest members a round may have and the fewest honest inputs a
    /// released sum may hold: a round of n' members is refused when n' − c < T. [default: 10]
    #[arg(long)]
    min_cohort: Option<usize>,
    /// Policy: the mask PRGs accepted, comma-separated. [default: chacha20,chacha12]
    #[arg(long)]
    allow_prg: Option<String>,
    /// Policy: the modulus bits accepted, LO..=HI. [default: 1..=64]
    #[arg(long)]
    allow_bits: Option<String>,
    /// The round context this client expects, 64 hex digits (for example the SHA-256 of the
    /// model it trained on): a round with another context is refused. [default: accept the
    /// server's]
    #[arg(long)]
    context: Option<String>,
    /// The expected round context as the SHA-256 of this file (the global model this client
    /// trained on).
    #[arg(long, conflicts_with = "context")]
    context_file: Option<PathBuf>,
    /// Read flags from this TOML file.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ClientFile {
    connect: Option<String>,
    tls_ca: Option<PathBuf>,
    tls_name: Option<String>,
    insecure_plaintext: Option<bool>,
    id: Option<u32>,
    input: Option<PathBuf>,
    weight: Option<u32>,
    drop_after: Option<DropAfter>,
    connect_timeout_ms: Option<u64>,
    ca: Option<PathBuf>,
    key: Option<PathBuf>,
    cert: Option<PathBuf>,
    adversary: Option<String>,
    colluders: Option<usize>,
    epoch_secs: Option<u64>,
    dropout: Option<f64>,
    security_bits: Option<u32>,
    min_cohort: Option<usize>,
    allow_prg: Option<String>,
    allow_bits: Option<String>,
    context: Option<String>,
    context_file: Option<PathBuf>,
}

/// The client's identity and policy from its flags.
fn identity_and_policy(
    a: &mut ClientArgs,
    file: &mut ClientFile,
    id: u32,
) -> Result<(ClientIdentity, ClientPolicy), String> {
    let adversary = match (a.adversary, file.adversary.take()) {
        (Some(x), _) => x,
        (None, Some(s)) => s
            .parse()
            .map_err(|e| format!("config file: adversary: {e}"))?,
        (None, None) => Adversary::SemiMalicious,
    };
    let (identity, trust) = match a.ca.take().or(file.ca.take()) {
        Some(ca_path) => {
            let ca = CaPublicKey::load(&ca_path)
                .map_err(|e| format!("--ca {}: {e}", ca_path.display()))?;
            let key = pick(a.key.take(), file.key.take(), "key")?;
            let cert = pick(a.cert.take(), file.cert.take(), "cert")?;
            let enrolled = EnrolledIdentity::load(&key, &cert, &ca).map_err(|e| e.to_string())?;
            if enrolled.id() != ClientId(id) {
                return Err(format!(
                    "--cert {} is for client {}, not --id {id}",
                    cert.display(),
                    enrolled.id()
                ));
            }
            let (_, key, certificate) = enrolled.into_parts();
            let identity = ClientIdentity::enrolled(key, certificate).map_err(|e| e.to_string())?;
            (identity, Trust::Enrolled(ca))
        }
        None => {
            if adversary != Adversary::Curious {
                return Err(
                    "without --ca (enrolled identities) a client can only trust an honest-but-curious \
                     server: give --ca, --key and --cert, or --adversary curious"
                        .into(),
                );
            }
            eprintln!(
                "warning: no --ca: peers are not authenticated; this client is safe only against a server that follows the protocol"
            );
            let mut rng =
                round_rng().map_err(|e| format!("no operating-system randomness: {e}"))?;
            let key = IdentityKey::generate(&mut rng);
            (
                ClientIdentity::self_asserted(ClientId(id), key),
                Trust::Unauthenticated,
            )
        }
    };
    let mut policy = match &trust {
        Trust::Enrolled(ca) => ClientPolicy::enrolled(*ca),
        Trust::Unauthenticated => ClientPolicy::curious_unauthenticated(),
    };
    policy.adversary = adversary;
    if let Some(c) = a.colluders.or(file.colluders) {
        policy.colluders = c;
    }
    if let Some(e) = a.epoch_secs.or(file.epoch_secs) {
        policy.epoch_secs = e;
    }
    let mut policy = policy.at_system_time();
    if let Some(d) = a.dropout.or(file.dropout) {
        policy.dropout_rate = d;
    }
    if let Some(b) = a.security_bits.or(file.security_bits) {
        policy.security_bits = b;
    }
    if let Some(t) = a.min_cohort.or(file.min_cohort) {
        policy.min_cohort = t;
    }
    if let Some(list) = a.allow_prg.take().or(file.allow_prg.take()) {
        policy.prgs = list
            .split(',')
            .map(|p| {
                p.trim()
                    .parse::<Prg>()
                    .map_err(|e| format!("--allow-prg: {e}"))
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(range) = a.allow_bits.take().or(file.allow_bits.take()) {
        let (lo, hi) = range
            .split_once("..=")
            .ok_or_else(|| format!("--allow-bits {range}: expected LO..=HI, e.g. 16..=32"))?;
        let parse = |v: &str| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| format!("--allow-bits {range}: {v:?} is not a number"))
        };
        policy.bits = parse(lo)?..=parse(hi)?;
    }
    let ctx_hex = a.context.take().or(file.context.take());
    let ctx_file = a.context_file.take().or(file.context_file.take());
    if ctx_hex.is_some() || ctx_file.is_some() {
        policy.context = Some(super::parse_context(
            ctx_hex.as_deref(),
            ctx_file.as_deref(),
        )?);
    }
    policy.trust = trust;
    policy.validate().map_err(|e| e.to_string())?;
    Ok((identity, policy))
}

/// TLS from --tls-ca (and --tls-name, else the host of --connect), or plaintext with
/// --insecure-plaintext.
fn tls_settings(
    connect: &str,
    ca: Option<PathBuf>,
    name: Option<String>,
    plaintext: bool,
) -> Result<Option<(tls::TlsConnector, tls::ServerNameOwned)>, String> {
    match (ca, plaintext) {
        (Some(_), true) => Err("--insecure-plaintext conflicts with --tls-ca".into()),
        (None, true) => {
            eprintln!(
                "warning: --insecure-plaintext: every frame crosses the network unencrypted and unauthenticated"
            );
            Ok(None)
        }
        (None, false) => Err(
            "TLS is required: give --tls-ca (the CA that signed the server's certificate), or \
             --insecure-plaintext for a local experiment"
                .into(),
        ),
        (Some(path), false) => {
            let connector = tls::client_config(&path).map_err(|e| format!("--tls-ca: {e}"))?;
            let name = match name {
                Some(n) => n,
                None => host_of(connect)?,
            };
            let server = tls::server_name(&name).map_err(|e| format!("--tls-name: {e}"))?;
            Ok(Some((connector, server)))
        }
    }
}

/// The host part of HOST:PORT (brackets of an IPv6 address removed).
fn host_of(connect: &str) -> Result<String, String> {
    let (host, port) = connect
        .rsplit_once(':')
        .ok_or_else(|| format!("--connect {connect}: expected HOST:PORT"))?;
    if port.parse::<u16>().is_err() {
        return Err(format!(
            "--connect {connect}: {port:?} is not a port number"
        ));
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("--connect {connect}: no host"));
    }
    Ok(host.to_owned())
}

pub fn run(mut a: ClientArgs) -> Result<ExitCode, String> {
    let mut file: ClientFile = load_config(a.config.as_deref())?;
    let addr = pick(a.connect.take(), file.connect.take(), "connect")?;
    host_of(&addr)?;
    let id = pick(a.id, file.id, "id")?;
    let input = pick(a.input.take(), file.input.take(), "input")?;
    let (identity, policy) = identity_and_policy(&mut a, &mut file, id)?;
    let weight = a.weight.or(file.weight);
    if weight == Some(0) {
        return Err("--weight must be at least 1".into());
    }
    let drop_after = a.drop_after.or(file.drop_after).map(DropAfter::stage);
    let connect_timeout = Duration::from_millis(
        a.connect_timeout_ms
            .or(file.connect_timeout_ms)
            .unwrap_or(10_000),
    );
    let plaintext = a.insecure_plaintext || file.insecure_plaintext.unwrap_or(false);
    let tls = tls_settings(
        &addr,
        a.tls_ca.take().or(file.tls_ca.take()),
        a.tls_name.take().or(file.tls_name.take()),
        plaintext,
    )?;
    // The model is read a piece at a time while it is masked and sent: the client holds
    // O(piece) of it whatever its size.
    let mut model =
        ModelStream::open(&input).map_err(|e| format!("--input {}: {e}", input.display()))?;
    let layout = model.layout().clone();
    let params = model.params();
    let shown = input.display().to_string();
    let update = ClientInput::Stream {
        params,
        read: Box::new(move |out: &mut [f32]| match model.read(out) {
            Ok(n) if n == out.len() => Ok(()),
            Ok(n) => Err(InputError::Source(format!(
                "{shown} ended after {n} of the {} values asked for",
                out.len()
            ))),
            Err(e) => Err(InputError::Source(format!("{shown}: {e}"))),
        }),
    };
    // One generator per round, from the operating system; the round's client owns it and
    // it is scrubbed when the round ends.
    let rng = round_rng().map_err(|e| format!("no operating-system randomness: {e}"))?;
    let mut join = Join::new(identity, policy, layout_digest(&layout.to_bytes()))
        .connect_timeout(connect_timeout)
        .rng(rng);
    join = match tls {
        Some((connector, name)) => join.tls(connector, name),
        None if plaintext => join.insecure_plaintext(),
        None => join,
    };
    if let Some(weight) = weight {
        join = join.weight(weight);
    }
    if let Some(stage) = drop_after {
        join = join.drop_after(stage);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let outcome = runtime.block_on(join.run(addr.as_str(), update));
    match outcome {
        Ok(ClientOutcome::Completed { included }) => {
            eprintln!("client {id}: round completed; the sum holds {included} inputs");
            Ok(ExitCode::SUCCESS)
        }
        Ok(ClientOutcome::Dropped { after }) => {
            eprintln!("client {id}: left after {after}, as asked");
            Ok(ExitCode::SUCCESS)
        }
        Err(TransportError::Protocol(ProtocolError::ServerAborted(reason))) => {
            eprintln!("client {id}: the server aborted the round: {reason}");
            Ok(ExitCode::from(EXIT_ABORTED))
        }
        Err(TransportError::Refused(reason)) => {
            eprintln!("client {id}: refused the round: {reason}");
            Ok(ExitCode::from(EXIT_FAILED))
        }
        Err(e) => {
            // The commonest mismatch: one side speaks TLS and the other does not.
            let hint = match (&e, plaintext) {
                (TransportError::Closed(_), true) => {
                    "; a server running TLS closes plaintext connections: give --tls-ca"
                }
                (TransportError::Tls(_), false) => {
                    "; if the server runs with --insecure-plaintext, so must this client"
                }
                _ => "",
            };
            eprintln!("client {id}: {e}{hint}");
            Ok(ExitCode::from(EXIT_FAILED))
        }
    }
}
