//! The client's journal: enough to rebuild a [`Client`] exactly when the transport cannot
//! keep it alive between messages (Flower's client mods, a process that restarts).
//!
//! A [`JournaledClient`] is a [`Client`] that records, as it goes, what it takes to rebuild
//! it: the random seed its generator was drawn from, its identity key, the round's welcome,
//! and every server frame it handled. [`JournaledClient::snapshot`] writes that record as
//! bytes; [`JournaledClient::restore`] (or [`Journal::decode`], then
//! [`JournaledClient::resume`]) rebuilds a client from the same seed and replays the frames
//! into it, so it reaches the same state, secrets included, and discards what the replay
//! queued (it was sent the first time). A client that already sent its masked input is
//! rebuilt with [`Client::resume_after_input`]: it neither masks nor sends it again. The
//! input itself is not in the journal: a client rebuilt before it sent its masked input is
//! given its input again at the masked-input stage.
//!
//! The stochastic rounding of [`JournaledClient::set_input`] draws from a stream of its own
//! (stream [`ROUNDING_STREAM`] of the seed's ChaCha20), so the protocol's stream is spent by
//! the frames alone, and a replay draws the same keys and shares whenever the input was set.
//!
//! # Steps
//!
//! A journal never goes backwards. Each step the client acts on (a frame handled, an input
//! set) is counted ([`Journal::step`]); the caller writes the count of the next step
//! ([`JournaledClient::next_step`]) to a store of its own, under
//! [`Journal::step_key`], before it takes the step, and keeps that store apart from the
//! snapshots. A journal that is not at the stored step is refused by [`Journal::check_step`]
//! ([`StaleJournal`]): an older snapshot fed other frames than the first time would sign a
//! second survivor list, or reveal the other kind of share for a neighbour. Replaying the
//! journal's own frames reproduces what was already sent; a second unmask request after the
//! first is refused by the rebuilt client as by the original.
//!
//! # Format
//!
//! Version 2 (written by this build; version 1, without a step counter, is recognised and
//! refused with [`JournalError::NoStepCounter`]). Integers are little-endian:
//!
//! ```text
//! "SAJ2" | name [16] | step u64 | seed [32] | id u32 | identity secret key [32] |
//! certificate flag u8 (0 | 1, then len u32 (= 100), certificate [len]) |
//! welcome len u32 (≤ WELCOME_MAX), welcome [len] | input sent u8 (0 | 1) |
//! frames u32 (≤ MAX_FRAMES), frames × (len u32 (≤ the round's largest server frame), frame [len])
//! ```
//!
//! Every length is checked against its bound and against the bytes present before anything
//! is allocated, and decoding rejects trailing bytes. A snapshot holds the client's secrets
//! (its seed and identity key): keep it where those keys live. The seed, the key, the frames
//! and the snapshot bytes are zeroized when dropped; none of these types implements `Debug`.

use rand_core::{CryptoRng, SeedableRng};
use secagg_engine::Backend;
use zeroize::Zeroizing;

use super::{Client, ClientError, ClientIdentity, ClientStatus, RoundRng};
use crate::codec::{self, Limits};
use crate::config::RoundConfig;
use crate::error::CodecError;
use crate::identity::{CERT_LEN, Certificate, IdentityError, IdentityKey};
use crate::messages::{ClientMessage, Credential, Envelope, ServerMessage};
use crate::policy::ClientPolicy;
use crate::{ClientId, Stage};

/// The journal format this build writes.
pub const VERSION: u8 = 2;
/// Every journal starts with these three bytes, then its version as an ASCII digit.
const MAGIC: &[u8; 3] = b"SAJ";
/// The most frames a journal may hold. A client handles at most seven frames before its
/// round ends, and journals none after.
pub const MAX_FRAMES: usize = 64;
/// The ChaCha20 stream (of the journal's seed) that rounds the input; the protocol's
/// generator is stream 0.
pub const ROUNDING_STREAM: u64 = 1;
/// Bytes of a journal's name.
const NAME_LEN: usize = 16;

