//! Command-line parsing and the subcommands.

mod bench;
mod ca;
mod client;
mod plan;
mod server;
mod simulate;
#[cfg(feature = "soak")]
mod soak;
#[cfg(feature = "test-pki")]
mod tls;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status for a configuration or usage error.
pub const EXIT_USAGE: u8 = 2;
/// Exit status when a round's result does not match the plaintext.
pub const EXIT_CHECK_FAILED: u8 = 1;
/// Exit status of a client whose round failed (network, refusal, misbehaving server).
pub const EXIT_FAILED: u8 = 1;
/// Exit status when a round aborts (too few survivors).
pub const EXIT_ABORTED: u8 = 3;

/// Secure aggregation (SecAgg / SecAgg+) for federated learning, with GPU mask expansion.
#[derive(Debug, Parser)]
#[command(name = "secagg", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one whole round in memory (clients, server, dropouts) and check it against the
    /// plaintext sum. Exits 1 if the check fails, 3 if the round aborts.
    Simulate(simulate::SimulateArgs),
    /// Choose the SecAgg+ neighbour count and threshold for a deployment, or check a given
    /// pair (--neighbors and --threshold), against a curious or semi-malicious server.
    Plan(plan::PlanArgs),
    /// Run one aggregation round over TCP and write the sum. Exits 3 if the round aborts.
    Server(Box<server::ServerArgs>),
    /// Join a round with a model update file. Exits 3 if the server aborts the round.
    Client(client::ClientArgs),
    /// Manage the deployment CA that certifies client identities (`secagg ca new`).
    Ca(ca::CaArgs),
    /// Give client ids fresh long-term identity keys and certificates from the deployment CA.
    Enroll(ca::EnrollArgs),
    /// Make a test TLS CA and server certificate (`secagg tls new`).
    #[cfg(feature = "test-pki")]
    Tls(tls::TlsArgs),
    /// Attack soak on loopback: a TLS server process, honest clients and rogue connections
    /// of every kind; checks the sum and that each rogue is refused. Exits 1 on a failure.
    #[cfg(feature = "soak")]
    Soak(soak::SoakArgs),
    /// Measure this machine's server work for a large-model round: ingest of n packed
    /// uploads into the engine's accumulator, one unmask pass, a read-out; checked against an
    /// independent computation. Exits 1 if the check fails.
    Bench(bench::BenchArgs),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Simulate(a) => simulate::run(a),
        Command::Plan(a) => plan::run(a),
        Command::Server(a) => server::run(*a),
        Command::Client(a) => client::run(a),
        Command::Ca(a) => ca::run(a),
        Command::Enroll(a) => ca::enroll(a),
        #[cfg(feature = "test-pki")]
        Command::Tls(a) => tls::run(a),
        #[cfg(feature = "soak")]
        Command::Soak(a) => soak::run(a),
        Command::Bench(a) => bench::run(a),
    }
}

/// Reads a subcommand's TOML settings file (an empty set when none was given).
pub fn load_config<T: serde::de::DeserializeOwned + Default>(
    path: Option<&std::path::Path>,
) -> Result<T, String> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--config {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("--config {}: {e}", path.display()))
}

/// A required setting: from the command line, else the config file, else an error naming it.
pub fn pick<T>(flag: Option<T>, file: Option<T>, name: &str) -> Result<T, String> {
    flag.or(file)
        .ok_or_else(|| format!("--{name} is required (on the command line or in --config)"))
}

/// The round context from `--context HEX` or `--context-file PATH` (its SHA-256); zeros when
/// neither is given.
pub fn parse_context(
    hex: Option<&str>,
    file: Option<&std::path::Path>,
) -> Result<[u8; 32], String> {
    match (hex, file) {
        (Some(_), Some(_)) => Err("give --context or --context-file, not both".into()),
        (Some(h), None) => {
            let h = h.trim();
            if h.len() != 64 {
                return Err(format!(
                    "--context must be 64 hex digits (32 bytes), got {} characters",
                    h.len()
                ));
            }
            let mut out = [0u8; 32];
            for (i, byte) in out.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&h[2 * i..2 * i + 2], 16)
                    .map_err(|_| format!("--context: {:?} is not hex", &h[2 * i..2 * i + 2]))?;
            }
            Ok(out)
        }
        (None, Some(path)) => {
            use sha2::{Digest, Sha256};
            use std::io::Read;
            let mut f = std::fs::File::open(path)
                .map_err(|e| format!("--context-file {}: {e}", path.display()))?;
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f
                    .read(&mut buf)
                    .map_err(|e| format!("--context-file {}: {e}", path.display()))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            Ok(h.finalize().into())
        }
        (None, None) => Ok([0; 32]),
    }
}

/// Opens the engine `--backend` names; `auto` (the default) defers to `SECAGG_BACKEND` when
/// it is set, as the README promises. Errors name the flag or the variable at fault.
pub fn open_engine(
    spec: &secagg_engine::BackendSpec,
    flag: &str,
) -> Result<secagg_engine::Engine, String> {
    use secagg_engine::{BackendSpec, Engine};
    let (spec, source) = match (spec, std::env::var("SECAGG_BACKEND")) {
        (BackendSpec::Auto, Ok(v)) => (
            v.parse::<BackendSpec>()
                .map_err(|e| format!("SECAGG_BACKEND={v}: {e}"))?,
            "SECAGG_BACKEND",
        ),
        _ => (spec.clone(), flag),
    };
    Engine::open(&spec).map_err(|e| format!("{source} {spec}: {e}"))
}

/// Bytes in a short human form.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A duration in a short human form.
pub fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{:.0} µs", s * 1e6)
    }
}

/// A probability given as its log2, for humans: `2^-41.3`, or `0` when it cannot happen
/// under the model (the planner's worst-case counts make some tails empty).
pub fn pow2(log2: f64) -> String {
    if log2 == f64::NEG_INFINITY {
        "0".into()
    } else {
        format!("2^{log2:.1}")
    }
}
