//! The sans-IO `Server` over bytes.

use std::time::{Duration, Instant};

use numpy::IntoPyArray;
use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use secagg_engine::{BackendSpec, Engine};
use secagg_host::codec::{self, Limits};
use secagg_host::error::ProtocolError as RustProtocol;
use secagg_host::identity::CaPublicKey;
use secagg_host::{ClientId, ServerEvent, ServerStatus};

use crate::config::RoundConfig;
use crate::errors::{self, ConfigError, ProtocolError};

/// The server of one round, sans-IO. Tell it who arrived (`join`), hand it each client's
/// frames (`handle`) and disconnects, call `handle_timeout` when `poll_timeout` passes, and
/// send what `poll_transmit` returns. Nothing a client sends raises: a bad frame drops its
/// sender, listed in `dropped`.
#[pyclass(module = "secagg._native")]
pub struct Server {
    inner: secagg_host::Server<Engine>,
    /// The deployment CA of an enrolled round.
    ca: Option<CaPublicKey>,
    limits: Limits,
    started: Instant,
    rejected: Vec<(u32, String)>,
}

impl Server {
    fn now(&self, now: Option<f64>) -> PyResult<Duration> {
        match now {
            None => Ok(self.started.elapsed()),
            Some(t) if t.is_finite() && t >= 0.0 => Ok(Duration::from_secs_f64(t.min(1e12))),
            Some(t) => Err(ConfigError::new_err(format!(
                "now must be a non-negative number of seconds, not {t}"
            ))),
        }
    }

    fn drain_events(&mut self) {
        while let Some(e) = self.inner.poll_event() {
            match e {
                ServerEvent::ClientDropped(d) => {
                    log::info!("client {} dropped at {}: {}", d.client, d.stage, d.reason)
                }
                ServerEvent::MessageRejected { client, reason } => {
                    log::warn!("refused a message from client {client}: {reason}");
                    if self.rejected.len() < 1024 {
                        self.rejected.push((client.0, reason.to_string()));
                    }
                }
                ServerEvent::Aborted { reason } => log::warn!("round aborted: {reason}"),
                _ => {}
            }
        }
    }
}

#[pymethods]
impl Server {
    /// A server for `config`. `backend` is "cpu", "gpu", "gpu:N" (adapter N), "auto", or
    /// several engines separated by commas ("cpu,cpu", "gpu:0,gpu:1"), each holding its own
    /// coordinate range of the sum; `ca` is the path of the
    /// deployment CA's public key (clients must then hold certificates from it). Times
    /// (`now`) are seconds on any monotonic clock the caller likes, starting at `now`;
    /// omitted, the server's own clock since creation is used.
    #[new]
    #[pyo3(signature = (config, *, backend="cpu", ca=None, now=None))]
    fn new(
        py: Python<'_>,
        config: &RoundConfig,
        backend: &str,
        ca: Option<std::path::PathBuf>,
        now: Option<f64>,
    ) -> PyResult<Self> {
        let spec: BackendSpec = backend
            .parse()
            .map_err(|e| ConfigError::new_err(format!("backend {backend:?}: {e}")))?;
        let engine = py.detach(|| errors::guard(|| Engine::open(&spec).map_err(errors::engine)))?;
        let start = match now {
            Some(t) if t.is_finite() && t >= 0.0 => Duration::from_secs_f64(t),
            Some(t) => {
                return Err(ConfigError::new_err(format!(
                    "now must be a non-negative number of seconds, not {t}"
                )));
            }
            None => Duration::ZERO,
        };
        let cfg = config.inner.clone();
        let ca = match ca {
            Some(path) => Some(CaPublicKey::load(&path).map_err(errors::identity)?),
            None => None,
        };
        let inner = match ca {
            Some(ca) => secagg_host::Server::enrolled(cfg.clone(), ca, engine, start),
            None => secagg_host::Server::new(cfg.clone(), engine, start),
        };
        Ok(Self {
            inner,
            ca,
            limits: Limits::for_config(&cfg),
            started: Instant::now() - start,
            rejected: Vec::new(),
        })
    }

