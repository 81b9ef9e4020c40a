//! The sans-IO `Client` over bytes, with a journal so that a client can be rebuilt from a
//! snapshot when its transport cannot keep the object alive between messages.
//!
//! A snapshot holds the client's secrets: its random seed, its identity key, and the server
//! frames it handled. Rebuilding replays those frames into a client drawn from the same seed,
//! so it reaches the same state; a client that already sent its masked input does not mask
//! or send it again. Keep snapshots where the client's own secrets live.
//!
//! A journal never goes backwards. Each step the client acts on (a server frame handled, an
//! input set) bumps a counter that is written, before the step is taken, to a store the
//! caller provides (any mutable mapping from str to int: a dict, a `secagg.StepStore`
//! directory, a Flower ConfigRecord), under a key named by the journal's random id. A restore
//! whose snapshot is not at the stored step is refused: an older snapshot fed other frames
//! than the first time would sign a second survivor list or reveal a second kind of share
//! for the same neighbour. A client that completed or aborted removes its key, so nothing
//! of a finished round can be restored.

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use rand_core::SeedableRng;
use secagg_engine::CpuEngine;
use secagg_host::codec::{self, Limits};
use secagg_host::identity::{Certificate, IdentityKey};
use secagg_host::messages::{Envelope, ServerMessage};
use secagg_host::{ClientStatus, RoundRng};
use zeroize::{Zeroize, Zeroizing};

use crate::config::{Identity, Policy, RoundConfig};
use crate::errors::{
    self, CodecError, InputError, JournalError, ProtocolError, StaleSnapshotError,
};

type Inner = secagg_host::Client<CpuEngine, RoundRng>;

const MAGIC: &[u8; 4] = b"SAJ2";
/// The format before step counters: refused, since nothing says how far such a client got.
const MAGIC_V1: &[u8; 4] = b"SAJ1";
/// Bounds on what a snapshot may claim (it is local state, but still parsed defensively).
const MAX_FRAMES: usize = 64;
const MAX_FRAME: usize = 1 << 30;

/// The journal: enough to rebuild the client exactly, and how far it got.
struct Journal {
    /// Random; names the client's step counter in its store.
    name: [u8; 16],
    /// Steps acted on so far (frames handled and inputs set).
    step: u64,
    seed: Zeroizing<[u8; 32]>,
    id: u32,
    key: Zeroizing<[u8; 32]>,
    certificate: Option<Vec<u8>>,
    welcome: Vec<u8>,
    input_sent: bool,
    frames: Vec<Vec<u8>>,
}

impl Drop for Journal {
    fn drop(&mut self) {
        for f in &mut self.frames {
            f.zeroize();
        }
    }
}

impl Journal {
    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::new());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.name);
        out.extend_from_slice(&self.step.to_le_bytes());
        out.extend_from_slice(&self.seed[..]);
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.key[..]);
        match &self.certificate {
            Some(c) => {
                out.push(1);
                out.extend_from_slice(&(c.len() as u32).to_le_bytes());
                out.extend_from_slice(c);
            }
            None => out.push(0),
        }
        out.extend_from_slice(&(self.welcome.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.welcome);
        out.push(u8::from(self.input_sent));
        out.extend_from_slice(&(self.frames.len() as u32).to_le_bytes());
        for f in &self.frames {
            out.extend_from_slice(&(f.len() as u32).to_le_bytes());
            out.extend_from_slice(f);
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut r = Reader(bytes);
        match r.take(4)? {
            m if m == MAGIC => {}
            m if m == MAGIC_V1 => {
                return Err(
                    "a snapshot from an older secagg without a step counter: it cannot be \
                     restored safely"
                        .into(),
                );
            }
            _ => return Err("not a secagg client snapshot".into()),
        }
        let name = r.array()?;
        let step = u64::from_le_bytes(r.array()?);
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(r.take(32)?);
        let id = u32::from_le_bytes(r.array()?);
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(r.take(32)?);
        let certificate = match r.take(1)?[0] {
            0 => None,
            1 => {
                let len = r.len(4096)?;
                Some(r.take(len)?.to_vec())
            }
            v => return Err(format!("certificate flag {v}")),
        };
        let len = r.len(4096)?;
        let welcome = r.take(len)?.to_vec();
        let input_sent = match r.take(1)?[0] {
            0 => false,
            1 => true,
            v => return Err(format!("input flag {v}")),
        };
        let count = r.len(MAX_FRAMES)?;
        let mut frames = Vec::with_capacity(count);
        for _ in 0..count {
            let len = r.len(MAX_FRAME)?;
            frames.push(r.take(len)?.to_vec());
        }
        if !r.0.is_empty() {
            return Err(format!("{} trailing bytes", r.0.len()));
        }
        Ok(Self {
            name,
            step,
            seed,
            id,
            key,
            certificate,
            welcome,
            input_sent,
            frames,
        })
    }

    /// The key of this journal's step counter in its store.
    fn step_key(&self) -> String {
        let mut key = String::from("secagg-step-");
        for b in self.name {
            key.push_str(&format!("{b:02x}"));
        }
        key
    }
}

