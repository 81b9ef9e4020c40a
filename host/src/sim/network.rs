//! The in-memory network every simulated round runs on: a [`Server`], n [`Peer`]s, a fake
//! clock, and whatever sits on the wire between them.
//!
//! A [`Network`] moves messages the way a transport would:
//!
//! - every message goes through the wire codec, so byte counts are real and the codec is
//!   exercised. No message is a list of all n members: the cohort, the present set and the
//!   survivor set reach each client as its own opening of the server's commitment
//!   (O(k log n) bytes), so each message goes through the codec on its own;
//! - the clients take their turns in parallel (rayon), in batches small enough that the
//!   masked vectors in flight stay within a bound; what they send reaches the server in the
//!   clients' order, so a round's outcome, figures and bytes do not depend on the threads;
//! - a [`DropSchedule`] says which clients vanish before which stage, and a [`Tamper`] sees
//!   (and may change, withhold, duplicate or forge) every message on the way;
//! - the server's and the clients' time, and the bytes each way, are recorded per stage
//!   ([`StageStats`]), and long stages report [`Progress`].
//!
//! [`super::run`] (behind `secagg simulate`), [`crate::local::aggregate`] and the attack
//! laboratory (`sim::lab`, feature `testing`) all run their rounds on it; each keeps only
//! what is its own (making clients and checking the output; a plain API; the attacker's
//! records and moves).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand_core::CryptoRng;
use rayon::prelude::*;
use secagg_engine::{Accumulate, Backend};

use super::{DropMode, DropSchedule, Progress, SimError, StageStats};
use crate::codec::{self, Limits};
use crate::messages::{ClientMessage, Envelope, ServerMessage};
use crate::server::{Server, ServerEvent, ServerStatus};
use crate::{Client, ClientError, ClientId, ClientStatus, Stage};

/// A client as the network drives it: an honest [`Client`], or a participant a test wrote.
pub trait Peer: Send {
    /// Its id.
    fn id(&self) -> ClientId;

    /// A message from the server (see [`Client::handle_message`]).
    fn handle_message(&mut self, envelope: Envelope<ServerMessage>) -> Result<(), ClientError>;

    /// The next message it sends (see [`Client::poll_transmit`]).
    fn poll_transmit(&mut self) -> Option<Envelope<ClientMessage>>;

    /// Where its round stands.
    fn status(&self) -> ClientStatus;
}

impl<E: Backend + Send, R: CryptoRng + Send> Peer for Client<E, R> {
    fn id(&self) -> ClientId {
        Client::id(self)
    }

    fn handle_message(&mut self, envelope: Envelope<ServerMessage>) -> Result<(), ClientError> {
        Client::handle_message(self, envelope)
    }

    fn poll_transmit(&mut self) -> Option<Envelope<ClientMessage>> {
        Client::poll_transmit(self)
    }

    fn status(&self) -> ClientStatus {
        Client::status(self)
    }
}

/// What sits between the server and the clients. It sees each client message (decoded)
/// before the server does and each server message before it is encoded for its recipient,
/// and may change, withhold, duplicate or forge them; it also watches what each client
/// finally gets and the server's events. The defaults pass everything through.
pub trait Tamper {
    /// A server message for `to`: push what the clients should get instead (nothing, to
    /// withhold it).
    fn server_message(
        &mut self,
        to: ClientId,
        message: ServerMessage,
        out: &mut Vec<(ClientId, ServerMessage)>,
    ) {
        out.push((to, message));
    }

    /// A client message on its way to the server: `None` withholds it.
    fn client_message(&mut self, _from: ClientId, message: ClientMessage) -> Option<ClientMessage> {
        Some(message)
    }

    /// A server message as it reaches `to` (after the codec), whether or not `to` is a
    /// client of this network. Only watches.
    fn delivered(&mut self, _to: ClientId, _envelope: &Envelope<ServerMessage>) {}

    /// One of the server's events. Only watches.
    fn event(&mut self, _event: ServerEvent) {}
}

/// A network that delivers everything as sent.
pub struct Honest;

impl Tamper for Honest {}

/// Deadlines that may pass in a row with nothing moving before [`Network::run`] gives up.
const MAX_IDLE_DEADLINES: usize = 16;

