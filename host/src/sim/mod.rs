//! An in-memory round: n clients and a server, a seeded RNG, a fake clock and a dropout
//! schedule. Tests, benchmarks and `secagg simulate` all run rounds through it.
//!
//! The round runs on a [`Network`]: every message goes through the wire codec (so byte counts
//! are real and the codec is exercised), clients run in parallel, and the server is driven
//! exactly as a transport would drive it. Inputs are drawn per client from the seed; the
//! simulator keeps the plaintext sum of the inputs that should be included and checks the
//! round's output against it: exactly for the integer sum mod 2^b, within the quantization
//! bound for the `f32` sum.
//!
//! With the `testing` feature, `lab` is the attack laboratory: a scriptable malicious
//! server over real clients.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use rayon::prelude::*;
use secagg_engine::{Backend, CpuEngine, LaneKind};

use crate::config::RoundConfig;
use crate::error::{AbortReason, ProtocolError};
use crate::identity::{CaKey, IdentityKey};
use crate::messages::{ClientMessage, Envelope, ServerMessage};
use crate::plan::Adversary;
use crate::policy::{ClientPolicy, Trust};
use crate::quantize::{self, InputError, InputSource, QuantizingSource};
use crate::server::{DropReason, RoundOutput, Server, ServerStatus};
use crate::{Client, ClientError, ClientId, ClientIdentity, ClientStatus, Stage};

#[cfg(feature = "testing")]
pub mod lab;
pub mod network;
mod privacy;

pub use network::{Honest, Network, Peer, Tamper};
pub use privacy::DpMeasurement;

/// Which clients vanish, and before which stage's message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DropSchedule {
    misses: BTreeMap<ClientId, Stage>,
}

impl DropSchedule {
    /// Nobody drops.
    pub fn none() -> Self {
        Self::default()
    }

    /// `clients` complete every stage before `stage` and then vanish.
    pub fn at(mut self, stage: Stage, clients: impl IntoIterator<Item = ClientId>) -> Self {
        for c in clients {
            self.misses.insert(c, stage);
        }
        self
    }

    /// ⌊fraction · n⌋ clients, picked at random from `seed`, vanish before `stage`.
    pub fn random(n: usize, fraction: f64, stage: Stage, seed: u64) -> Self {
        let mut ids: Vec<ClientId> = (0..n as u32).map(ClientId).collect();
        let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x5ec_a66);
        for i in (1..ids.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            ids.swap(i, j);
        }
        let count = ((n as f64) * fraction.clamp(0.0, 1.0)).floor() as usize;
        Self::none().at(stage, ids.into_iter().take(count))
    }

    /// ⌊fraction · |members|⌋ of `members`, picked at random from `seed`, vanish before
    /// `stage`.
    pub fn random_among(members: &[ClientId], fraction: f64, stage: Stage, seed: u64) -> Self {
        let picked = Self::random(members.len(), fraction, stage, seed);
        Self::none().at(
            stage,
            picked
                .misses
                .keys()
                .filter_map(|i| members.get(i.0 as usize).copied()),
        )
    }

    /// The stage `client` misses, if it drops.
    pub fn misses(&self, client: ClientId) -> Option<Stage> {
        self.misses.get(&client).copied()
    }

    /// Whether `client` sends its message of `stage`.
    pub fn sends(&self, client: ClientId, stage: Stage) -> bool {
        self.misses(client).is_none_or(|m| stage < m)
    }

    /// How many clients drop.
    pub fn len(&self) -> usize {
        self.misses.len()
    }

    /// Whether nobody drops.
    pub fn is_empty(&self) -> bool {
        self.misses.is_empty()
    }
}

/// How a dropped client vanishes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DropMode {
    /// Its connection closes: the server learns at once.
    #[default]
    Disconnect,
    /// It goes silent: the server waits for the stage deadline (on the fake clock).
    Silent,
}

