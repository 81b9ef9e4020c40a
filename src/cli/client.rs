//! `secagg client`: join a round with a model update file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use secagg::model::read_model;
use secagg_engine::CpuEngine;
use secagg_host::transport::{ClientOptions, ClientOutcome, TransportError, run_client};
use secagg_host::{ClientId, ProtocolError, Stage};
use serde::Deserialize;

use super::{EXIT_ABORTED, EXIT_FAILED, load_config, pick};

/// The stages a client can be told to leave after.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DropAfter {
    /// Leave after advertising keys (the server sees it miss share-keys).
    AdvertiseKeys,
    /// Leave after sending the share bundles (it misses masked-input).
    ShareKeys,
    /// Leave after sending the masked input (it misses unmasking; its input is in the sum).
    MaskedInput,
}

impl DropAfter {
    fn stage(self) -> Stage {
        match self {
            DropAfter::AdvertiseKeys => Stage::AdvertiseKeys,
            DropAfter::ShareKeys => Stage::ShareKeys,
            DropAfter::MaskedInput => Stage::MaskedInput,
        }
    }
}

/// Arguments of `secagg client`. Each flag may also come from `--config FILE` (TOML, the
/// flag names as keys); flags on the command line win.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// The server's address, e.g. 127.0.0.1:7000. [required]
    #[arg(long)]
    connect: Option<SocketAddr>,
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
    /// Read flags from this TOML file.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ClientFile {
    connect: Option<SocketAddr>,
    id: Option<u32>,
    input: Option<PathBuf>,
    weight: Option<u32>,
    drop_after: Option<DropAfter>,
    connect_timeout_ms: Option<u64>,
}

pub fn run(a: ClientArgs) -> Result<ExitCode, String> {
    let file: ClientFile = load_config(a.config.as_deref())?;
    let addr = pick(a.connect, file.connect, "connect")?;
    let id = pick(a.id, file.id, "id")?;
    let input = pick(a.input, file.input, "input")?;
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
    let (layout, update) =
        read_model(&input).map_err(|e| format!("--input {}: {e}", input.display()))?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("no operating-system randomness: {e}"))?;
    let rng = ChaCha20Rng::from_seed(seed);
    seed.fill(0);
    let options = ClientOptions {
        id: ClientId(id),
        weight,
        layout: layout.to_bytes(),
        drop_after,
        connect_timeout,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let outcome = runtime.block_on(run_client(addr, options, &update, CpuEngine::new(), rng));
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
        Err(e) => {
            eprintln!("client {id}: {e}");
            Ok(ExitCode::from(EXIT_FAILED))
        }
    }
}