/// Bytes of server frames [`Network::run`] moves to the clients per exchange: a few hundred
/// key lists at n = 10^5, so that a stage's messages never all wait decoded at once.
pub const ROUTE_BUDGET: usize = 32 << 20;

/// One client and its side of the wire.
struct Slot<P> {
    peer: P,
    /// Server messages that reached it and it has not handled yet.
    inbox: Vec<Envelope<ServerMessage>>,
    /// It vanished, as the drop schedule says: it neither hears nor says anything more.
    gone: bool,
    /// It has not yet been asked what it sends.
    fresh: bool,
}

impl<P> Slot<P> {
    fn new(peer: P) -> Self {
        Self {
            peer,
            inbox: Vec::new(),
            gone: false,
            fresh: true,
        }
    }

    /// Whether a turn can do anything for it, for a peer that speaks only first or in answer
    /// (see [`Network::run`]).
    fn has_work(&self) -> bool {
        !self.gone && (self.fresh || !self.inbox.is_empty())
    }
}

/// The server's side: the server, the clock and the figures.
struct Hub<E: Accumulate> {
    server: Server<E>,
    now: Duration,
    limits: Limits,
    stats: BTreeMap<Stage, StageStats>,
}

/// A server, its clients and the wire between them (see the [module docs](self)).
pub struct Network<E: Accumulate, P> {
    hub: Hub<E>,
    /// Sorted by id, as `ids`.
    slots: Vec<Slot<P>>,
    ids: Vec<ClientId>,
    drops: DropSchedule,
    mode: DropMode,
    /// Bytes of server frames [`Network::run`] moves per exchange.
    route_budget: usize,
}

/// What one client did in one turn.
struct Turn {
    /// The stage it worked on.
    stage: Option<Stage>,
    /// Its time, less the time the network took to take what it sent.
    spent: Duration,
    /// It vanished in this turn.
    vanished: bool,
}

/// Encoded frames a client sent, with the stage of each.
type Frames = Vec<(Stage, Vec<u8>)>;

/// Where a client's encoded frames go as it sends them.
type Sink<'a> = dyn FnMut(Stage, Vec<u8>) -> Result<(), SimError> + 'a;

impl<E: Accumulate, P: Peer> Network<E, P> {
    /// A network around `server` (made at time zero) and `peers`; nobody drops.
    pub fn new(server: Server<E>, peers: impl IntoIterator<Item = P>) -> Self {
        let limits = Limits::for_config(server.config());
        let mut slots: Vec<Slot<P>> = peers.into_iter().map(Slot::new).collect();
        slots.sort_by_key(|s| s.peer.id());
        let ids = slots.iter().map(|s| s.peer.id()).collect();
        let stats = Stage::ALL
            .into_iter()
            .map(|s| {
                let st = StageStats {
                    stage: Some(s),
                    ..Default::default()
                };
                (s, st)
            })
            .collect();
        Self {
            hub: Hub {
                server,
                now: Duration::ZERO,
                limits,
                stats,
            },
            slots,
            ids,
            drops: DropSchedule::none(),
            mode: DropMode::Disconnect,
            route_budget: ROUTE_BUDGET,
        }
    }

    /// [`Network::run`] moves about `bytes` of server frames per exchange (at least one
    /// frame) instead of [`ROUTE_BUDGET`].
    pub fn with_route_budget(mut self, bytes: usize) -> Self {
        self.route_budget = bytes;
        self
    }

    /// The clients in `drops` vanish as it says, and the server learns of it as `mode` says.
    pub fn with_drops(mut self, drops: DropSchedule, mode: DropMode) -> Self {
        self.drops = drops;
        self.mode = mode;
        self
    }

    /// The server.
    pub fn server(&self) -> &Server<E> {
        &self.hub.server
    }

    /// The server, to act on it directly (admit clients, take the output).
    pub fn server_mut(&mut self) -> &mut Server<E> {
        &mut self.hub.server
    }

    /// Client `id`.
    pub fn peer(&self, id: ClientId) -> Option<&P> {
        let i = self.ids.binary_search(&id).ok()?;
        self.slots.get(i).map(|s| &s.peer)
    }

