//! One real round inside this process: the shortest way from `f32` updates to their secure
//! sum, for trying the library out and for tests of code that embeds it.
//!
//! Every client is a sans-IO [`Client`] with a fresh identity key and its own generator
//! from the operating system; the [`Server`] sees only their masked vectors. The clients
//! trust no CA (the honest-but-curious protocol: in one process there is nobody to lie) and
//! budget for no colluders (every client is the caller's own), so this is a demonstration of
//! the protocol and its cost, not a deployment — a deployment runs `transport::serve` and
//! `transport::Join` with enrolled identities.

use std::collections::BTreeSet;
use std::time::Duration;

use secagg_engine::{Accumulate, CpuEngine};

use crate::error::AbortReason;
use crate::identity::IdentityKey;
use crate::policy::ClientPolicy;
use crate::server::{RoundOutput, Server, ServerStatus};
use crate::{
    Client, ClientError, ClientId, ClientIdentity, ClientStatus, RoundConfig, Stage, round_rng,
};

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
    let mut now = Duration::ZERO;
    let mut server = Server::new(config.clone(), engine, now);
    for i in 0..n {
        server.handle_join(ClientId(i as u32), now);
    }
    let mut gone: BTreeSet<ClientId> = BTreeSet::new();
    let mut idle = 0;
    loop {
        let mut moved = false;
        // Clients first: what each has queued goes to the server.
        for client in &mut clients {
            let id = client.id();
            while let Some(env) = client.poll_transmit() {
                if !gone.contains(&id) {
                    server.handle_message(id, env, now);
                    moved = true;
                }
            }
            // A client in `drop` leaves once it has dealt its shares, before masking: the
            // server must then remove the pairwise masks its neighbours added for it.
            let dealt =
                matches!(client.status(), ClientStatus::Running(s) if s >= Stage::ShareCheck);
            if drop.contains(&id) && !gone.contains(&id) && dealt {
                gone.insert(id);
                server.handle_disconnect(id, now);
            }
        }
        // Then the server: its messages go to their clients.
        while let Some((to, env)) = server.poll_transmit() {
            if let Some(client) = clients.get_mut(to.0 as usize) {
                if !gone.contains(&to) {
                    client
                        .handle_message(env)
                        .map_err(|e| AggregateError::Client(to, e))?;
                    moved = true;
                }
            }
        }
        match server.status() {
            ServerStatus::Completed => break,
            ServerStatus::Aborted(reason) => return Err(AggregateError::Aborted(reason)),
            ServerStatus::Running(_) if moved => idle = 0,
            ServerStatus::Running(_) => {
                // Nobody has anything to say: let the stage's deadline pass.
                idle += 1;
                match server.poll_timeout() {
                    Some(deadline) if idle < 16 => {
                        now = now.max(deadline);
                        server.handle_timeout(now);
                    }
                    _ => {
                        return Err(AggregateError::Aborted(AbortReason::StateLost(
                            "the round stalled",
                        )));
                    }
                }
            }
        }
    }
    server
        .take_output()
        .ok_or(AggregateError::Aborted(AbortReason::StateLost(
            "the round completed without an output",
        )))
}
