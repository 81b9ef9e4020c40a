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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use curve25519_dalek::Scalar;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use secagg_engine::{Backend, CpuEngine, MaskTerm};

pub use super::network::{Honest, Tamper};
use super::network::{Network, Peer};
use super::{SimConfig, SimError, sim_ca, sim_client, sim_identity_key, sim_server};
use crate::crypto::feldman::{decode_point, opens_to, share_matches};
use crate::crypto::{
    ADVERTISE_DOMAIN, BundlePlaintext, ClientSecrets, Lagrange, ListCommitment, PublicKeys,
    RoundDigest, SessionId, advertisement_message, deal, masking_point, nonce_commitment,
    pairwise_seeds, self_mask_seed, share_points_digest,
};
use crate::identity::{CaKey, IdentityKey};
use crate::messages::{
    ClientMessage, Credential, Envelope, KeyList, SealedBundle, ServerMessage, ShareKind,
    SignedKeys,
};
use crate::server::{Server, ServerEvent, ServerStatus};
use crate::view::RoundView;
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

/// How a cheating dealer cheats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DealerFault {
    /// These holders get a self-mask share off the committed polynomial (the others get
    /// correct ones).
    BadShares(Vec<ClientId>),
    /// The self-mask key β·B commits to another secret than the shares share (so the share
    /// points do not lie on a polynomial through it).
    FalseCommitment,
    /// Deals honestly, then accuses this honest dealer of bad shares, revealing the genuine
    /// bundle key of their pair as its "proof".
    FalseAccusation(ClientId),
    /// Deals honestly, but is an identity the round's self-selection does not admit: it
    /// advertises its genuine ticket, which verifies and loses (a server that seats it
    /// anyway is lying about who is eligible).
    Ineligible,
    /// Publishes the σ and β share points of these holders with a point of order 8 added
    /// (their shares unchanged): compared byte for byte the shares do not match their points;
    /// up to the cofactor they do.
    TorsionPoints(Vec<ClientId>),
    /// Publishes this holder's β share point as a non-canonical encoding
    /// ([`NON_CANONICAL_POINT`]).
    NonCanonicalPoint(ClientId),
    /// Deals σ on a polynomial of degree t (one too many: every share matches its point, but
    /// no t of them rebuild σ), then goes silent, so that the server must rebuild σ to remove
    /// its pairwise masks.
    MaskKeyOfDegreeT,
    /// Deals β on a polynomial of degree t, then plays on as a survivor: masks its input,
    /// signs the survivor list and reveals its own β share, so that the server must rebuild
    /// β. (It reports every bundle it received as unreadable, so it holds no one's shares.)
    SelfKeyOfDegreeT,
}

/// A non-canonical encoding of a curve point: y = p + 3 (p = 2^255 − 19), which decompresses
/// to the point with y = 3. (Every non-canonical encoding of a point — y ≥ p, or x = 0 with the
/// sign bit set — is of a point outside the prime-order subgroup or of the identity, so the
/// rule refuses it twice; it is named for the first rule it breaks.)
pub const NON_CANONICAL_POINT: [u8; 32] = {
    let mut b = [0xff; 32];
    b[0] = 0xf0;
    b[31] = 0x7f;
    b
};

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

/// How far the attacker's rebuild of a target's input got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rebuild {
    /// The target never sent its masked input.
    NoMaskedInput,
    /// Too few checked shares of the target's self-mask secret were revealed.
    SelfMaskHidden {
        /// Checked shares revealed.
        shares: usize,
        /// t.
        need: usize,
    },
    /// The pairwise mask with this partner could not be removed: neither end's mask key was
    /// rebuilt.
    PairwiseHidden {
        /// The partner.
        partner: ClientId,
    },
    /// Every mask was removed; whether the result equals the target's true input.
    Rebuilt {
        /// It equals the input.
        exact: bool,
    },
}

impl Rebuild {
    /// Whether the attacker recovered the input.
    pub fn exposed(&self) -> bool {
        matches!(self, Rebuild::Rebuilt { exact: true })
    }
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