/// One simulated round.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The round.
    pub round: RoundConfig,
    /// Seed for every client's secrets and inputs.
    pub seed: u64,
    /// Who drops, and when.
    pub drops: DropSchedule,
    /// How they drop.
    pub mode: DropMode,
    /// Draw each client's weight from 1..=max_weight (otherwise every weight is 1).
    pub random_weights: bool,
    /// Enroll every client with a CA the simulator makes from the seed (the server then
    /// admits only certified clients); otherwise identities are self-asserted.
    pub enrolled: bool,
    /// The clients' policy. Its trust is replaced by the simulator's CA when `enrolled`
    /// (and by [`Trust::Unauthenticated`] otherwise).
    pub policy: ClientPolicy,
    /// Who takes part, sorted: ids `0..n` when `None`. A self-selected round takes the
    /// eligible members of an enrolled population (see [`eligible`]).
    pub members: Option<Vec<ClientId>>,
}

impl SimConfig {
    /// A round with no dropouts, seed 0, enrolled clients, and a policy that checks every
    /// signature, commitment and list but sets no floor on the round's parameters (they are
    /// the caller's to choose): curious adversary, no corrupted clients assumed, T = 3.
    pub fn new(round: RoundConfig) -> Self {
        Self {
            round,
            seed: 0,
            drops: DropSchedule::none(),
            mode: DropMode::Disconnect,
            random_weights: false,
            enrolled: true,
            policy: parameter_free_policy(),
            members: None,
        }
    }

    /// The ids of the clients taking part, sorted.
    pub fn member_ids(&self) -> Vec<ClientId> {
        match &self.members {
            Some(m) => m.clone(),
            None => (0..self.round.clients() as u32).map(ClientId).collect(),
        }
    }
}

/// The members of an enrolled population of `population` simulated identities (ids
/// `0..population`, keys from the seed) that `selection` admits, drawn on every core.
pub fn eligible(
    seed: u64,
    selection: &crate::selection::Selection,
    population: u32,
) -> Vec<ClientId> {
    let ca = sim_ca(seed).public();
    (0..population)
        .into_par_iter()
        .map(ClientId)
        .filter(|id| {
            crate::selection::draw(&sim_rng(seed, *id).0, &ca, selection.epoch())
                .is_some_and(|(_, score)| score < selection.threshold())
        })
        .collect()
}

/// A policy with no floor on the round's parameters (see [`SimConfig::new`]).
pub fn parameter_free_policy() -> ClientPolicy {
    ClientPolicy {
        adversary: Adversary::Curious,
        colluders: 0,
        dropout_rate: 0.0,
        min_cohort: 3,
        prgs: vec![
            secagg_engine::Prg::ChaCha20,
            secagg_engine::Prg::ChaCha12,
            secagg_engine::Prg::ChaCha8,
        ],
        ..ClientPolicy::curious_unauthenticated()
    }
}

/// The deployment CA of a simulated round (derived from the seed, so tests can rebuild it).
pub fn sim_ca(seed: u64) -> CaKey {
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0xca_ca_ca);
    CaKey::generate(&mut rng)
}

/// The RNG of client `id` in a simulated round, positioned after its identity key.
fn sim_rng(seed: u64, id: ClientId) -> (IdentityKey, ChaCha20Rng) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    rng.set_stream(u64::from(id.0) + (1 << 40));
    let key = IdentityKey::generate(&mut rng);
    (key, rng)
}

/// The identity key of client `id` in a simulated round.
pub fn sim_identity_key(cfg: &SimConfig, id: ClientId) -> IdentityKey {
    sim_rng(cfg.seed, id).0
}