/// A journal that cannot be used: bytes that are not one, or a client it cannot rebuild.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// The bytes ended before a field did.
    #[error("truncated snapshot: {field} needs {need} more bytes, {have} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// The bytes do not start as a journal does.
    #[error("not a secagg client snapshot")]
    NotAJournal,
    /// A journal of format version 1, which has no step counter: nothing says how far its
    /// client got, so it is refused.
    #[error("a snapshot from an older secagg without a step counter: it cannot be restored safely")]
    NoStepCounter,
    /// A journal of a format version this build does not know.
    #[error("a client snapshot of format version {0:?}, which this secagg does not read")]
    UnknownVersion(char),
    /// A flag byte that is neither 0 nor 1.
    #[error("{field} flag {value}")]
    BadFlag {
        /// The flag.
        field: &'static str,
        /// Its value.
        value: u8,
    },
    /// A length above its bound.
    #[error("a length of {len} for the {field} exceeds {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Claimed length.
        len: u64,
        /// Bound.
        max: usize,
    },
    /// Bytes remained after the journal.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
    /// The journal's welcome does not decode (or, for [`JournaledClient::new`], the welcome
    /// given does not).
    #[error(transparent)]
    Welcome(CodecError),
    /// The journal's certificate is not one.
    #[error(transparent)]
    Certificate(IdentityError),
    /// A journaled frame does not decode under the round's limits.
    #[error("journaled frame {index}: {source}")]
    Frame {
        /// Its position in the journal.
        index: usize,
        /// Why it does not decode.
        source: CodecError,
    },
    /// The client cannot be built: the round fails the policy given, or the identity does
    /// not fit it.
    #[error(transparent)]
    Refused(ClientError),
}

/// A journal that is not at the step its store holds: resuming it would fork the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StaleJournal {
    /// The client acted on more steps since this journal was taken.
    #[error("the journal is at step {journal}, but the client already acted at step {stored}")]
    Overtaken {
        /// The journal's step.
        journal: u64,
        /// The store's.
        stored: u64,
    },
    /// The store is behind the journal: it was rolled back, or it is another store.
    #[error("the journal is at step {journal}, but its step store says {stored}")]
    StoreBehind {
        /// The journal's step.
        journal: u64,
        /// The store's.
        stored: u64,
    },
    /// The store holds no step for the journal: its round ended, or it is another store.
    #[error("the step store holds no step for this journal")]
    Unknown,
}

/// What it takes to rebuild a client, and how far it got: decoded from a snapshot by
/// [`Journal::decode`], or kept by a [`JournaledClient`]. Holds the client's secrets.
pub struct Journal {
    /// Random; names the client's step counter in its store.
    name: [u8; NAME_LEN],
    /// Steps acted on so far (frames handled and inputs set).
    step: u64,
    seed: Zeroizing<[u8; 32]>,
    id: ClientId,
    key: Zeroizing<[u8; 32]>,
    certificate: Option<[u8; CERT_LEN]>,
    welcome: Vec<u8>,
    /// The welcome, decoded.
    config: RoundConfig,
    /// The client sent its masked input.
    input_sent: bool,
    frames: Vec<Zeroizing<Vec<u8>>>,
}

impl Journal {
    /// Decodes a snapshot ([`JournaledClient::snapshot`]). Checks the format only; the
    /// client is built by [`JournaledClient::resume`].
    pub fn decode(bytes: &[u8]) -> Result<Self, JournalError> {
        let mut r = Reader(bytes);
        let magic: [u8; 4] = r.array("magic")?;
        if magic[..3] != MAGIC[..] {
            return Err(JournalError::NotAJournal);
        }
        match magic[3] {
            b'2' => {}
            b'1' => return Err(JournalError::NoStepCounter),
            v => return Err(JournalError::UnknownVersion(char::from(v))),
        }
        let name = r.array("name")?;
        let step = u64::from_le_bytes(r.array("step")?);
        let seed = Zeroizing::new(r.array("seed")?);
        let id = ClientId(u32::from_le_bytes(r.array("id")?));
        let key = Zeroizing::new(r.array("identity key")?);
        let certificate = if r.flag("certificate")? {
            let len = r.len("certificate", CERT_LEN)?;
            let bytes = r.take("certificate", len)?;
            Certificate::from_bytes(bytes).map_err(JournalError::Certificate)?;
            let mut c = [0u8; CERT_LEN];
            c.copy_from_slice(bytes);
            Some(c)
        } else {
            None
        };
        let len = r.len("welcome", codec::WELCOME_MAX)?;
        let welcome = r.take("welcome", len)?.to_vec();
        let config = codec::decode_welcome(&welcome).map_err(JournalError::Welcome)?;
        let input_sent = r.flag("input")?;
        let count = r.len("frame list", MAX_FRAMES)?;
        let max_frame = Limits::for_config(&config).max_server_frame();
        let mut frames = Vec::with_capacity(count);
        for _ in 0..count {
            let len = r.len("frame", max_frame)?;
            frames.push(Zeroizing::new(r.take("frame", len)?.to_vec()));
        }
        if !r.0.is_empty() {
            return Err(JournalError::TrailingBytes(r.0.len()));
        }
        Ok(Self {
            name,
            step,
            seed,
            id,
            key,
            certificate,
            welcome,
            config,
            input_sent,
            frames,
        })
    }