    /// The attacker's last move: rebuild `target`'s input from everything clients sent (its
    /// masked vector, revealed shares, twins' answers). The session is taken from what the
    /// target received, as the server knows it.
    pub fn attempt_rebuild(&self, target: ClientId) -> Rebuild {
        let t = self.cfg.round.threshold();
        let Some(y) = self.records.sent.iter().find_map(|(from, m)| match m {
            ClientMessage::MaskedInput(v) if *from == target => Some(v.clone()),
            ClientMessage::PackedInput(p) if *from == target => p.unpack().ok(),
            _ => None,
        }) else {
            return Rebuild::NoMaskedInput;
        };
        let Some(view) = self.view_of(target) else {
            return Rebuild::NoMaskedInput;
        };
        // Each dealer's commitments and share points, from its share keys (σ·B is its mask
        // key in the key list).
        let mut dealings: BTreeMap<ClientId, Dealing> = BTreeMap::new();
        for (from, m) in &self.records.sent {
            if let ClientMessage::ShareKeys {
                self_key,
                own_point,
                bundles,
                ..
            } = m
            {
                let mut points: BTreeMap<ClientId, ([u8; 32], [u8; 32])> = bundles
                    .iter()
                    .map(|b| (b.peer, (b.mask_point, b.self_point)))
                    .collect();
                points.insert(*from, ([0; 32], *own_point));
                dealings.insert(
                    *from,
                    Dealing {
                        mask_key: view.keys.get(from).copied().unwrap_or([0; 32]),
                        self_key: *self_key,
                        points,
                    },
                );
            }
        }
        let rebuild = |owner: ClientId, kind: ShareKind| -> (Option<Scalar>, usize) {
            let Some(d) = dealings.get(&owner) else {
                return (None, 0);
            };
            let mask = kind == ShareKind::MaskKey;
            let mut shares: BTreeMap<ClientId, Scalar> = BTreeMap::new();
            for (holder, m) in &self.records.sent {
                if let ClientMessage::UnmaskShares(list) = m {
                    for s in list {
                        let point = d.points.get(holder).map(|(m, s)| if mask { m } else { s });
                        if s.owner == owner
                            && s.kind == kind
                            && let Ok(v) = crate::crypto::scalar_from_bytes(&s.value)
                            && point.is_some_and(|p| share_matches(&v, p))
                        {
                            shares.insert(*holder, v);
                        }
                    }
                }
            }
            let have = shares.len();
            if have < t {
                return (None, have);
            }
            let key = decode_point(if mask { &d.mask_key } else { &d.self_key }).ok();
            let holders: Vec<ClientId> = shares.keys().take(t).copied().collect();
            let secret = Lagrange::at_zero(&holders)
                .ok()
                .map(|l| l.combine(shares.values().take(t)))
                .filter(|s| key.is_some_and(|k| opens_to(&k, s)));
            (secret, have)
        };
        let (beta, have) = rebuild(target, ShareKind::SelfMask);
        let Some(beta) = beta else {
            return Rebuild::SelfMaskHidden {
                shares: have,
                need: t,
            };
        };
        let mut terms = vec![MaskTerm::minus(self_mask_seed(&beta, &view.session))];
        let (sigma_target, _) = rebuild(target, ShareKind::MaskKey);
        for v in &view.partners {
            let seed = match (rebuild(*v, ShareKind::MaskKey).0, &sigma_target) {
                (Some(sigma_v), _) => view.point(target).and_then(|p| {
                    pairwise_seeds(&sigma_v, &view.session, *v, &[(target, &p)]).ok()
                }),
                (None, Some(sigma_u)) => view
                    .point(*v)
                    .and_then(|p| pairwise_seeds(sigma_u, &view.session, target, &[(*v, &p)]).ok()),
                (None, None) => None,
            };
            let Some(seed) = seed.and_then(|mut s| s.pop()) else {
                return Rebuild::PairwiseHidden { partner: *v };
            };
            // The target added +PRG(s) when target < v and subtracted it otherwise.
            terms.push(if target < *v {
                MaskTerm::minus(seed)
            } else {
                MaskTerm::plus(seed)
            });
        }
        let mut x = y;
        if CpuEngine::new()
            .apply_masks(
                &mut x,
                0,
                &terms,
                self.cfg.round.prg(),
                self.cfg.round.modulus(),
            )
            .is_err()
        {
            return Rebuild::Rebuilt { exact: false };
        }
        Rebuild::Rebuilt {
            exact: x == self.input(target),
        }
    }