/// Client `id` of a simulated round, with its identity and RNG derived from the seed, ready
/// to run (its policy is `cfg.policy` with the trust set as [`SimConfig`] says).
pub fn sim_client<E: Backend>(
    cfg: &SimConfig,
    ca: &CaKey,
    id: ClientId,
    engine: E,
) -> Result<Client<E, ChaCha20Rng>, crate::ClientError> {
    let (key, rng) = sim_rng(cfg.seed, id);
    let (identity, trust) = if cfg.enrolled {
        let cert = ca.issue(id, &key.public());
        (
            ClientIdentity::enrolled(key, cert)?,
            Trust::Enrolled(ca.public()),
        )
    } else {
        (
            ClientIdentity::self_asserted(id, key),
            Trust::Unauthenticated,
        )
    };
    let policy = ClientPolicy {
        trust,
        ..cfg.policy.clone()
    };
    Client::new(identity, cfg.round.clone(), policy, engine, rng)
}

/// The server of a simulated round (enrolled with the simulator's CA when `cfg.enrolled`).
pub fn sim_server<E: secagg_engine::Accumulate>(
    cfg: &SimConfig,
    ca: &CaKey,
    engine: E,
    now: Duration,
) -> Server<E> {
    if cfg.enrolled {
        Server::enrolled(cfg.round.clone(), ca.public(), engine, now)
    } else {
        Server::new(cfg.round.clone(), engine, now)
    }
}

/// Figures for one stage.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StageStats {
    /// The stage.
    pub stage: Option<Stage>,
    /// Time inside the server handling this stage's messages (including, for unmasking, the
    /// reconstruction and the mask removal).
    pub server: Duration,
    /// The server's time in the one call that ended the stage (for unmasking: rebuilding the
    /// secrets and removing every mask).
    pub server_finish: Duration,
    /// The longest any client spent producing its message for this stage.
    pub slowest_client: Duration,
    /// The time all clients together spent producing their message for this stage (divide by
    /// [`StageStats::workers`] for the mean).
    pub client_total: Duration,
    /// Clients whose work for this stage was timed.
    pub workers: usize,
    /// Clients that sent this stage's message.
    pub senders: usize,
    /// Bytes each sender uploaded in this stage (mean).
    pub bytes_up: u64,
    /// Clients that received the server message starting this stage.
    pub receivers: usize,
    /// Bytes each client downloaded to start this stage (mean over receivers).
    pub bytes_down: u64,
    /// The process's peak resident memory when this stage's work was done (Linux; 0 where
    /// unknown). The simulator holds the server and every client in one process.
    pub peak_rss: u64,
}

impl StageStats {
    /// The mean time a client spent on this stage.
    pub fn mean_client(&self) -> Duration {
        self.client_total / u32::try_from(self.workers.max(1)).unwrap_or(u32::MAX)
    }
}

/// How the output compared with the plaintext.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// The integer sum equals the plaintext sum of the included clients' quantized inputs.
    pub exact: bool,
    /// The included set is exactly the clients that sent masked inputs.
    pub included_ok: bool,
    /// The largest |dequantized − true weighted sum| over the elements.
    pub max_error: f64,
    /// The quantization bound it must stay within.
    pub bound: f64,
}

impl Check {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.exact && self.included_ok && self.max_error <= self.bound
    }
}

/// What a simulated round did.
#[derive(Clone, Debug)]
pub struct SimReport {
    /// The output, or why the round aborted.
    pub outcome: Result<RoundOutput, AbortReason>,
    /// Figures per stage, in order.
    pub stages: Vec<StageStats>,
    /// The comparison with the plaintext, when the round completed.
    pub check: Option<Check>,
    /// Wall time of the whole simulation.
    pub wall: Duration,
    /// The clients' final statuses.
    pub client_status: Vec<(ClientId, ClientStatus)>,
    /// In a DP round that completed: the noise in the sum and the error measured against
    /// the plaintext.
    pub dp: Option<DpMeasurement>,
}

/// Progress of a long stage, for progress bars.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// The stage being worked on.
    pub stage: Stage,
    /// Work items done.
    pub done: usize,
    /// Work items in all.
    pub total: usize,
}

