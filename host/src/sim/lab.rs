//! A scriptable malicious server over real clients: the attack laboratory.
//!
//! A [`Lab`] holds n sans-IO clients — honest [`Client`]s, or cheating dealers written from the
//! public cryptography — and an honest [`Server`] that the attacker may use as a message
//! generator, on a [`Network`] (so every message goes through the wire codec). Between the
//! server and the clients sits a [`Tamper`]: it sees each server message before its recipient
//! does and each client message before the server does, and may change, withhold, duplicate
//! or forge them. The
//! attacker can also deliver messages of its own ([`Lab::deliver`]) and run *twins* of
//! clients ([`Lab::twin`]): a twin is the same client rebuilt from the same seed and
//! replayed the same messages, so it is in exactly the same state — which is how the lab
//! models a colluding client that answers the server twice.
//!
//! Everything clients send is kept ([`Lab::sent`]); [`Lab::attempt_rebuild`] then plays the
//! attacker's last move: from that material it tries to rebuild a target's input (its masked
//! vector, its self mask, and every pairwise mask on it), and says how far it got. Tests assert
//! both the honest clients' typed outcomes and that this rebuild fails.
//!
//! The cheating dealers live in `lab/dealer.rs`, the attacker's own copy of the round and its
//! forged lists in `lab/forgery.rs`, and the rebuild in `lab/rebuild.rs`.

mod dealer;
mod forgery;
mod rebuild;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use secagg_engine::CpuEngine;

use dealer::CheatingDealer;
pub use dealer::{DealerFault, NON_CANONICAL_POINT};
pub use forgery::{Forgery, Replica, Reveal, Survivors};
pub use rebuild::Rebuild;

pub use super::network::{Honest, Tamper};
use super::network::{Network, Peer};
use super::{SimConfig, SimError, sim_ca, sim_client, sim_identity_key, sim_server};
use crate::identity::{CaKey, IdentityKey};
use crate::messages::{ClientMessage, Envelope, ServerMessage, SignedKeys};
use crate::server::{Server, ServerEvent, ServerStatus};
use crate::{Client, ClientError, ClientId, ClientStatus};

/// A tamper made of two closures: one for server messages, one for client messages.
pub struct Script<S, C> {
    /// Server → client.
    pub server: S,
    /// Client → server.
    pub client: C,
}

impl<S, C> Tamper for Script<S, C>
where
    S: FnMut(ClientId, ServerMessage, &mut Vec<(ClientId, ServerMessage)>),
    C: FnMut(ClientId, ClientMessage) -> Option<ClientMessage>,
{
    fn server_message(
        &mut self,
        to: ClientId,
        message: ServerMessage,
        out: &mut Vec<(ClientId, ServerMessage)>,
    ) {
        (self.server)(to, message, out)
    }

    fn client_message(&mut self, from: ClientId, message: ClientMessage) -> Option<ClientMessage> {
        (self.client)(from, message)
    }
}

/// A client-message hook that passes everything.
pub type PassClient = fn(ClientId, ClientMessage) -> Option<ClientMessage>;
/// A server-message hook that passes everything.
pub type PassServer = fn(ClientId, ServerMessage, &mut Vec<(ClientId, ServerMessage)>);

/// Client messages pass unchanged.
pub fn pass_client(_: ClientId, m: ClientMessage) -> Option<ClientMessage> {
    Some(m)
}

/// Server messages pass unchanged.
pub fn pass_server(to: ClientId, m: ServerMessage, out: &mut Vec<(ClientId, ServerMessage)>) {
    out.push((to, m));
}

/// A tamper that changes only server messages.
pub fn on_server<S>(server: S) -> Script<S, PassClient>
where
    S: FnMut(ClientId, ServerMessage, &mut Vec<(ClientId, ServerMessage)>),
{
    Script {
        server,
        client: pass_client,
    }
}

/// A tamper that changes only client messages.
pub fn on_client<C>(client: C) -> Script<PassServer, C>
where
    C: FnMut(ClientId, ClientMessage) -> Option<ClientMessage>,
{
    Script {
        server: pass_server,
        client,
    }
}

/// One participant of the lab.
enum Participant {
    Honest(Box<Client<CpuEngine, ChaCha20Rng>>),
    Dealer(Box<CheatingDealer>),
}

impl Peer for Participant {
    fn id(&self) -> ClientId {
        match self {
            Participant::Honest(c) => c.id(),
            Participant::Dealer(d) => d.id,
        }
    }