    /// The session as `target` saw it (from its cohort and key list), every member's mask key
    /// (from the advertisements, which the server holds), and its partners (from its mask
    /// request).
    fn view_of(&self, target: ClientId) -> Option<View> {
        let got = self.received(target);
        let cohort = got.iter().rev().find_map(|e| match &e.message {
            ServerMessage::Cohort { cohort, .. } => Some(*cohort),
            _ => None,
        })?;
        let list = got.iter().rev().find_map(|e| match &e.message {
            ServerMessage::KeyList(k) => Some(k),
            _ => None,
        })?;
        let partners = got
            .iter()
            .rev()
            .find_map(|e| match &e.message {
                ServerMessage::MaskRequest(p) => Some(p.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let round = RoundDigest::of(&self.cfg.round);
        let session = RoundView::derive(
            &round,
            &cohort,
            &list.reveals,
            &list.present,
            self.cfg.round.neighbors(),
        )
        .session;
        Some(View {
            session,
            keys: self
                .advertisements()
                .into_iter()
                .map(|(id, k)| (id, k.keys.masking))
                .collect(),
            partners,
        })
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

impl Lab {
    /// The round as the honest server fixed it, rebuilt from what the clients sent (the
    /// advertisements of the members it was shown a cohort by, and their nonces): the
    /// attacker's own copy, to forge survivor sets and unmask requests on. Call it once the
    /// key lists are out.
    pub fn replica(&self) -> Replica {
        let in_cohort = |id: &ClientId| {
            self.received(*id)
                .iter()
                .any(|e| matches!(e.message, ServerMessage::Cohort { .. }))
        };
        let forgery = Forgery::new(
            &self.cfg.round,
            self.advertisements()
                .into_iter()
                .filter(|(id, _)| in_cohort(id)),
        );
        let reveals: BTreeMap<ClientId, Reveal> = self
            .reveals()
            .into_iter()
            .filter(|(id, _)| in_cohort(id))
            .collect();
        let roster = forgery.roster(&reveals);
        Replica { forgery, roster }
    }
}

/// The attacker's copy of the round (see [`Lab::replica`]).
pub struct Replica {
    forgery: Forgery,
    roster: crate::commit::Roster,
}

impl Replica {
    /// The cohort and its key lists.
    pub fn forgery(&self) -> &Forgery {
        &self.forgery
    }

    /// Who is present, the reveals, the session and the ring.
    pub fn roster(&self) -> &crate::commit::Roster {
        &self.roster
    }

    /// A survivor set of `members`, committed by ring position as the server does.
    pub fn survivors(&self, members: &[ClientId]) -> Survivors<'_> {
        let cohort = self.forgery.cohort();
        let indices = members.iter().filter_map(|id| cohort.index_of(*id));
        let set = crate::commit::RingSet::new(
            crate::view::label::SURVIVORS,
            &self.roster.view().ring,
            indices,
        )
        .unwrap_or_else(|_| unreachable!("a lab's survivor set fits a tree"));
        Survivors { replica: self, set }
    }

    /// A survivor list of ring positions committed in the order given, repeats and all.
    pub fn survivors_in_order(&self, positions: Vec<u32>) -> Survivors<'_> {
        let set = crate::commit::RingSet::in_order(crate::view::label::SURVIVORS, positions)
            .unwrap_or_else(|_| unreachable!("a lab's survivor list fits a tree"));
        Survivors { replica: self, set }
    }

    /// A survivor set of ring positions as given (out of range ones too).
    pub fn survivors_at(&self, positions: Vec<u32>) -> Survivors<'_> {
        let set = crate::commit::RingSet::of_positions(crate::view::label::SURVIVORS, positions)
            .unwrap_or_else(|_| unreachable!("a lab's survivor set fits a tree"));
        Survivors { replica: self, set }
    }
}

/// A survivor set the attacker committed to, and the messages that open it.
pub struct Survivors<'a> {
    replica: &'a Replica,
    set: crate::commit::RingSet,
}

impl Survivors<'_> {
    /// Its commitment.
    pub fn commitment(&self) -> ListCommitment {
        self.set.commitment()
    }