/// Something that is not a protocol outcome: a broken simulation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// A message failed to decode after encoding (a codec bug).
    #[error("codec round trip failed: {0}")]
    Codec(#[from] crate::error::CodecError),
    /// A client rejected its input or had none.
    #[error("client {0}: {1}")]
    Client(ClientId, crate::ClientError),
    /// The round did not finish (a state machine stopped answering).
    #[error("the round stalled at {0}")]
    Stalled(String),
}

/// Client `id`'s update: uniform in [−1.2c, 1.2c] (so some values are clipped) from the seed.
pub fn client_update(seed: u64, id: ClientId, params: usize, clip: f32) -> Vec<f32> {
    let mut out = vec![0f32; params];
    fill_update(&mut update_rng(seed, id, 0), clip, &mut out);
    out
}

/// The generator of client `id`'s update, at element `at` (two keystream words per element).
fn update_rng(seed: u64, id: ClientId, at: usize) -> ChaCha20Rng {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    rng.set_stream(u64::from(id.0) + 1);
    rng.set_word_pos(2 * at as u128);
    rng
}

/// The next `out.len()` elements of an update from its generator.
fn fill_update(rng: &mut ChaCha20Rng, clip: f32, out: &mut [f32]) {
    let span = 2.4 * f64::from(clip);
    for o in out {
        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        *o = (u * span - 1.2 * f64::from(clip)) as f32;
    }
}

/// The RNG that rounds client `id`'s update, at element `at` (a multiple of 256: the
/// quantizer draws 1,024 bytes per 256 elements, one keystream word each).
fn rounding_rng(seed: u64, id: ClientId, at: usize) -> ChaCha20Rng {
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x9a4e);
    rng.set_stream(u64::from(id.0) + 1);
    rng.set_word_pos(at as u128);
    rng
}

/// Client `id`'s input as a stream: its update generated and quantized a piece at a time,
/// so that no client of a simulated round ever holds its whole vector (in a DP round the
/// rotation needs the whole update: it is encoded at once).
fn sim_source(cfg: &SimConfig, id: ClientId) -> Result<Box<dyn InputSource>, InputError> {
    if let Some(dp) = privacy::dp_source(cfg, id) {
        return dp;
    }
    let q = cfg.round.quantization();
    let mut rng = update_rng(cfg.seed, id, 0);
    let clip = q.clip;
    let read = move |out: &mut [f32]| {
        fill_update(&mut rng, clip, out);
        Ok(())
    };
    let source = QuantizingSource::new(
        read,
        cfg.round.params(),
        &q,
        client_weight(cfg, id),
        rounding_rng(cfg.seed, id, 0),
    )?;
    Ok(Box::new(source))
}

/// Client `id`'s input at b > 32: the update and rounding of [`sim_source`], quantized
/// whole into 64-bit elements (the quantizer gives the same levels whatever the split), or
/// in a DP round its DP encoding.
fn wide_input(cfg: &SimConfig, id: ClientId) -> Result<Vec<u64>, InputError> {
    if let Some(dp) = privacy::dp_input_wide(cfg, id) {
        return dp;
    }
    let q = cfg.round.quantization();
    let update = client_update(cfg.seed, id, cfg.round.params(), q.clip);
    let mut out = Vec::new();
    quantize::quantize_into(
        &update,
        &q,
        client_weight(cfg, id),
        &mut rounding_rng(cfg.seed, id, 0),
        &mut out,
    )?;
    Ok(out)
}

/// Client `id`'s weight.
fn client_weight(cfg: &SimConfig, id: ClientId) -> u32 {
    let max = cfg.round.quantization().max_weight;
    if !cfg.random_weights || max == 1 {
        return 1;
    }
    let mut rng = ChaCha20Rng::seed_from_u64(cfg.seed ^ 0x077e_16b7);
    rng.set_stream(u64::from(id.0) + 1);
    1 + (rng.next_u32() % max)
}