/// The step the store holds for `key`, or None when it holds none.
fn stored_step(store: &Bound<'_, PyAny>, key: &str) -> PyResult<Option<u64>> {
    match store.get_item(key) {
        Ok(v) => v.extract::<u64>().map(Some).map_err(|_| {
            JournalError::new_err(format!(
                "the step store holds {} for {key}, not a step count",
                v.repr()
                    .map(|r| r.to_string())
                    .unwrap_or_else(|_| "?".into())
            ))
        }),
        Err(e) if e.is_instance_of::<PyKeyError>(store.py()) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Refuses a journal that is not exactly where its store says the client got to.
fn check_step(journal: &Journal, store: &Bound<'_, PyAny>, what: &str) -> PyResult<()> {
    let key = journal.step_key();
    match stored_step(store, &key)? {
        Some(last) if last == journal.step => Ok(()),
        Some(last) if last > journal.step => Err(StaleSnapshotError::new_err(format!(
            "{what} is at step {}, but this client already acted at step {last}: resuming it \
             would fork the client (a second signature or a second set of shares for the same \
             round); the round is over for this client",
            journal.step
        ))),
        Some(last) => Err(StaleSnapshotError::new_err(format!(
            "{what} is at step {}, but its step store says {last}: the store was rolled back \
             or is not the one this client was made with",
            journal.step
        ))),
        None => Err(StaleSnapshotError::new_err(format!(
            "the step store has no step for {what} ({key}): its round ended (completed or \
             aborted), or the store is not the one this client was made with"
        ))),
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated snapshot".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn len(&mut self, max: usize) -> Result<usize, String> {
        let n = u32::from_le_bytes(self.array()?) as usize;
        if n > max {
            return Err(format!("a length of {n} exceeds {max}"));
        }
        Ok(n)
    }
}

/// One client of one round, sans-IO: feed it the server's frames with `handle`, send what
/// `poll_transmit` returns. The welcome (the server's round configuration) is checked
/// against the client's policy before anything is produced.
#[pyclass(module = "secagg._native")]
pub struct Client {
    inner: Inner,
    limits: Limits,
    bits: u32,
    journal: Journal,
    /// Where the journal's step counter lives (the caller's mapping), if anywhere.
    steps: Option<Py<PyAny>>,
}

fn build(journal: &Journal, policy: &Policy) -> PyResult<(Inner, Limits, u32)> {
    let config = codec::decode_welcome(&journal.welcome).map_err(errors::codec)?;
    let key = IdentityKey::from_secret_bytes(&journal.key);
    let certificate = match &journal.certificate {
        Some(c) => Some(Certificate::from_bytes(c).map_err(errors::identity)?),
        None => None,
    };
    let identity = Identity {
        id: journal.id,
        key,
        certificate,
    }
    .to_client_identity()?;
    let rng = RoundRng::from_seed(*journal.seed);
    let limits = Limits::for_config(&config);
    let bits = config.modulus().bits();
    let inner = Inner::new(
        identity,
        config,
        policy.inner.clone(),
        CpuEngine::new(),
        rng,
    )
    .map_err(errors::client)?;
    Ok((inner, limits, bits))
}

fn shape_of(x: &Bound<'_, PyAny>) -> String {
    x.getattr("shape")
        .and_then(|s| s.str().map(|s| s.to_string()))
        .unwrap_or_else(|_| "?".into())
}

fn type_name(x: &Bound<'_, PyAny>) -> String {
    x.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

fn status_name(s: &ClientStatus) -> String {
    match s {
        ClientStatus::Running(stage) => stage.to_string(),
        ClientStatus::Completed { .. } => "completed".into(),
        ClientStatus::Aborted(_) => "aborted".into(),
    }
}

impl Client {
    /// Counts one step, writing it to the store first: if the store cannot take it, the
    /// step is not taken.
    fn take_step(&mut self, py: Python<'_>) -> PyResult<()> {
        let next = self.journal.step + 1;
        if let Some(store) = &self.steps {
            store.bind(py).set_item(self.journal.step_key(), next)?;
        }
        self.journal.step = next;
        Ok(())
    }

    /// Once the round is over for this client, its step counter leaves the store.
    fn forget_if_finished(&self, py: Python<'_>) -> PyResult<()> {
        if matches!(self.inner.status(), ClientStatus::Running(_)) {
            return Ok(());
        }
        if let Some(store) = &self.steps {
            match store.bind(py).del_item(self.journal.step_key()) {
                Err(e) if !e.is_instance_of::<PyKeyError>(py) => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    fn handle_frame(&mut self, frame: &[u8], env: Envelope<ServerMessage>) -> Result<(), PyErr> {
        self.journal.frames.push(frame.to_vec());
        let r = self.inner.handle_message(env);
        if !self.journal.input_sent
            && matches!(self.inner.status(), ClientStatus::Running(s) if s > secagg_host::Stage::MaskedInput)
        {
            self.journal.input_sent = true;
        }
        r.map_err(errors::client)
    }
}

#[pymethods]
impl Client {
    /// A client for the round announced by `welcome`, as `identity`, under `policy`.
    /// Raises `PolicyError` (nothing is sent) when the round fails the policy.
    ///
    /// `steps` is where the client records the last step it acted on: a mutable mapping
    /// from str to int that outlives the client object, kept where the client's keys live
    /// (a dict for one process, a `secagg.StepStore` directory on durable storage, the
    /// node's state in Flower). It must not be rolled back with the snapshots. A client
    /// without one cannot be snapshotted.
    #[new]
    #[pyo3(signature = (welcome, identity, policy, *, steps=None))]
    fn new(
        welcome: &[u8],
        identity: &Identity,
        policy: &Policy,
        steps: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let mut name = [0u8; 16];
        getrandom::fill(&mut name).map_err(|e| errors::SecaggError::new_err(e.to_string()))?;
        let mut client = errors::guard(|| {
            let mut seed = Zeroizing::new([0u8; 32]);
            getrandom::fill(&mut seed[..])
                .map_err(|e| errors::SecaggError::new_err(e.to_string()))?;
            let journal = Journal {
                name,
                step: 0,
                seed,
                id: identity.id,
                key: identity.key.to_secret_bytes(),
                certificate: identity.certificate.map(|c| c.to_bytes().to_vec()),
                welcome: welcome.to_vec(),
                input_sent: false,
                frames: Vec::new(),
            };
            let (inner, limits, bits) = build(&journal, policy)?;
            Ok(Self {
                inner,
                limits,
                bits,
                journal,
                steps: None,
            })
        })?;
        if let Some(store) = steps {
            store.set_item(client.journal.step_key(), 0u64)?;
            client.steps = Some(store.unbind());
        }
        Ok(client)
    }

    /// Rebuilds a client from `snapshot()` under `policy` (the client's own, given again),
    /// replaying the frames it handled. Its pending output is discarded: it was sent before.
    ///
    /// `steps` is the client's step store (see the constructor). A snapshot that is not at
    /// the step the store holds — an older one, after the client acted on more; one whose
    /// round ended; one the store never saw — raises `StaleSnapshotError` and nothing is
    /// rebuilt.
    #[staticmethod]
    fn restore(
        py: Python<'_>,
        snapshot: &[u8],
        policy: &Policy,
        steps: Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let journal = Journal::decode(snapshot)
            .map_err(|e| CodecError::new_err(format!("client snapshot: {e}")))?;
        check_step(&journal, &steps, "this snapshot")?;
        let mut client = py.detach(|| {
            errors::guard(|| {
                let (mut inner, limits, bits) = build(&journal, policy)?;
                if journal.input_sent {
                    inner.resume_after_input();
                }
                for frame in &journal.frames {
                    let env = codec::decode_server(frame, &limits).map_err(errors::codec)?;
                    inner.handle_message(env).map_err(errors::client)?;
                }
                while inner.poll_transmit().is_some() {}
                Ok(Self {
                    inner,
                    limits,
                    bits,
                    journal,
                    steps: None,
                })
            })
        })?;
        client.steps = Some(steps.unbind());
        Ok(client)
    }

    /// Everything needed to rebuild this client (`Client.restore`). Holds its secrets.
    /// Raises `JournalError` for a client made without a step store.
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        if self.steps.is_none() {
            return Err(JournalError::new_err(
                "a client made without a step store cannot be snapshotted: give \
                 Client(..., steps=...) a mapping kept where the client's keys live",
            ));
        }
        Ok(PyBytes::new(py, &self.journal.encode()))
    }

    /// The client's step store (see the constructor), or None.
    #[getter]
    fn steps(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.steps.as_ref().map(|s| s.clone_ref(py))
    }

    /// Hands the client its step store again (the same store, as a new object: a transport
    /// that reloads its state between messages). Raises `StaleSnapshotError` when the store
    /// is not at this client's step: another copy of the client acted since.
    #[setter]
    fn set_steps(&mut self, steps: Bound<'_, PyAny>) -> PyResult<()> {
        check_step(&self.journal, &steps, "this client")?;
        self.steps = Some(steps.unbind());
        Ok(())
    }

    /// How many steps this client acted on (frames handled and inputs set).
    #[getter]
    fn step(&self) -> u64 {
        self.journal.step
    }

    /// Sets the update (float32, one value per parameter) and its integer weight. It is
    /// clipped to the round's range (values outside are counted and reported back), quantized
    /// with stochastic rounding and multiplied by the weight. Returns how many values were
    /// clipped.
    #[pyo3(signature = (update, weight=1))]
    fn set_input(
        &mut self,
        py: Python<'_>,
        update: &Bound<'_, PyAny>,
        weight: u32,
    ) -> PyResult<usize> {
        let array = update.cast::<PyArray1<f32>>().map_err(|_| {
            let what = match update.getattr("dtype").and_then(|d| d.str()) {
                Ok(d) => format!("an array of {d} with shape {}", shape_of(update)),
                Err(_) => format!("a {}", type_name(update)),
            };
            InputError::new_err(format!(
                "the update must be a 1-D numpy array of float32, not {what} (use numpy.asarray(x, dtype=numpy.float32).ravel())"
            ))
        })?;
        let update: PyReadonlyArray1<'_, f32> = array
            .try_readonly()
            .map_err(|e| InputError::new_err(format!("the update cannot be read: {e}")))?;
        let values = update.as_slice().map_err(|_| {
            InputError::new_err(
                "the update must be a contiguous 1-D float32 array (use numpy.ascontiguousarray)",
            )
        })?;
        self.take_step(py)?;
        let clip = self.inner.config().quantization().clip;
        let inner = &mut self.inner;
        py.detach(|| {
            errors::guard(|| {
                let clipped = values.iter().filter(|v| v.abs() > clip).count();
                inner.set_input(values, weight).map_err(errors::client)?;
                Ok(clipped)
            })
        })
    }

    /// Handles one frame from the server. Raises `ProtocolError` when the frame ended the
    /// round for this client (the server broke the protocol, or aborted), `CodecError` for
    /// bytes that are no frame.
    fn handle(&mut self, py: Python<'_>, frame: &[u8]) -> PyResult<()> {
        let was_aborted = matches!(self.inner.status(), ClientStatus::Aborted(_));
        let limits = self.limits;
        let env = py.detach(|| codec::decode_server(frame, &limits).map_err(errors::codec))?;
        self.take_step(py)?;
        let handled = py.detach(|| errors::guard(|| self.handle_frame(frame, env)));
        self.forget_if_finished(py)?;
        handled?;
        match self.inner.status() {
            ClientStatus::Aborted(e) if !was_aborted => Err(ProtocolError::new_err(e.to_string())),
            _ => Ok(()),
        }
    }

    /// The next frame to send to the server, or None.
    fn poll_transmit<'py>(&mut self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        let env = self.inner.poll_transmit()?;
        let bits = self.bits;
        let bytes = py.detach(|| codec::encode_client(&env, bits));
        Some(PyBytes::new(py, &bytes))
    }

    /// The stage the client waits in ("advertise-keys", …), "completed" or "aborted".
    #[getter]
    fn status(&self) -> String {
        status_name(&self.inner.status())
    }

    /// Why the round ended for this client, if it was aborted.
    #[getter]
    fn error(&self) -> Option<String> {
        match self.inner.status() {
            ClientStatus::Aborted(e) => Some(e.to_string()),
            _ => None,
        }
    }

    /// The number of inputs in the sum, once the server reported the round complete.
    #[getter]
    fn included(&self) -> Option<u32> {
        match self.inner.status() {
            ClientStatus::Completed { included } => Some(included),
            _ => None,
        }
    }

    #[getter]
    fn client_id(&self) -> u32 {
        self.inner.id().0
    }

    /// The round's configuration as the welcome announced it.
    #[getter]
    fn config(&self) -> RoundConfig {
        RoundConfig {
            inner: self.inner.config().clone(),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "Client(client_id={}, status='{}')",
            self.inner.id().0,
            status_name(&self.inner.status())
        )
    }
}