    /// The welcome frame every client needs first (the round's configuration).
    fn welcome<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &codec::encode_welcome(self.inner.config()))
    }

    /// The round's configuration.
    #[getter]
    fn config(&self) -> RoundConfig {
        RoundConfig {
            inner: self.inner.config().clone(),
        }
    }

    /// The engine doing the vector work.
    #[getter]
    fn engine(&self) -> String {
        use secagg_engine::Backend;
        self.inner.engine().describe()
    }

    /// Client `client` has arrived (its transport is open).
    #[pyo3(signature = (client, now=None))]
    fn join(&mut self, client: u32, now: Option<f64>) -> PyResult<()> {
        let now = self.now(now)?;
        self.inner.handle_join(ClientId(client), now);
        self.drain_events();
        Ok(())
    }

    /// One frame from `client`. A frame that does not decode, or breaks the protocol, drops
    /// its sender; returns False in that case (see `dropped`), True otherwise.
    #[pyo3(signature = (client, frame, now=None))]
    fn handle(
        &mut self,
        py: Python<'_>,
        client: u32,
        frame: &[u8],
        now: Option<f64>,
    ) -> PyResult<bool> {
        let now = self.now(now)?;
        let id = ClientId(client);
        let before = self.inner.dropped().len();
        let limits = self.limits;
        let inner = &mut self.inner;
        py.detach(|| {
            errors::guard(|| {
                match codec::decode_client(frame, &limits) {
                    Ok(env) => inner.handle_message(id, env, now),
                    Err(e) => inner.misbehaved(id, RustProtocol::Codec(e), now),
                }
                Ok(())
            })
        })?;
        self.drain_events();
        Ok(!self.inner.dropped()[before..]
            .iter()
            .any(|d| d.client == id))
    }

    /// The client id transport node `node` joins an enrolled round under: the id of
    /// `certificate`, once the certificate verifies under the round's CA and `signature`
    /// (from `Identity.bind_node`) binds it to `node` for this round. Raises
    /// `IdentityError` naming what failed (and `ConfigError` for a round without a CA);
    /// the caller then leaves the node out. Admitting does not join: call `join` with the
    /// id returned, once per id.
    fn admit_node(&self, node: u64, certificate: &[u8], signature: &[u8]) -> PyResult<u32> {
        let Some(ca) = &self.ca else {
            return Err(ConfigError::new_err(
                "admit_node needs an enrolled round (Server(..., ca=...))",
            ));
        };
        let welcome = codec::encode_welcome(self.inner.config());
        crate::binding::verify(ca, &welcome, node, certificate, signature)
            .map(|id| id.0)
            .map_err(|why| errors::IdentityError::new_err(format!("node {node}: {why}")))
    }

    /// `client`'s transport closed.
    #[pyo3(signature = (client, now=None))]
    fn disconnect(&mut self, py: Python<'_>, client: u32, now: Option<f64>) -> PyResult<()> {
        let now = self.now(now)?;
        let inner = &mut self.inner;
        py.detach(|| {
            errors::guard(|| {
                inner.handle_disconnect(ClientId(client), now);
                Ok(())
            })
        })?;
        self.drain_events();
        Ok(())
    }

    /// Call when `poll_timeout()` has passed: the clients the stage still waits for are
    /// dropped and the round moves on (or aborts).
    #[pyo3(signature = (now=None))]
    fn handle_timeout(&mut self, py: Python<'_>, now: Option<f64>) -> PyResult<()> {
        let now = self.now(now)?;
        let inner = &mut self.inner;
        py.detach(|| {
            errors::guard(|| {
                inner.handle_timeout(now);
                Ok(())
            })
        })?;
        self.drain_events();
        Ok(())
    }

    /// When the current stage's deadline passes (seconds, on the server's clock), or None.
    fn poll_timeout(&self) -> Option<f64> {
        self.inner.poll_timeout().map(|d| d.as_secs_f64())
    }

    /// The next frame to send, as (client, bytes), or None.
    fn poll_transmit<'py>(&mut self, py: Python<'py>) -> Option<(u32, Bound<'py, PyBytes>)> {
        let (to, env) = self.inner.poll_transmit()?;
        let bytes = py.detach(|| codec::encode_server(&env));
        Some((to.0, PyBytes::new(py, &bytes)))
    }

    /// The stage the round is in ("join", "advertise-keys", …), "completed" or "aborted".
    #[getter]
    fn status(&self) -> String {
        match self.inner.status() {
            ServerStatus::Running(s) => s.to_string(),
            ServerStatus::Completed => "completed".into(),
            ServerStatus::Aborted(_) => "aborted".into(),
        }
    }

    /// Why the round aborted, if it did.
    #[getter]
    fn error(&self) -> Option<String> {
        match self.inner.status() {
            ServerStatus::Aborted(r) => Some(r.to_string()),
            _ => None,
        }
    }

    /// Every client dropped so far: dicts with client, stage and reason.
    #[getter]
    fn dropped<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for d in self.inner.dropped() {
            let item = PyDict::new(py);
            item.set_item("client", d.client.0)?;
            item.set_item("stage", d.stage.to_string())?;
            item.set_item("reason", d.reason.to_string())?;
            list.append(item)?;
        }
        Ok(list)
    }

    /// Messages refused without dropping their sender (replays, late messages): (client,
    /// reason), at most the first 1024.
    #[getter]
    fn rejected(&self) -> Vec<(u32, String)> {
        self.rejected.clone()
    }

    /// The round's result once it completed, as a dict: `sum` (float32, Σ w·x dequantized),
    /// `mean` (float32, Σ w·x / Σ w), `total_weight`, `included` (client ids), `mask_terms`.
    /// Raises `ProtocolError` when the round has not completed.
    fn result<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let Some(out) = self.inner.output() else {
            return Err(ProtocolError::new_err(match self.inner.status() {
                ServerStatus::Aborted(r) => format!("the round aborted: {r}"),
                s => format!("the round has not completed (status: {s:?})"),
            }));
        };
        let config = self.inner.config();
        let (sum, mean) = py.detach(|| (out.dequantized_sum(config), out.weighted_mean(config)));
        let d = PyDict::new(py);
        let sum: Bound<'py, PyArray1<f32>> = sum.into_pyarray(py);
        let mean: Bound<'py, PyArray1<f32>> = mean.into_pyarray(py);
        d.set_item("sum", sum)?;
        d.set_item("mean", mean)?;
        d.set_item("total_weight", out.total_weight)?;
        d.set_item(
            "included",
            out.included.iter().map(|c| c.0).collect::<Vec<u32>>(),
        )?;
        d.set_item("mask_terms", out.mask_terms)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "Server(clients={}, params={}, status='{}')",
            self.inner.config().clients(),
            self.inner.config().params(),
            self.status()
        )
    }
}