    /// The journal as bytes, in the current format ([`VERSION`]).
    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let frames: usize = self.frames.iter().map(|f| 4 + f.len()).sum();
        let certificate = self.certificate.map_or(0, |c| 4 + c.len());
        let len = 4
            + NAME_LEN
            + 8
            + 32
            + 4
            + 32
            + 1
            + certificate
            + 4
            + self.welcome.len()
            + 1
            + 4
            + frames;
        // Sized once, so that no copy of the secrets is left behind by a reallocation.
        let mut out = Zeroizing::new(Vec::with_capacity(len));
        out.extend_from_slice(MAGIC);
        out.push(b'0' + VERSION);
        out.extend_from_slice(&self.name);
        out.extend_from_slice(&self.step.to_le_bytes());
        out.extend_from_slice(&self.seed[..]);
        out.extend_from_slice(&self.id.0.to_le_bytes());
        out.extend_from_slice(&self.key[..]);
        match &self.certificate {
            Some(c) => {
                out.push(1);
                put_bytes(&mut out, c);
            }
            None => out.push(0),
        }
        put_bytes(&mut out, &self.welcome);
        out.push(u8::from(self.input_sent));
        out.extend_from_slice(&(self.frames.len() as u32).to_le_bytes());
        for f in &self.frames {
            put_bytes(&mut out, f);
        }
        debug_assert_eq!(out.len(), len);
        out
    }

    /// Steps acted on so far: frames handled and inputs set.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The key under which a step store keeps this client's step counter:
    /// `secagg-step-` and the journal's random name in hex.
    pub fn step_key(&self) -> String {
        let mut key = String::from("secagg-step-");
        for b in self.name {
            key.push(hex_digit(b >> 4));
            key.push(hex_digit(b & 0xf));
        }
        key
    }

    /// Refuses a journal that is not exactly at the step its store holds (`stored`, or
    /// `None` when the store holds none under [`step_key`](Journal::step_key)).
    pub fn check_step(&self, stored: Option<u64>) -> Result<(), StaleJournal> {
        let journal = self.step;
        match stored {
            Some(stored) if stored == journal => Ok(()),
            Some(stored) if stored > journal => Err(StaleJournal::Overtaken { journal, stored }),
            Some(stored) => Err(StaleJournal::StoreBehind { journal, stored }),
            None => Err(StaleJournal::Unknown),
        }
    }

    /// The round's configuration, from the journal's welcome.
    pub fn config(&self) -> &RoundConfig {
        &self.config
    }

    /// The client this journal rebuilds, at the start of its round: its identity, seed and
    /// welcome (the frames are replayed by [`JournaledClient::resume`]).
    fn build<E: Backend>(
        &self,
        policy: ClientPolicy,
        engine: E,
    ) -> Result<Client<E, RoundRng>, JournalError> {
        let key = IdentityKey::from_secret_bytes(&self.key);
        let identity = match &self.certificate {
            Some(c) => {
                let certificate = Certificate::from_bytes(c).map_err(JournalError::Certificate)?;
                ClientIdentity::enrolled(key, certificate).map_err(JournalError::Refused)?
            }
            None => ClientIdentity::self_asserted(self.id, key),
        };
        let rng = RoundRng::from_seed(*self.seed);
        Client::new(identity, self.config.clone(), policy, engine, rng)
            .map_err(JournalError::Refused)
    }

    /// The generator that rounds the input (see the [module docs](self)).
    fn rounding_rng(&self) -> RoundRng {
        let mut rng = RoundRng::from_seed(*self.seed);
        rng.set_stream(ROUNDING_STREAM);
        rng
    }
}

fn hex_digit(v: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(v & 0xf)])
}