    /// Whether leaf `index` can be opened alone (it keeps to the splits above it).
    pub fn opens(&self, index: u32) -> bool {
        let c = self.set.commitment();
        self.set
            .audited(&[index])
            .check(self.set.label(), &c.root, c.len)
            .is_ok()
    }

    /// The survivor-list message for `to`: the set opened around it.
    pub fn list_for(&self, to: ClientId) -> ServerMessage {
        let ring = &self.replica.roster.view().ring;
        let index = self
            .replica
            .forgery
            .cohort()
            .index_of(to)
            .unwrap_or(u32::MAX);
        ServerMessage::SurvivorList {
            survivors: self.set.commitment(),
            opening: self.set.around(ring, index, &[]),
        }
    }

    /// The unmask request for `to`: those of `signatures` (by signer) that are from holders of
    /// a secret `to` holds a share of (within two hops of it), the signers it does not know
    /// opened by identity, the leaves `audit` of the set opened.
    pub fn unmask_for(
        &self,
        to: ClientId,
        signatures: &[(ClientId, [u8; 64])],
        audit: &[u32],
    ) -> ServerMessage {
        let cohort = self.replica.forgery.cohort();
        let ring = &self.replica.roster.view().ring;
        let me = cohort.index_of(to).unwrap_or(u32::MAX);
        let near: BTreeSet<u32> = std::iter::once(me)
            .chain(ring.neighbors(me))
            .flat_map(|v| std::iter::once(v).chain(ring.neighbors(v)))
            .collect();
        let mut by_index: Vec<(u32, [u8; 64])> = signatures
            .iter()
            .filter_map(|(id, s)| Some((cohort.index_of(*id)?, *s)))
            .filter(|(i, _)| near.contains(i))
            .collect();
        by_index.sort_by_key(|(i, _)| *i);
        let known: BTreeSet<u32> = std::iter::once(me).chain(ring.neighbors(me)).collect();
        let strangers: BTreeSet<u32> = by_index
            .iter()
            .map(|(i, _)| *i)
            .filter(|i| !known.contains(i))
            .collect();
        let (identities, proof) = cohort.open(&BTreeSet::new(), &strangers);
        ServerMessage::UnmaskRequest(crate::messages::UnmaskRequest {
            survivors: self.set.commitment(),
            audit: self.set.audited(audit),
            signatures: by_index,
            identities,
            proof,
        })
    }
}

/// A client's revealed nonce and the cohort leaves it audits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reveal {
    /// The nonce.
    pub nonce: [u8; 32],
    /// The leaves it audits.
    pub audit: Vec<u32>,
}

/// A view of the round the attacker builds itself: a cohort of the advertisements it chooses,
/// and the key lists that open it. Built with the honest server's own builders
/// ([`crate::commit`]), so everything in it verifies — unless the attacker put in something a
/// client refuses.
pub struct Forgery {
    round: RoundDigest,
    neighbors: usize,
    cohort: std::sync::Arc<crate::commit::Cohort>,
}

impl Forgery {
    /// The cohort of `advertisements` for the round `config`.
    pub fn new(
        config: &crate::RoundConfig,
        advertisements: impl IntoIterator<Item = (ClientId, SignedKeys)>,
    ) -> Self {
        let cohort = crate::commit::Cohort::new(advertisements)
            .unwrap_or_else(|_| unreachable!("a lab's cohort fits a tree"));
        Self {
            round: RoundDigest::of(config),
            neighbors: config.neighbors(),
            cohort: std::sync::Arc::new(cohort),
        }
    }

    /// The cohort.
    pub fn cohort(&self) -> &crate::commit::Cohort {
        &self.cohort
    }

    /// The cohort message for `to`.
    pub fn welcome(&self, to: ClientId) -> Option<ServerMessage> {
        self.cohort.welcome(self.cohort.index_of(to)?)
    }

    /// Who is present and the committee's reveals, when the members of this cohort revealed
    /// `reveals` (every present committee member's nonce revealed, as an honest server does).
    pub fn roster(&self, reveals: &BTreeMap<ClientId, Reveal>) -> crate::commit::Roster {
        let nonces: BTreeMap<u32, [u8; 32]> = reveals
            .iter()
            .filter_map(|(id, r)| Some((self.cohort.index_of(*id)?, r.nonce)))
            .collect();
        crate::commit::Roster::new(&self.round, self.cohort.clone(), &nonces, self.neighbors)
            .unwrap_or_else(|_| unreachable!("a lab's present set fits a tree"))
    }

