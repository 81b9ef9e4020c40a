//! One real round inside this process: the shortest way from `f32` updates to their secure
//! sum, for trying the library out and for tests of code that embeds it.
//!
//! Every client is a sans-IO [`Client`] with a fresh identity key and its own generator
//! from the operating system; the [`Server`] sees only their masked vectors, which reach it
//! through the wire codec on the simulator's in-memory [`Network`]. The clients
//! trust no CA (the honest-but-curious protocol: in one process there is nobody to lie) and
//! budget for no colluders (every client is the caller's own), so this is a demonstration of
//! the protocol and its cost, not a deployment — a deployment runs `transport::serve` and
//! `transport::Join` with enrolled identities.

use std::time::Duration;

use secagg_engine::{Accumulate, CpuEngine};

use crate::error::AbortReason;
use crate::identity::IdentityKey;
use crate::policy::ClientPolicy;
use crate::server::{RoundOutput, Server, ServerStatus};
use crate::sim::{DropMode, DropSchedule, Honest, Network, SimError};
use crate::{Client, ClientError, ClientId, ClientIdentity, RoundConfig, Stage, round_rng};

/// Why [`aggregate`] produced no sum.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AggregateError {
    /// `updates` (or `weights`) do not match the configuration.
    #[error("{0}")]
    Shape(String),
    /// A client refused the round or its input (a weight above the configuration's
    /// maximum, a NaN, a round its policy does not allow).
    #[error("client {0}: {1}")]
    Client(ClientId, ClientError),
    /// The operating system gave no randomness.
    #[error("no operating-system randomness: {0}")]
    Randomness(String),
    /// The round aborted (too many dropped clients, or the engine failed).
    #[error("the round aborted: {0}")]
    Aborted(AbortReason),
}

/// Runs one round over `updates` (one per client, `config.params()` values each) with
/// integer `weights` (`None`: every weight 1), on the CPU engine; the clients in `drop` leave
/// after dealing their shares and before masking, and the round recovers without them. Returns the
/// server's output: the sum, the total weight, who was included.
///
/// ```
/// use secagg_host::{RoundConfig, local::aggregate};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let updates: Vec<Vec<f32>> = (0..5).map(|i| vec![0.1 * i as f32; 8]).collect();
/// let config = RoundConfig::builder(5, 8).build()?;
/// let out = aggregate(&config, &updates, None, &[])?;
/// let mean = out.weighted_mean(&config);
/// assert!((mean[0] - 0.2).abs() < 1e-3); // (0 + 0.1 + 0.2 + 0.3 + 0.4) / 5
/// # Ok(())
/// # }
/// ```
pub fn aggregate(
    config: &RoundConfig,
    updates: &[Vec<f32>],
    weights: Option<&[u32]>,
    drop: &[ClientId],
) -> Result<RoundOutput, AggregateError> {
    aggregate_on(CpuEngine::new(), config, updates, weights, drop)
}

/// [`aggregate`] with the server's vector work on `engine` (for instance
/// [`secagg_engine::Engine`], which runs on a GPU when there is one).
pub fn aggregate_on<E: Accumulate>(
    engine: E,
    config: &RoundConfig,
    updates: &[Vec<f32>],
    weights: Option<&[u32]>,
    drop: &[ClientId],
) -> Result<RoundOutput, AggregateError> {
    let n = config.clients();
    if updates.len() != n {
        return Err(AggregateError::Shape(format!(
            "{} updates for a round of {n} clients",
            updates.len()
        )));
    }
    if weights.is_some_and(|w| w.len() != n) {
        return Err(AggregateError::Shape(format!(
            "{} weights for {n} clients",
            weights.map_or(0, <[u32]>::len)
        )));
    }
    // Every client is the caller's: no colluders to budget for.
    let policy = ClientPolicy {
        min_cohort: 3,
        colluders: 0,
        ..ClientPolicy::curious_unauthenticated()
    };
    let rng_error = |e: getrandom::Error| AggregateError::Randomness(e.to_string());
    let mut clients = Vec::with_capacity(n);
    for (i, update) in updates.iter().enumerate() {
        let id = ClientId(i as u32);
        let mut rng = round_rng().map_err(rng_error)?;
        let identity = ClientIdentity::self_asserted(id, IdentityKey::generate(&mut rng));
        let mut client = Client::new(
            identity,
            config.clone(),
            policy.clone(),
            CpuEngine::new(),
            rng,
        )
        .map_err(|e| AggregateError::Client(id, e))?;
        let weight = weights.map_or(1, |w| w[i]);
        client
            .set_input(update, weight)
            .map_err(|e| AggregateError::Client(id, e))?;
        clients.push(client);
    }
    let server = Server::new(config.clone(), engine, Duration::ZERO);
    // A client in `drop` leaves once it has dealt its shares, before the share check: the
    // server must then remove the pairwise masks its neighbours add for it.
    let leave = DropSchedule::none().at(Stage::ShareCheck, drop.iter().copied());
    let mut net = Network::new(server, clients).with_drops(leave, DropMode::Disconnect);
    for i in 0..n {
        net.server_mut()
            .handle_join(ClientId(i as u32), Duration::ZERO);
    }
    let status = net.run(&mut Honest, &|_| {}).map_err(|e| match e {
        SimError::Client(id, e) => AggregateError::Client(id, e),
        _ => AggregateError::Aborted(AbortReason::StateLost(
            "a message did not survive the wire codec",
        )),
    })?;
    match status {
        ServerStatus::Completed => net
            .server_mut()
            .take_output()
            .ok_or(AggregateError::Aborted(AbortReason::StateLost(
                "the round completed without an output",
            ))),
        ServerStatus::Aborted(reason) => Err(AggregateError::Aborted(reason)),
        ServerStatus::Running(_) => Err(AggregateError::Aborted(AbortReason::StateLost(
            "the round stalled",
        ))),
    }
}