    /// Every client, by id.
    pub fn peers(&self) -> impl Iterator<Item = &P> {
        self.slots.iter().map(|s| &s.peer)
    }

    /// Puts `peer` in place of the client with its id (or adds it).
    pub fn put_peer(&mut self, peer: P) {
        let slot = Slot::new(peer);
        match self.ids.binary_search(&slot.peer.id()) {
            Ok(i) => self.slots[i] = slot,
            Err(i) => {
                self.ids.insert(i, slot.peer.id());
                self.slots.insert(i, slot);
            }
        }
    }

    /// Counts work the clients did outside the network (making themselves, say) for `stage`.
    pub fn charge_clients(&mut self, stage: Stage, times: &[Duration]) {
        for t in times {
            self.hub.charge_client(stage, *t);
        }
    }

    /// The figures per stage so far, in order (bytes as means per sender and per receiver).
    pub fn stages(&self) -> Vec<StageStats> {
        self.hub
            .stats
            .values()
            .map(|st| StageStats {
                bytes_up: st.bytes_up / st.senders.max(1) as u64,
                bytes_down: st.bytes_down / st.receivers.max(1) as u64,
                ..st.clone()
            })
            .collect()
    }

    /// Runs until nothing moves; while the server still waits, its deadline passes on the fake
    /// clock and the exchange goes on (up to 16 deadlines in a row with nothing moving).
    /// Returns where the server stands: `Running` means the round stalled.
    ///
    /// Unlike [`Network::step`], each exchange here moves at most about [`ROUTE_BUDGET`]
    /// (or [`Network::with_route_budget`]) bytes of server messages to the clients, and the clients' turns visit only those
    /// with something to handle (or that have not spoken yet): a stage's messages (each
    /// client's opened key list, say) are made, handled and dropped a slice at a time, as a
    /// transport would stream them, instead of all n sitting decoded in the inboxes at once.
    /// Every peer here must speak only first or in answer to what reached it (honest
    /// clients do).
    pub fn run(
        &mut self,
        tamper: &mut dyn Tamper,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<ServerStatus, SimError> {
        let mut idle = 0;
        loop {
            let sent = self.turns(Some(&mut *tamper), progress, true)?;
            let received = self.route_some(tamper, self.route_budget)?;
            if sent || received {
                idle = 0;
            } else if idle < MAX_IDLE_DEADLINES && self.pass_deadline() {
                idle += 1;
            } else {
                return Ok(self.hub.server.status());
            }
        }
    }

    /// One exchange: the clients' turns ([`Network::step_clients`]), then the server's
    /// ([`Network::step_server`]). Returns whether anything moved.
    pub fn step(
        &mut self,
        tamper: &mut dyn Tamper,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<bool, SimError> {
        let sent = self.step_clients(tamper, progress)?;
        let received = self.step_server(tamper)?;
        Ok(sent || received)
    }

    /// Every client handles what reached it and sends what it has to say, in parallel
    /// batches; the frames then go (decoded, through `tamper`) to the server in the clients'
    /// order. Returns whether any client sent anything.
    pub fn step_clients(
        &mut self,
        tamper: &mut dyn Tamper,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<bool, SimError> {
        self.turns(Some(tamper), progress, false)
    }

    /// Every client handles what reached it, in parallel, and sends nothing yet.
    pub fn settle(&mut self) -> Result<(), SimError> {
        self.turns(None, &|_| {}, false).map(|_| ())
    }

    /// The server's messages go through `tamper` and the codec to their clients (who handle
    /// them at their next turn), and its events to `tamper`. Returns whether any message went
    /// anywhere.
    pub fn step_server(&mut self, tamper: &mut dyn Tamper) -> Result<bool, SimError> {
        self.route_some(tamper, usize::MAX)
    }

    /// [`Network::step_server`], stopping once `budget` bytes of frames have gone out (the
    /// rest wait in the server's queue, most of them not yet made).
    fn route_some(&mut self, tamper: &mut dyn Tamper, budget: usize) -> Result<bool, SimError> {
        let mut moved = false;
        let mut out = Vec::new();
        let mut routed = 0usize;
        while routed < budget {
            let Some((to, env)) = self.hub.server.poll_transmit() else {
                break;
            };
            tamper.server_message(to, env.message, &mut out);
            for (to, message) in out.drain(..) {
                moved = true;
                let env = Envelope {
                    round: env.round,
                    message,
                };
                routed = routed.saturating_add(self.route(to, env, tamper)?);
            }
        }
        while let Some(e) = self.hub.server.poll_event() {
            tamper.event(e);
        }
        Ok(moved)
    }

    /// Delivers `message` to `to` through the codec (not through `tamper`, which only
    /// watches it arrive), and `to` handles it at once.
    pub fn deliver(
        &mut self,
        to: ClientId,
        message: ServerMessage,
        tamper: &mut dyn Tamper,
    ) -> Result<(), SimError> {
        let env = Envelope {
            round: self.hub.server.config().round_id(),
            message,
        };
        self.route(to, env, tamper)?;
        let Ok(i) = self.ids.binary_search(&to) else {
            return Ok(());
        };
        let turn = take_turn(&mut self.slots[i], &self.drops, &self.hub.limits, None)?;
        if turn.vanished {
            self.hub.vanish(to, &self.drops, self.mode);
        }
        Ok(())
    }

    /// Hands `message` to the server as if `from` had sent it (past the codec and any
    /// tamper).
    pub fn to_server(&mut self, from: ClientId, message: ClientMessage) {
        let stage = message.stage();
        let env = Envelope {
            round: self.hub.server.config().round_id(),
            message,
        };
        let now = self.hub.now;
        self.hub.timed(stage, |s| s.handle_message(from, env, now));
    }

    /// When the server is waiting for a deadline, the fake clock moves to it and the server
    /// acts on it. Returns whether it did.
    pub fn pass_deadline(&mut self) -> bool {
        let hub = &mut self.hub;
        let (ServerStatus::Running(stage), Some(deadline)) =
            (hub.server.status(), hub.server.poll_timeout())
        else {
            return false;
        };
        hub.now = hub.now.max(deadline);
        let t0 = Instant::now();
        hub.server.handle_timeout(hub.now);
        let spent = t0.elapsed();
        let st = hub.stats_mut(stage);
        st.server += spent;
        st.server_finish = spent;
        true
    }

    /// Every client's turn, in batches: each batch in parallel, then what it sent to the
    /// server in order (or, without `tamper`, nothing is polled: the clients only handle
    /// what reached them, and their time is not counted). With `only_busy`, a batch none
    /// of whose clients has work ([`Slot::has_work`]) is passed over.
    fn turns(
        &mut self,
        mut tamper: Option<&mut dyn Tamper>,
        progress: &(dyn Fn(Progress) + Sync),
        only_busy: bool,
    ) -> Result<bool, SimError> {
        let n = self.slots.len();
        let send = tamper.is_some();
        let limits = self.hub.limits;
        let batch = batch_size(limits.vector_len, limits.bits);
        let mut any_sent = false;
        let mut worked: Vec<Stage> = Vec::new();
        let mut start = 0;
        while start < n {
            let end = (start + batch).min(n);
            if only_busy && !self.slots[start..end].iter().any(Slot::has_work) {
                start = end;
                continue;
            }
            let turns: Vec<(Turn, Frames)> = match tamper.as_deref_mut() {
                Some(tamper) if batch == 1 => {
                    // A large vector: one client at a time, its pieces handed to the server
                    // as they are made (neither side ever holds a whole masked vector).
                    let id = self.ids[start];
                    let hub = &mut self.hub;
                    let mut sink = |stage: Stage, bytes: Vec<u8>| {
                        any_sent = true;
                        hub.hand_over(tamper, id, stage, &bytes)
                    };
                    let slot = &mut self.slots[start];
                    let turn = take_turn(slot, &self.drops, &limits, Some(&mut sink))?;
                    vec![(turn, Vec::new())]
                }
                _ => {
                    let drops = &self.drops;
                    let done: Vec<Result<(Turn, Frames), SimError>> = self.slots[start..end]
                        .par_iter_mut()
                        .map(|slot| {
                            let mut frames = Vec::new();
                            let mut keep = |stage: Stage, bytes: Vec<u8>| {
                                frames.push((stage, bytes));
                                Ok(())
                            };
                            let sink: Option<&mut Sink<'_>> =
                                if send { Some(&mut keep) } else { None };
                            let turn = take_turn(slot, drops, &limits, sink)?;
                            Ok((turn, frames))
                        })
                        .collect();
                    // The first failure in the clients' order, whatever the threads did.
                    done.into_iter().collect::<Result<_, _>>()?
                }
            };
            let batch_stage = turns.iter().find_map(|t| t.0.stage);
            for (k, (turn, frames)) in turns.into_iter().enumerate() {
                let id = self.ids[start + k];
                if let (Some(s), true) = (turn.stage, send) {
                    self.hub.charge_client(s, turn.spent);
                    if !worked.contains(&s) {
                        worked.push(s);
                    }
                }
                if let Some(tamper) = tamper.as_deref_mut() {
                    for (stage, bytes) in frames {
                        any_sent = true;
                        self.hub.hand_over(tamper, id, stage, &bytes)?;
                    }
                }
                if turn.vanished {
                    self.hub.vanish(id, &self.drops, self.mode);
                }
            }
            if let (Some(stage), true) = (batch_stage, send) {
                progress(Progress {
                    stage,
                    done: end,
                    total: n,
                });
            }
            start = end;
        }
        if send {
            // The peak so far, for every stage some client worked on in these turns (the
            // last such reading is the stage's), and for any other stage with senders that
            // has none yet.
            let rss = peak_rss_bytes().unwrap_or(0);
            for st in self.hub.stats.values_mut().filter(|st| {
                st.stage.is_some_and(|s| worked.contains(&s))
                    || (st.senders > 0 && st.peak_rss == 0)
            }) {
                st.peak_rss = rss;
            }
        }
        Ok(any_sent)
    }

    /// Sends `env` to `to` through the codec: counted, watched by `tamper`, and queued for
    /// `to` unless it is no client here or has vanished. Returns the frame's length.
    fn route(
        &mut self,
        to: ClientId,
        env: Envelope<ServerMessage>,
        tamper: &mut dyn Tamper,
    ) -> Result<usize, SimError> {
        let (frame_len, env) = self.through_codec(env)?;
        if let Some(s) = env.message.starts() {
            let st = self.hub.stats_mut(s);
            st.receivers += 1;
            st.bytes_down += frame_len as u64;
        }
        tamper.delivered(to, &env);
        if let Some(slot) = self
            .ids
            .binary_search(&to)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
            .filter(|s| !s.gone)
        {
            slot.inbox.push(env);
        }
        Ok(frame_len)
    }

    /// `env` encoded and decoded: the frame's length and what the recipient gets. Every
    /// server message is its recipient's own (the committed lists are opened around each
    /// client), so each goes through the codec on its own.
    fn through_codec(
        &mut self,
        env: Envelope<ServerMessage>,
    ) -> Result<(usize, Envelope<ServerMessage>), SimError> {
        let bytes = codec::encode_server(&env);
        let decoded = codec::decode_server(&bytes, &self.hub.limits)?;
        Ok((bytes.len(), decoded))
    }
}

impl<E: Accumulate> Hub<E> {
    fn stats_mut(&mut self, s: Stage) -> &mut StageStats {
        self.stats.entry(s).or_insert_with(|| StageStats {
            stage: Some(s),
            ..Default::default()
        })
    }

    fn charge_client(&mut self, stage: Stage, spent: Duration) {
        let st = self.stats_mut(stage);
        st.slowest_client = st.slowest_client.max(spent);
        st.client_total += spent;
        st.workers += 1;
    }

    /// Hands one encoded client frame to the server (decoded as a transport would, then
    /// through `tamper`), timing the server's work for the stage's figures.
    fn hand_over(
        &mut self,
        tamper: &mut dyn Tamper,
        id: ClientId,
        stage: Stage,
        bytes: &[u8],
    ) -> Result<(), SimError> {
        let env = codec::decode_client_or_piece(bytes, &self.limits)?;
        let vector_len = self.limits.vector_len;
        let st = self.stats_mut(stage);
        st.bytes_up += bytes.len() as u64;
        // A streamed input counts its sender once, at its last piece.
        if !matches!(&env.message, ClientMessage::MaskedChunk(r) if r.offset + r.count != vector_len)
        {
            st.senders += 1;
        }
        if let Some(message) = tamper.client_message(id, env.message) {
            let env = Envelope {
                round: env.round,
                message,
            };
            let now = self.now;
            self.timed(stage, |s| s.handle_message(id, env, now));
        }
        Ok(())
    }

    /// Client `id` vanished: in [`DropMode::Disconnect`] its connection closes now.
    fn vanish(&mut self, id: ClientId, drops: &DropSchedule, mode: DropMode) {
        if mode == DropMode::Disconnect {
            let stage = drops.misses(id).unwrap_or(Stage::Unmasking);
            let now = self.now;
            self.timed(stage, |s| s.handle_disconnect(id, now));
        }
    }

    /// Runs one server call and charges its time to `stage` (and, when the call ended the
    /// stage or the round, to the stage's finish).
    fn timed(&mut self, stage: Stage, call: impl FnOnce(&mut Server<E>)) {
        let before = self.server.status();
        let t0 = Instant::now();
        call(&mut self.server);
        let spent = t0.elapsed();
        let changed = self.server.status() != before;
        let st = self.stats_mut(stage);
        st.server += spent;
        if changed {
            st.server_finish = spent;
        }
    }
}

/// One client's turn: it handles what reached it and (given a `sink`) hands what it sends,
/// encoded, to `sink` — unless the schedule says it vanishes first, before handling the
/// message that starts a stage it misses or before sending a message of that stage.
fn take_turn<P: Peer>(
    slot: &mut Slot<P>,
    drops: &DropSchedule,
    limits: &Limits,
    sink: Option<&mut Sink<'_>>,
) -> Result<Turn, SimError> {
    let mut turn = Turn {
        stage: None,
        spent: Duration::ZERO,
        vanished: false,
    };
    let inbox = std::mem::take(&mut slot.inbox);
    if slot.gone {
        return Ok(turn);
    }
    if sink.is_some() {
        slot.fresh = false;
    }
    let id = slot.peer.id();
    let mut in_sink = Duration::ZERO;
    let t0 = Instant::now();
    for env in inbox {
        if let Some(s) = env.message.starts() {
            if !drops.sends(id, s) {
                // It vanishes instead of doing this stage's work.
                slot.gone = true;
                turn.vanished = true;
                break;
            }
            turn.stage = Some(s);
        }
        slot.peer
            .handle_message(env)
            .map_err(|e| SimError::Client(id, e))?;
    }
    if let Some(sink) = sink {
        while !slot.gone {
            let Some(env) = slot.peer.poll_transmit() else {
                break;
            };
            let stage = env.message.stage();
            if !drops.sends(id, stage) {
                slot.gone = true;
                turn.vanished = true;
                break;
            }
            turn.stage.get_or_insert(stage);
            let bytes = codec::encode_client(&env, limits.bits);
            drop(env);
            // Decoding here too keeps the client side of the codec honest.
            debug_assert!(codec::decode_client_or_piece(&bytes, limits).is_ok());
            let t1 = Instant::now();
            sink(stage, bytes)?;
            in_sink += t1.elapsed();
        }
    }
    turn.spent = t0.elapsed().saturating_sub(in_sink);
    Ok(turn)
}

/// Clients per batch: enough to keep every core busy, few enough that the masked vectors in
/// flight (packed, as they travel) stay within about 256 MiB. At 1 the clients go one at a
/// time and stream their pieces straight to the server.
fn batch_size(vector_len: usize, bits: u32) -> usize {
    let per_client = codec::packed_len(vector_len.max(1), bits);
    let by_memory = (256usize << 20) / per_client.max(1);
    by_memory
        .clamp(1, 4 * rayon::current_num_threads().max(1))
        .max(1)
}

/// This process's peak resident memory (Linux `VmHWM`), for the stage figures; `None`
/// elsewhere. (Applications use `secagg::process`.)
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    Some(
        kb.trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()?
            * 1024,
    )
}