    /// The key list for `to` under `roster`, answering the audit in its reveal.
    pub fn key_list(
        &self,
        roster: &crate::commit::Roster,
        reveals: &BTreeMap<ClientId, Reveal>,
        to: ClientId,
    ) -> Option<ServerMessage> {
        let index = self.cohort.index_of(to)?;
        let audit = reveals.get(&to).map(|r| r.audit.as_slice()).unwrap_or(&[]);
        Some(ServerMessage::KeyList(roster.key_list(index, audit)))
    }
}

/// One dealer's public dealing, as the attacker saw it.
struct Dealing {
    mask_key: [u8; 32],
    self_key: [u8; 32],
    points: BTreeMap<ClientId, ([u8; 32], [u8; 32])>,
}

struct View {
    session: SessionId,
    keys: BTreeMap<ClientId, [u8; 32]>,
    partners: Vec<ClientId>,
}

impl View {
    fn point(&self, id: ClientId) -> Option<curve25519_dalek::edwards::EdwardsPoint> {
        self.keys.get(&id).and_then(|k| masking_point(k).ok())
    }
}

/// A client that deals bad shares: it joins and advertises honestly, deals as its fault says,
/// reports nothing on the bundles it receives, and then goes silent — except a
/// [`DealerFault::SelfKeyOfDegreeT`] dealer, which plays on to the unmasking. Written from the
/// public cryptography, as an attacker would.
struct CheatingDealer {
    id: ClientId,
    cfg: SimConfig,
    round: RoundDigest,
    key: IdentityKey,
    fault: DealerFault,
    rng: ChaCha20Rng,
    nonce: [u8; 32],
    /// The cohort's commitment and this dealer's index in it, once known.
    cohort: Option<(ListCommitment, u32)>,
    secrets: ClientSecrets,
    /// The session and its neighbours' keys, once known (for a false accusation).
    session: Option<(SessionId, Vec<(ClientId, PublicKeys)>)>,
    /// Its own share of β, once dealt (revealed by a dealer that plays on).
    own_self_share: Option<Scalar>,
    /// Its input (masked by a dealer that plays on).
    input: Vec<u32>,
    outbox: VecDeque<Envelope<ClientMessage>>,
    status: ClientStatus,
}

impl CheatingDealer {
    fn new(cfg: &SimConfig, ca: &CaKey, id: ClientId, fault: DealerFault, input: Vec<u32>) -> Self {
        let key = sim_identity_key(cfg, id);
        let credential = Credential::certificate(&ca.issue(id, &key.public()));
        let mut rng = ChaCha20Rng::seed_from_u64(cfg.seed ^ 0xbad);
        rng.set_stream(u64::from(id.0));
        let mut nonce = [0u8; 32];
        rng.fill_bytes(&mut nonce);
        let round = RoundDigest::of(&cfg.round);
        let commitment = nonce_commitment(&round, id, &nonce);
        let secrets = ClientSecrets::generate(&mut rng);
        let keys = secrets.public_keys();
        let m = advertisement_message(&round, id, &keys, &commitment);
        let signed = SignedKeys {
            keys,
            commitment,
            credential,
            signature: key.sign(ADVERTISE_DOMAIN, &m),
            ticket: cfg.round.selection().and_then(|s| {
                crate::selection::draw(&key, &ca.public(), s.epoch()).map(|(ticket, _)| ticket)
            }),
        };
        Self {
            id,
            cfg: cfg.clone(),
            round,
            key,
            fault,
            rng,
            nonce,
            cohort: None,
            secrets,
            session: None,
            own_self_share: None,
            input,
            outbox: VecDeque::from([Envelope {
                round: cfg.round.round_id(),
                message: ClientMessage::Join(signed),
            }]),
            status: ClientStatus::Running(crate::Stage::AdvertiseKeys),
        }
    }

    fn send(&mut self, message: ClientMessage) {
        self.outbox.push_back(Envelope {
            round: self.cfg.round.round_id(),
            message,
        });
    }