/// A length-prefixed field (every field the journal writes fits its `u32` length: each is
/// bounded far below 4 GiB).
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], JournalError> {
        if self.0.len() < n {
            return Err(JournalError::Truncated {
                field,
                need: n,
                have: self.0.len(),
            });
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], JournalError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(field, N)?);
        Ok(a)
    }

    fn flag(&mut self, field: &'static str) -> Result<bool, JournalError> {
        match self.array::<1>(field)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(JournalError::BadFlag { field, value }),
        }
    }

    /// A `u32` length, at most `max`.
    fn len(&mut self, field: &'static str, max: usize) -> Result<usize, JournalError> {
        let len = u32::from_le_bytes(self.array(field)?);
        match usize::try_from(len) {
            Ok(n) if n <= max => Ok(n),
            _ => Err(JournalError::TooLong {
                field,
                len: u64::from(len),
                max,
            }),
        }
    }
}

/// A server frame decoded for a [`JournaledClient`] ([`JournaledClient::decode`]): the
/// bytes it journals and the message it handles.
pub struct Frame<'a> {
    bytes: &'a [u8],
    envelope: Envelope<ServerMessage>,
}

impl Frame<'_> {
    /// The message.
    pub fn envelope(&self) -> &Envelope<ServerMessage> {
        &self.envelope
    }
}

/// A [`Client`] that keeps its [`Journal`], so that it can be snapshotted and rebuilt (see
/// the [module docs](self)). It speaks in frames: server frames in
/// ([`decode`](Self::decode), then [`handle`](Self::handle)), client messages out
/// ([`poll_transmit`](Self::poll_transmit), encoded with [`codec::encode_client`]).
///
/// ```
/// use secagg_engine::CpuEngine;
/// use secagg_host::client::{Journal, JournalError, JournaledClient, StaleJournal};
/// use secagg_host::identity::IdentityKey;
/// use secagg_host::{ClientId, ClientIdentity, ClientPolicy, ClientStatus, RoundConfig, Stage};
/// use secagg_host::{codec, round_rng};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let policy = ClientPolicy {
///     min_cohort: 3,
///     colluders: 1,
///     ..ClientPolicy::curious_unauthenticated()
/// };
/// let welcome = codec::encode_welcome(&RoundConfig::builder(5, 100).build()?);
/// let mut rng = round_rng()?;
/// let me = ClientIdentity::self_asserted(ClientId(0), IdentityKey::generate(&mut rng));
/// let mut client = JournaledClient::new(me, &welcome, policy.clone(), CpuEngine::new(), &mut rng)?;
/// // The step store (here a plain map) learns of each step before the client takes it.
/// let mut store = std::collections::HashMap::new();
/// let key = client.journal().step_key();
/// store.insert(key.clone(), client.journal().step());
/// let join = client.poll_transmit().ok_or("nothing to send")?; // sent to the server
///
/// // The transport cannot keep the object: it keeps the snapshot (it holds the client's
/// // secrets, so it lives where the client's keys do).
/// let snapshot = client.snapshot();
/// drop(client);
///
/// // Later: decode, check the journal against the store, rebuild.
/// let journal = Journal::decode(&snapshot)?;
/// journal.check_step(store.get(&key).copied())?;
/// let client = JournaledClient::resume(journal, policy, CpuEngine::new())?;
/// assert_eq!(client.status(), ClientStatus::Running(Stage::AdvertiseKeys));
///
/// // A journal behind its store, or bytes that are no journal, are typed errors.
/// assert_eq!(
///     client.journal().check_step(Some(3)),
///     Err(StaleJournal::Overtaken { journal: 0, stored: 3 })
/// );
/// assert!(matches!(Journal::decode(&snapshot[..20]), Err(JournalError::Truncated { .. })));
/// # Ok(())
/// # }
/// ```
pub struct JournaledClient<E> {
    client: Client<E, RoundRng>,
    journal: Journal,
    limits: Limits,
    /// Rounds the input, apart from the protocol's generator.
    rounding: RoundRng,
}