    fn handle_message(&mut self, envelope: Envelope<ServerMessage>) -> Result<(), ClientError> {
        match self {
            Participant::Honest(c) => c.handle_message(envelope),
            Participant::Dealer(d) => {
                d.handle(envelope);
                Ok(())
            }
        }
    }

    fn poll_transmit(&mut self) -> Option<Envelope<ClientMessage>> {
        match self {
            Participant::Honest(c) => c.poll_transmit(),
            Participant::Dealer(d) => d.outbox.pop_front(),
        }
    }

    fn status(&self) -> ClientStatus {
        match self {
            Participant::Honest(c) => c.status(),
            Participant::Dealer(d) => d.status.clone(),
        }
    }
}

/// The attacker's view of everything.
#[derive(Default)]
struct Records {
    received: BTreeMap<ClientId, Vec<Envelope<ServerMessage>>>,
    sent: Vec<(ClientId, ClientMessage)>,
    events: Vec<ServerEvent>,
}

/// The attacker's tamper, with everything that passes recorded.
struct Recorder<'a> {
    records: &'a mut Records,
    tamper: &'a mut dyn Tamper,
}

impl Tamper for Recorder<'_> {
    fn server_message(
        &mut self,
        to: ClientId,
        message: ServerMessage,
        out: &mut Vec<(ClientId, ServerMessage)>,
    ) {
        self.tamper.server_message(to, message, out);
    }

    fn client_message(&mut self, from: ClientId, message: ClientMessage) -> Option<ClientMessage> {
        self.records.sent.push((from, message.clone()));
        self.tamper.client_message(from, message)
    }

    fn delivered(&mut self, to: ClientId, envelope: &Envelope<ServerMessage>) {
        self.records
            .received
            .entry(to)
            .or_default()
            .push(envelope.clone());
    }

    fn event(&mut self, event: ServerEvent) {
        self.records.events.push(event);
    }
}

/// A tamper that keeps every client message from the server.
struct Keep(Vec<(ClientId, ClientMessage)>);

impl Tamper for Keep {
    fn client_message(&mut self, from: ClientId, message: ClientMessage) -> Option<ClientMessage> {
        self.0.push((from, message));
        None
    }
}

/// The laboratory: clients, an honest server, and the attacker's view of everything.
pub struct Lab {
    cfg: SimConfig,
    ca: CaKey,
    net: Network<CpuEngine, Participant>,
    records: Records,
    inputs: BTreeMap<ClientId, Vec<u32>>,
    twins: Vec<(ClientId, Client<CpuEngine, ChaCha20Rng>)>,
}

impl Lab {
    /// A lab for `cfg`: every client honest, each input drawn from the seed (levels below
    /// 2^b), the server honest and enrolled as `cfg` says.
    pub fn new(cfg: SimConfig) -> Result<Self, SimError> {
        Self::with_dealers(cfg, BTreeMap::new())
    }