/// A simulated client: its input is set, as a stream generated from the seed, just before the
/// masked-input stage, so that no client holds an input it does not yet need.
struct SimPeer<'a> {
    client: Client<CpuEngine, ChaCha20Rng>,
    cfg: &'a SimConfig,
}

impl Peer for SimPeer<'_> {
    fn id(&self) -> ClientId {
        self.client.id()
    }

    fn handle_message(&mut self, envelope: Envelope<ServerMessage>) -> Result<(), ClientError> {
        if let ServerMessage::MaskRequest(_) = envelope.message {
            let id = self.client.id();
            if self.cfg.round.modulus().lane_kind() == LaneKind::U32 {
                self.client.set_input_source(sim_source(self.cfg, id)?)?;
            } else {
                // Streamed sources give 32-bit values: above 2^32 the input is set whole.
                self.client
                    .set_quantized_input_wide(wide_input(self.cfg, id)?)?;
            }
        }
        self.client.handle_message(envelope)
    }

    fn poll_transmit(&mut self) -> Option<Envelope<ClientMessage>> {
        self.client.poll_transmit()
    }

    fn status(&self) -> ClientStatus {
        self.client.status()
    }
}

/// Runs one round on a [`Network`]. The server uses `engine`; clients use the CPU engine, in
/// parallel.
pub fn run<E: secagg_engine::Accumulate>(
    cfg: &SimConfig,
    engine: E,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<SimReport, SimError> {
    let started = Instant::now();
    let ca = sim_ca(cfg.seed);
    let server = sim_server(cfg, &ca, engine, Duration::ZERO);
    let client_engine = CpuEngine::new();
    let made: Vec<Result<(SimPeer<'_>, Duration), SimError>> = cfg
        .member_ids()
        .into_par_iter()
        .map(|id| {
            let t0 = Instant::now();
            let client = sim_client(cfg, &ca, id, client_engine.clone())
                .map_err(|e| SimError::Client(id, e))?;
            Ok((SimPeer { client, cfg }, t0.elapsed()))
        })
        .collect();
    let (peers, times): (Vec<SimPeer<'_>>, Vec<Duration>) = made
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .unzip();
    let mut net = Network::new(server, peers).with_drops(cfg.drops.clone(), cfg.mode);
    net.charge_clients(Stage::Join, &times);
    let status = net.run(&mut Honest, progress)?;
    let mut dp = None;
    let (outcome, check) = match status {
        ServerStatus::Completed => match net.server_mut().take_output() {
            Some(out) => {
                let check = match privacy::check(cfg, &out) {
                    Some((check, measured)) => {
                        dp = Some(measured);
                        check
                    }
                    None => check_output(cfg, &out),
                };
                (Ok(out), Some(check))
            }
            None => (
                Err(AbortReason::StateLost(
                    "the round completed without an output",
                )),
                None,
            ),
        },
        ServerStatus::Aborted(reason) => (Err(reason), None),
        // Nothing moves and no deadline is left to wait for.
        ServerStatus::Running(_) => return Err(SimError::Stalled(format!("{status:?}"))),
    };
    Ok(SimReport {
        outcome,
        stages: net.stages(),
        check,
        wall: started.elapsed(),
        client_status: net.peers().map(|p| (p.id(), p.status())).collect(),
        dp,
    })
}

/// The clients whose inputs the sum must hold: every member that sends its masked input under
/// the drop schedule, less the dealers the server excluded because too few of their
/// neighbours hold checked shares (`UnrecoverableDealer`, with fewer readable holders than
/// the threshold): dropouts among a sparse graph's few neighbours can leave an honest
/// dealer's secrets unrecoverable, and then it must not be summed.
fn expected_included(cfg: &SimConfig, out: &RoundOutput) -> Vec<ClientId> {
    let unrecoverable: BTreeSet<ClientId> = out
        .dropped
        .iter()
        .filter(|d| {
            matches!(
                d.reason,
                DropReason::Misbehaved(ProtocolError::UnrecoverableDealer { readable, need, .. })
                    if readable < need
            )
        })
        .map(|d| d.client)
        .collect();
    cfg.member_ids()
        .into_iter()
        .filter(|c| cfg.drops.sends(*c, Stage::MaskedInput) && !unrecoverable.contains(c))
        .collect()
}

/// Elements per piece of the output check: a multiple of 256, so that each piece's rounding
/// RNG starts on a block of the quantizer.
const CHECK_PIECE: usize = 1 << 20;

/// Compares the output with the plaintext, a piece at a time and in parallel: each piece
/// regenerates the included clients' updates and levels from the seed, so the check holds
/// O(piece) memory whatever the model's size.
fn check_output(cfg: &SimConfig, out: &RoundOutput) -> Check {
    let m = cfg.round.params();
    let q = cfg.round.quantization();
    let mask = cfg.round.modulus().mask_u64();
    let expected = expected_included(cfg, out);
    let included_ok = out.included == expected;
    let weights: Vec<u32> = expected.iter().map(|&c| client_weight(cfg, c)).collect();
    let weight_sum = weights
        .iter()
        .fold(0u64, |a, &w| a.wrapping_add(u64::from(w)) & mask);
    let weight_ok = out.total_weight == weight_sum;
    let c = f64::from(q.clip);
    // The sum in 64-bit elements whatever b (so one check serves every width).
    let sum_len = out.sum.len().max(out.sum_wide.len());
    let got_at = |i: usize| match out.sum.get(i) {
        Some(&s) => u64::from(s),
        None => out.sum_wide.get(i).copied().unwrap_or(u64::MAX),
    };
    let pieces: Vec<(bool, f64, f64)> = if sum_len != m {
        Vec::new()
    } else {
        (0..m.div_ceil(CHECK_PIECE))
            .into_par_iter()
            .map(|p| {
                let start = p * CHECK_PIECE;
                let len = CHECK_PIECE.min(m - start);
                let mut levels = vec![0u64; len];
                let mut reals = vec![0f64; len];
                let mut update = vec![0f32; len];
                let mut mine = vec![0u64; len];
                for (&id, &w) in expected.iter().zip(&weights) {
                    fill_update(&mut update_rng(cfg.seed, id, start), q.clip, &mut update);
                    let quantized = quantize::Quantizer::new(&q, w).and_then(|mut qz| {
                        qz.quantize(
                            &update,
                            start,
                            &mut rounding_rng(cfg.seed, id, start),
                            &mut mine,
                        )
                    });
                    if quantized.is_err() {
                        return (false, f64::INFINITY, 0.0);
                    }
                    for (s, l) in levels.iter_mut().zip(&mine) {
                        *s = s.wrapping_add(*l) & mask;
                    }
                    for (r, x) in reals.iter_mut().zip(&update) {
                        *r += f64::from(*x).clamp(-c, c) * f64::from(w);
                    }
                }
                let got: Vec<u64> = (start..start + len).map(got_at).collect();
                let exact = got == levels;
                let deq = quantize::dequantize_sum_wide(&got, out.total_weight, &q);
                let max_error = deq
                    .iter()
                    .zip(&reals)
                    .map(|(d, r)| (f64::from(*d) - r).abs())
                    .fold(0.0, f64::max);
                let largest = reals.iter().fold(0.0f64, |a, r| a.max(r.abs()));
                (exact, max_error, largest)
            })
            .collect()
    };
    let exact = sum_len == m && weight_ok && pieces.iter().all(|p| p.0);
    let max_error = pieces.iter().fold(0.0, |a: f64, p| a.max(p.1));
    let largest = pieces.iter().fold(0.0, |a: f64, p| a.max(p.2));
    // Quantization error, plus the f32 rounding of the result.
    let bound =
        quantize::error_bound(out.total_weight, &q) + largest * f64::from(f32::EPSILON) + 1e-9;
    Check {
        exact,
        included_ok,
        max_error,
        bound,
    }
}