impl<E: Backend> JournaledClient<E> {
    /// A client for the round announced by `welcome` (checked against `policy` as
    /// [`Client::new`] does), its seed and its journal's name drawn from `rng`.
    pub fn new<R: CryptoRng + ?Sized>(
        identity: ClientIdentity,
        welcome: &[u8],
        policy: ClientPolicy,
        engine: E,
        rng: &mut R,
    ) -> Result<Self, JournalError> {
        let config = codec::decode_welcome(welcome).map_err(JournalError::Welcome)?;
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut seed[..]);
        let mut name = [0u8; NAME_LEN];
        rng.fill_bytes(&mut name);
        let certificate = match identity.credential {
            Credential::Certificate(c) => Some(c),
            Credential::SelfAsserted(_) => None,
        };
        let journal = Journal {
            name,
            step: 0,
            seed,
            id: identity.id,
            key: identity.key.to_secret_bytes(),
            certificate,
            welcome: welcome.to_vec(),
            config,
            input_sent: false,
            frames: Vec::new(),
        };
        let client = journal.build(policy, engine)?;
        Ok(Self::around(client, journal))
    }

    /// Rebuilds a client from a snapshot: [`Journal::decode`], then
    /// [`resume`](Self::resume). The step is not checked: a caller with a step store uses
    /// those two and [`Journal::check_step`] between them.
    pub fn restore(snapshot: &[u8], policy: ClientPolicy, engine: E) -> Result<Self, JournalError> {
        Self::resume(Journal::decode(snapshot)?, policy, engine)
    }

    /// Rebuilds the client of `journal` under `policy` (the client's own, given again):
    /// drawn from the same seed, the journal's frames replayed into it, what the replay
    /// queued discarded (it was sent before).
    pub fn resume(journal: Journal, policy: ClientPolicy, engine: E) -> Result<Self, JournalError> {
        let mut client = journal.build(policy, engine)?;
        if journal.input_sent {
            client.resume_after_input();
        }
        let limits = Limits::for_config(&journal.config);
        for (index, frame) in journal.frames.iter().enumerate() {
            let envelope = codec::decode_server(frame, &limits)
                .map_err(|source| JournalError::Frame { index, source })?;
            // An error here is the misuse the first incarnation was told of when it handled
            // this frame; the client aborted then, and aborts again now.
            let _ = client.handle_message(envelope);
        }
        while client.poll_transmit().is_some() {}
        Ok(Self::around(client, journal))
    }

    fn around(client: Client<E, RoundRng>, journal: Journal) -> Self {
        Self {
            limits: Limits::for_config(&journal.config),
            rounding: journal.rounding_rng(),
            client,
            journal,
        }
    }

    /// Everything needed to rebuild this client, in the current format. Holds its secrets.
    pub fn snapshot(&self) -> Zeroizing<Vec<u8>> {
        self.journal.encode()
    }

    /// The journal: the step count and the name of its counter.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The step the next [`handle`](Self::handle) or input will be: write it to the step
    /// store before calling either.
    pub fn next_step(&self) -> u64 {
        self.journal.step + 1
    }

    /// The client itself, to read its id, configuration and status.
    pub fn client(&self) -> &Client<E, RoundRng> {
        &self.client
    }

    /// Where the client's round stands.
    pub fn status(&self) -> ClientStatus {
        self.client.status()
    }

    /// The bounds its frames are decoded under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Decodes a frame from the server under the round's limits. Not a step: a frame that
    /// does not decode changes nothing.
    pub fn decode<'a>(&self, bytes: &'a [u8]) -> Result<Frame<'a>, CodecError> {
        let envelope = codec::decode_server(bytes, &self.limits)?;
        Ok(Frame { bytes, envelope })
    }

    /// Handles a decoded frame: one step. The frame is journaled while the round runs (a
    /// finished client changes no more). As [`Client::handle_message`], `Err` is API misuse.
    pub fn handle(&mut self, frame: Frame<'_>) -> Result<(), ClientError> {
        self.journal.step += 1;
        if matches!(self.client.status(), ClientStatus::Running(_)) {
            self.journal
                .frames
                .push(Zeroizing::new(frame.bytes.to_vec()));
        }
        let handled = self.client.handle_message(frame.envelope);
        if matches!(self.client.status(), ClientStatus::Running(s) if s > Stage::MaskedInput) {
            self.journal.input_sent = true;
        }
        handled
    }

    /// Sets the update and its weight, as [`Client::set_input`] (rounding from the journal's
    /// own stream): one step.
    pub fn set_input(&mut self, update: &[f32], weight: u32) -> Result<(), ClientError> {
        self.journal.step += 1;
        self.client
            .set_input_rounded_by(update, weight, &mut self.rounding)
    }

    /// Sets an already-quantized input, as [`Client::set_quantized_input`]: one step.
    pub fn set_quantized_input(&mut self, values: Vec<u32>) -> Result<(), ClientError> {
        self.journal.step += 1;
        self.client.set_quantized_input(values)
    }

    /// Sets an already-quantized input at b > 32, as [`Client::set_quantized_input_wide`]:
    /// one step.
    pub fn set_quantized_input_wide(&mut self, values: Vec<u64>) -> Result<(), ClientError> {
        self.journal.step += 1;
        self.client.set_quantized_input_wide(values)
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Envelope<ClientMessage>> {
        self.client.poll_transmit()
    }
}