    fn handle(&mut self, env: Envelope<ServerMessage>) {
        match env.message {
            ServerMessage::Cohort {
                cohort, position, ..
            } => {
                self.cohort = Some((cohort, position));
                self.send(ClientMessage::Reveal {
                    nonce: self.nonce,
                    audit: Vec::new(),
                });
            }
            ServerMessage::KeyList(list) => {
                if let Some(m) = self.deal(&list) {
                    self.send(m);
                }
                self.status = ClientStatus::Running(crate::Stage::ShareCheck);
            }
            // It reports nothing on the others' bundles, or accuses an honest dealer; a dealer
            // that plays on calls every bundle unreadable.
            ServerMessage::ShareBundles { bundles, .. } => {
                let reports = if self.plays_on() {
                    bundles
                        .iter()
                        .map(|b| crate::messages::DealerReport {
                            dealer: b.sender,
                            kind: crate::messages::ReportKind::Unreadable,
                        })
                        .collect()
                } else {
                    self.false_accusation().into_iter().collect()
                };
                self.send(ClientMessage::ShareCheck(reports));
            }
            ServerMessage::MaskRequest(partners) if self.plays_on() => {
                if let Some(m) = self.masked_input(&partners) {
                    self.send(m);
                }
            }
            ServerMessage::SurvivorList { survivors, .. } if self.plays_on() => {
                if let Some((session, _)) = &self.session {
                    let digest = crate::crypto::survivors_digest(session, &survivors);
                    let signature = self.key.sign(crate::crypto::SURVIVORS_DOMAIN, &digest);
                    self.send(ClientMessage::Consistency {
                        signature,
                        audit: Vec::new(),
                    });
                }
            }
            ServerMessage::UnmaskRequest(_) if self.plays_on() => {
                if let Some(share) = self.own_self_share {
                    self.send(ClientMessage::UnmaskShares(vec![
                        crate::messages::RevealedShare {
                            owner: self.id,
                            kind: ShareKind::SelfMask,
                            value: share.to_bytes(),
                        },
                    ]));
                }
            }
            ServerMessage::Aborted(r) => {
                self.status = ClientStatus::Aborted(crate::ProtocolError::ServerAborted(r.clone()));
            }
            _ => {}
        }
    }

    /// Whether it goes on after the share check as a surviving client would.
    fn plays_on(&self) -> bool {
        self.fault == DealerFault::SelfKeyOfDegreeT
    }

    /// Its input under its self mask and one pairwise mask per partner, as an honest client
    /// masks it.
    fn masked_input(&self, partners: &[ClientId]) -> Option<ClientMessage> {
        let (session, list) = self.session.as_ref()?;
        let secrets = &self.secrets;
        let peers: Vec<(ClientId, &PublicKeys)> = list
            .iter()
            .filter(|(id, _)| partners.binary_search(id).is_ok())
            .map(|(id, k)| (*id, k))
            .collect();
        let seeds = secrets.pairwise_seeds(session, self.id, &peers).ok()?;
        let mut terms = vec![MaskTerm::plus(self_mask_seed(
            secrets.self_scalar(),
            session,
        ))];
        for ((v, _), seed) in peers.iter().zip(seeds) {
            terms.push(if self.id < *v {
                MaskTerm::plus(seed)
            } else {
                MaskTerm::minus(seed)
            });
        }
        let mut masked = self.input.clone();
        CpuEngine::new()
            .apply_masks(
                &mut masked,
                0,
                &terms,
                self.cfg.round.prg(),
                self.cfg.round.modulus(),
            )
            .ok()?;
        Some(ClientMessage::MaskedInput(masked))
    }

    /// A report accusing the dealer named by the fault, with the genuine key of their pair.
    fn false_accusation(&self) -> Option<crate::messages::DealerReport> {
        let DealerFault::FalseAccusation(accused) = &self.fault else {
            return None;
        };
        let (session, list) = self.session.as_ref()?;
        let keys = list.iter().find(|(id, _)| id == accused).map(|(_, k)| k)?;
        let key = self
            .secrets
            .bundle_key(session, self.id, *accused, keys)
            .ok()?;
        Some(crate::messages::DealerReport {
            dealer: *accused,
            kind: crate::messages::ReportKind::BadShares {
                bundle_key: key.reveal(),
            },
        })
    }