    /// A lab in which the clients in `dealers` cheat as given; the others are honest.
    pub fn with_dealers(
        cfg: SimConfig,
        dealers: BTreeMap<ClientId, DealerFault>,
    ) -> Result<Self, SimError> {
        let ca = sim_ca(cfg.seed);
        let server = sim_server(&cfg, &ca, CpuEngine::new(), Duration::ZERO);
        let mut participants = Vec::new();
        let mut inputs = BTreeMap::new();
        let mask = cfg.round.modulus().mask_u32();
        for id in cfg.member_ids() {
            let mut rng = ChaCha20Rng::seed_from_u64(cfg.seed ^ 0x1ab);
            rng.set_stream(u64::from(id.0) + 1);
            let input: Vec<u32> = (0..cfg.round.vector_len())
                .map(|_| rng.next_u32() & mask)
                .collect();
            let p = match dealers.get(&id) {
                Some(fault) => Participant::Dealer(Box::new(CheatingDealer::new(
                    &cfg,
                    &ca,
                    id,
                    fault.clone(),
                    input.clone(),
                ))),
                None => {
                    let mut c = sim_client(&cfg, &ca, id, CpuEngine::new())
                        .map_err(|e| SimError::Client(id, e))?;
                    c.set_quantized_input(input.clone())
                        .map_err(|e| SimError::Client(id, e))?;
                    Participant::Honest(Box::new(c))
                }
            };
            participants.push(p);
            inputs.insert(id, input);
        }
        Ok(Self {
            cfg,
            ca,
            net: Network::new(server, participants),
            records: Records::default(),
            inputs,
            twins: Vec::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// The deployment CA (the attacker does not hold it; tests use it to make other CAs'
    /// certificates look alike, or to check what the clients check).
    pub fn ca(&self) -> &CaKey {
        &self.ca
    }

    /// Client `id`'s identity key, as the lab derived it (for forging what only a colluding
    /// client could sign).
    pub fn identity_key(&self, id: ClientId) -> IdentityKey {
        sim_identity_key(&self.cfg, id)
    }

    /// Client `id`'s true input (levels × weight, then the weight).
    pub fn input(&self, id: ClientId) -> &[u32] {
        self.inputs.get(&id).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Where client `id` stands (a cheating dealer reports `Running` until told otherwise).
    pub fn status(&self, id: ClientId) -> Option<ClientStatus> {
        self.net.peer(id).map(Peer::status)
    }

    /// The honest server's status.
    pub fn server_status(&self) -> ServerStatus {
        self.net.server().status()
    }

    /// The honest server (its output, its dropped list).
    pub fn server(&self) -> &Server<CpuEngine> {
        self.net.server()
    }

    /// The server's events so far.
    pub fn events(&self) -> &[ServerEvent] {
        &self.records.events
    }

    /// Everything clients (and twins) sent, in order.
    pub fn sent(&self) -> &[(ClientId, ClientMessage)] {
        &self.records.sent
    }

    /// Everything client `id` received.
    pub fn received(&self, id: ClientId) -> &[Envelope<ServerMessage>] {
        self.records
            .received
            .get(&id)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Whether client `id` sent a message of this name (see [`ClientMessage::name`]).
    pub fn has_sent(&self, id: ClientId, name: &str) -> bool {
        self.records
            .sent
            .iter()
            .any(|(from, m)| *from == id && m.name() == name)
    }

    /// Delivers `message` to `to` through the codec, as the attacker wishes.
    pub fn deliver(&mut self, to: ClientId, message: ServerMessage) -> Result<(), SimError> {
        let mut recorder = Recorder {
            records: &mut self.records,
            tamper: &mut Honest,
        };
        self.net.deliver(to, message, &mut recorder)
    }

    /// Takes what the clients have queued without passing it to the server (the attacker
    /// keeps it); it is recorded in [`Lab::sent`].
    pub fn flush(&mut self) -> Result<Vec<(ClientId, ClientMessage)>, SimError> {
        let mut keep = Keep(Vec::new());
        let mut recorder = Recorder {
            records: &mut self.records,
            tamper: &mut keep,
        };
        self.net.step_clients(&mut recorder, &|_| {})?;
        Ok(keep.0)
    }

    /// Hands client messages to the honest server, as if they had arrived.
    pub fn to_server(&mut self, messages: Vec<(ClientId, ClientMessage)>) {
        for (from, message) in messages {
            self.net.to_server(from, message);
        }
    }

    /// One exchange: every client's queued messages go (through `tamper`) to the server, and
    /// everything the server sends goes (through `tamper`) to the clients, who handle it.
    /// Returns whether anything moved.
    pub fn step(&mut self, tamper: &mut dyn Tamper) -> Result<bool, SimError> {
        let mut recorder = Recorder {
            records: &mut self.records,
            tamper,
        };
        let moved = self.net.step(&mut recorder, &|_| {})?;
        self.net.settle()?;
        Ok(moved)
    }

    /// Runs until the honest server sends its first messages named `name` (see
    /// [`ServerMessage::name`]), and withholds those: the attacker holds them, to deliver
    /// (or replace) with [`Lab::deliver`]. Messages of other names pass.
    pub fn up_to(&mut self, name: &str) -> Result<Vec<(ClientId, ServerMessage)>, SimError> {
        let mut held = Vec::new();
        let mut idle = 0;
        while held.is_empty() {
            let mut t = on_server(|to, m: ServerMessage, out: &mut Vec<_>| {
                if m.name() == name {
                    held.push((to, m));
                } else {
                    out.push((to, m));
                }
            });
            if self.step(&mut t)? {
                idle = 0;
                continue;
            }
            if idle < 16 && self.net.pass_deadline() {
                idle += 1;
            } else {
                return Err(SimError::Stalled(format!("no {name} message")));
            }
        }
        Ok(held)
    }

    /// Runs until nothing moves; when the server is still waiting, its deadline passes (on
    /// the fake clock) and the exchange goes on.
    pub fn run(&mut self, tamper: &mut dyn Tamper) -> Result<ServerStatus, SimError> {
        let mut recorder = Recorder {
            records: &mut self.records,
            tamper,
        };
        self.net.run(&mut recorder, &|_| {})
    }

    /// Makes a twin of honest client `id`: rebuilt from its seed and replayed the first
    /// `upto` messages `id` received, so it stands where `id` stood then. Returns its handle
    /// for [`Lab::twin_deliver`].
    pub fn twin(&mut self, id: ClientId, upto: usize) -> Result<usize, SimError> {
        let mut twin = sim_client(&self.cfg, &self.ca, id, CpuEngine::new())
            .map_err(|e| SimError::Client(id, e))?;
        twin.set_quantized_input(self.input(id).to_vec())
            .map_err(|e| SimError::Client(id, e))?;
        while twin.poll_transmit().is_some() {}
        let history: Vec<Envelope<ServerMessage>> =
            self.received(id).iter().take(upto).cloned().collect();
        for env in history {
            twin.handle_message(env)
                .map_err(|e| SimError::Client(id, e))?;
            while twin.poll_transmit().is_some() {}
        }
        self.twins.push((id, twin));
        Ok(self.twins.len() - 1)
    }

    /// Hands a twin a message; whatever it sends is recorded as material the attacker holds
    /// (a colluding client answering twice) and returned.
    pub fn twin_deliver(
        &mut self,
        twin: usize,
        message: ServerMessage,
    ) -> Result<Vec<ClientMessage>, SimError> {
        let round = self.cfg.round.round_id();
        let Some((id, client)) = self.twins.get_mut(twin) else {
            return Ok(Vec::new());
        };
        let id = *id;
        client
            .handle_message(Envelope { round, message })
            .map_err(|e| SimError::Client(id, e))?;
        let mut out = Vec::new();
        while let Some(e) = client.poll_transmit() {
            self.records.sent.push((id, e.message.clone()));
            out.push(e.message);
        }
        Ok(out)
    }

    /// Where twin `twin` stands.
    pub fn twin_status(&self, twin: usize) -> Option<ClientStatus> {
        self.twins.get(twin).map(|(_, c)| c.status())
    }

    /// Rebuilds honest client `id` for another configuration (for instance another round
    /// context), before the round starts.
    pub fn reconfigure(&mut self, id: ClientId, round: crate::RoundConfig) -> Result<(), SimError> {
        let cfg = SimConfig {
            round,
            ..self.cfg.clone()
        };
        let mut c = sim_client(&cfg, &self.ca, id, CpuEngine::new())
            .map_err(|e| SimError::Client(id, e))?;
        c.set_quantized_input(self.input(id).to_vec())
            .map_err(|e| SimError::Client(id, e))?;
        self.net.put_peer(Participant::Honest(Box::new(c)));
        Ok(())
    }

    /// Whether the round's output equals the sum of the true inputs of the clients it says it
    /// includes (mod 2^b, weight element included).
    pub fn output_is_exact(&self) -> bool {
        let Some(out) = self.net.server().output() else {
            return false;
        };
        let mask = self.cfg.round.modulus().mask_u32();
        let mut want = vec![0u32; self.cfg.round.vector_len()];
        for id in &out.included {
            for (w, x) in want.iter_mut().zip(self.input(*id)) {
                *w = w.wrapping_add(*x) & mask;
            }
        }
        let m = self.cfg.round.params();
        out.sum[..] == want[..m] && out.total_weight == u64::from(want[m])
    }

    /// Every advertisement a client sent (what the server holds after the join), by sender.
    pub fn advertisements(&self) -> BTreeMap<ClientId, SignedKeys> {
        self.records
            .sent
            .iter()
            .filter_map(|(from, m)| match m {
                ClientMessage::Join(s) => Some((*from, s.clone())),
                _ => None,
            })
            .collect()
    }

    /// Every nonce a client revealed, with the cohort leaves it asked to audit, by sender.
    pub fn reveals(&self) -> BTreeMap<ClientId, Reveal> {
        self.records
            .sent
            .iter()
            .filter_map(|(from, m)| match m {
                ClientMessage::Reveal { nonce, audit } => Some((
                    *from,
                    Reveal {
                        nonce: *nonce,
                        audit: audit.clone(),
                    },
                )),
                _ => None,
            })
            .collect()
    }
}

/// The ids in `set` as a sorted vector (a convenience for scripts).
pub fn ids(set: impl IntoIterator<Item = u32>) -> Vec<ClientId> {
    let s: BTreeSet<ClientId> = set.into_iter().map(ClientId).collect();
    s.into_iter().collect()
}
