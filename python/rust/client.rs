//! The sans-IO `Client` over bytes, with a journal so that a client can be rebuilt from a
//! snapshot when its transport cannot keep the object alive between messages.
//!
//! The journal is the host client's (`secagg_host::client::journal`): its byte format, its
//! replay and its step counter. A snapshot holds the client's secrets: its random seed, its
//! identity key, and the server frames it handled. Rebuilding replays those frames into a
//! client drawn from the same seed, so it reaches the same state; a client that already
//! sent its masked input does not mask or send it again. Keep snapshots where the client's
//! own secrets live.
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
use secagg_engine::CpuEngine;
use secagg_host::ClientStatus;
use secagg_host::client::{Journal, JournaledClient, StaleJournal};
use secagg_host::codec;

use crate::config::{Identity, Policy, RoundConfig};
use crate::errors::{self, InputError, JournalError, ProtocolError, StaleSnapshotError};

type Inner = JournaledClient<CpuEngine>;

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
    let why = match journal.check_step(stored_step(store, &key)?) {
        Ok(()) => return Ok(()),
        Err(StaleJournal::Overtaken { journal, stored }) => format!(
            "{what} is at step {journal}, but this client already acted at step {stored}: \
             resuming it would fork the client (a second signature or a second set of shares \
             for the same round); the round is over for this client"
        ),
        Err(StaleJournal::StoreBehind { journal, stored }) => format!(
            "{what} is at step {journal}, but its step store says {stored}: the store was \
             rolled back or is not the one this client was made with"
        ),
        Err(StaleJournal::Unknown) => format!(
            "the step store has no step for {what} ({key}): its round ended (completed or \
             aborted), or the store is not the one this client was made with"
        ),
        Err(other) => format!("{what}: {other}"),
    };
    Err(StaleSnapshotError::new_err(why))
}

/// One client of one round, sans-IO: feed it the server's frames with `handle`, send what
/// `poll_transmit` returns. The welcome (the server's round configuration) is checked
/// against the client's policy before anything is produced.
#[pyclass(module = "secagg._native")]
pub struct Client {
    inner: Inner,
    bits: u32,
    /// Where the journal's step counter lives (the caller's mapping), if anywhere.
    steps: Option<Py<PyAny>>,
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
    fn around(inner: Inner, steps: Option<Py<PyAny>>) -> Self {
        Self {
            bits: inner.limits().bits,
            inner,
            steps,
        }
    }

    /// Writes the step about to be taken to the store: if the store cannot take it, the
    /// step is not taken (the journal counts it when it is).
    fn record_next_step(&self, py: Python<'_>) -> PyResult<()> {
        if let Some(store) = &self.steps {
            let key = self.inner.journal().step_key();
            store.bind(py).set_item(key, self.inner.next_step())?;
        }
        Ok(())
    }

    /// Once the round is over for this client, its step counter leaves the store.
    fn forget_if_finished(&self, py: Python<'_>) -> PyResult<()> {
        if matches!(self.inner.status(), ClientStatus::Running(_)) {
            return Ok(());
        }
        if let Some(store) = &self.steps {
            match store.bind(py).del_item(self.inner.journal().step_key()) {
                Err(e) if !e.is_instance_of::<PyKeyError>(py) => return Err(e),
                _ => {}
            }
        }
        Ok(())
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
        let mut client = errors::guard(|| {
            let identity = identity.to_client_identity()?;
            let mut rng = secagg_host::round_rng()
                .map_err(|e| errors::SecaggError::new_err(e.to_string()))?;
            let inner = Inner::new(
                identity,
                welcome,
                policy.inner.clone(),
                CpuEngine::new(),
                &mut rng,
            )
            .map_err(errors::journal)?;
            Ok(Self::around(inner, None))
        })?;
        if let Some(store) = steps {
            store.set_item(client.inner.journal().step_key(), 0u64)?;
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
        let journal = Journal::decode(snapshot).map_err(errors::journal)?;
        check_step(&journal, &steps, "this snapshot")?;
        let policy = policy.inner.clone();
        let inner = py.detach(|| {
            errors::guard(|| {
                Inner::resume(journal, policy, CpuEngine::new()).map_err(errors::journal)
            })
        })?;
        Ok(Self::around(inner, Some(steps.unbind())))
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
        Ok(PyBytes::new(py, &self.inner.snapshot()))
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
        check_step(self.inner.journal(), &steps, "this client")?;
        self.steps = Some(steps.unbind());
        Ok(())
    }

    /// How many steps this client acted on (frames handled and inputs set).
    #[getter]
    fn step(&self) -> u64 {
        self.inner.journal().step()
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
        self.record_next_step(py)?;
        let clip = self.inner.client().config().quantization().clip;
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
        let inner = &self.inner;
        let decoded = py.detach(|| inner.decode(frame).map_err(errors::codec))?;
        self.record_next_step(py)?;
        let inner = &mut self.inner;
        let handled = py.detach(|| errors::guard(|| inner.handle(decoded).map_err(errors::client)));
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
        self.inner.client().id().0
    }

    /// The round's configuration as the welcome announced it.
    #[getter]
    fn config(&self) -> RoundConfig {
        RoundConfig {
            inner: self.inner.client().config().clone(),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "Client(client_id={}, status='{}')",
            self.inner.client().id().0,
            status_name(&self.inner.status())
        )
    }
}