    /// Deals both secrets to its present neighbours (those the key list opens in full),
    /// cheating as the fault says.
    fn deal(&mut self, list: &KeyList) -> Option<ClientMessage> {
        let (cohort, position) = self.cohort?;
        let secrets = &self.secrets;
        let RoundView { session, ring, .. } = RoundView::derive(
            &self.round,
            &cohort,
            &list.reveals,
            &list.present,
            self.cfg.round.neighbors(),
        );
        let around = ring.neighbors(position);
        let mut keys: Vec<(ClientId, PublicKeys)> = list
            .entries
            .iter()
            .filter(|e| around.binary_search(&e.index).is_ok())
            .filter_map(|e| e.opening.full().map(|s| (e.id, s.keys)))
            .collect();
        keys.sort_by_key(|(id, _)| *id);
        let neighbors: Vec<ClientId> = keys.iter().map(|(id, _)| *id).collect();
        self.session = Some((session, keys.clone()));
        let t = self.cfg.round.threshold();
        let mut holders = neighbors.clone();
        holders.push(self.id);
        // A polynomial of degree t has t + 1 coefficients.
        let degree_t = |yes: bool| if yes { t + 1 } else { t };
        let sigma = deal(
            secrets.mask_scalar(),
            degree_t(self.fault == DealerFault::MaskKeyOfDegreeT),
            &holders,
            &mut self.rng,
        )
        .ok()?;
        let beta = deal(
            secrets.self_scalar(),
            degree_t(self.fault == DealerFault::SelfKeyOfDegreeT),
            &holders,
            &mut self.rng,
        )
        .ok()?;
        let (mask_shares, mut mask_points) = (sigma.shares, sigma.points);
        let (self_shares, mut self_key, mut self_points) =
            (beta.shares, beta.secret_point, beta.points);
        match &self.fault {
            DealerFault::FalseCommitment => {
                let other = crate::crypto::random_scalar(&mut self.rng);
                self_key = crate::crypto::mask_public_key(&other);
            }
            DealerFault::TorsionPoints(victims) => {
                let torsion = curve25519_dalek::constants::EIGHT_TORSION[1];
                let add = |bytes: &mut [u8; 32]| {
                    if let Some(p) =
                        curve25519_dalek::edwards::CompressedEdwardsY(*bytes).decompress()
                    {
                        *bytes = (p + torsion).compress().to_bytes();
                    }
                };
                for (i, h) in holders.iter().enumerate() {
                    if victims.contains(h) {
                        add(&mut mask_points[i]);
                        add(&mut self_points[i]);
                    }
                }
            }
            DealerFault::NonCanonicalPoint(victim) => {
                if let Some(i) = holders.iter().position(|h| h == victim) {
                    self_points[i] = NON_CANONICAL_POINT;
                }
            }
            _ => {}
        }
        let peers: Vec<(ClientId, &PublicKeys)> = keys.iter().map(|(id, k)| (*id, k)).collect();
        let keys = secrets.bundle_keys(&session, self.id, &peers).ok()?;
        let mut bundles = Vec::new();
        for ((peer, _), key) in peers.iter().zip(keys) {
            let i = holders.iter().position(|h| h == peer)?;
            let mut self_share = self_shares[i].value;
            if let DealerFault::BadShares(victims) = &self.fault
                && victims.contains(peer)
            {
                // Off its point, which the server checked lies on the polynomial.
                self_share += Scalar::ONE;
            }
            let pt = BundlePlaintext {
                mask_share: mask_shares[i].value,
                self_share,
            };
            let binding = share_points_digest(&mask_points[i], &self_points[i], &self_key);
            bundles.push(SealedBundle {
                peer: *peer,
                mask_point: mask_points[i],
                self_point: self_points[i],
                ciphertext: key.seal(&session, self.id, *peer, &binding, &pt).ok()?,
            });
        }
        let own = holders.iter().position(|h| *h == self.id)?;
        self.own_self_share = Some(self_shares[own].value);
        Some(ClientMessage::ShareKeys {
            self_key,
            own_point: self_points[own],
            bundles,
            audit: Vec::new(),
        })
    }
}

/// The ids in `set` as a sorted vector (a convenience for scripts).
pub fn ids(set: impl IntoIterator<Item = u32>) -> Vec<ClientId> {
    let s: BTreeSet<ClientId> = set.into_iter().map(ClientId).collect();
    s.into_iter().collect()
}
