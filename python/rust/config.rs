//! `RoundConfig`, `Policy`, `Identity` and `plan`.

use std::path::PathBuf;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use secagg_engine::Prg;
use secagg_host::codec;
use secagg_host::identity::{CaPublicKey, Certificate, IdentityKey};
use secagg_host::plan::{Adversary, PlanRequest};
use secagg_host::policy::Trust;
use secagg_host::{ClientId, ClientIdentity, ClientPolicy, PrivacyFloor, Quantization};

use crate::errors::{self, ConfigError, PlanError};

fn parse_prg(s: &str) -> PyResult<Prg> {
    s.parse::<Prg>()
        .map_err(|e| ConfigError::new_err(format!("prg {s:?}: {e}")))
}

fn parse_adversary(s: &str) -> PyResult<Adversary> {
    s.parse::<Adversary>()
        .map_err(|e| ConfigError::new_err(format!("adversary {s:?}: {e}")))
}

fn context_bytes(context: Option<&[u8]>) -> PyResult<Option<[u8; 32]>> {
    match context {
        None => Ok(None),
        Some(c) => <[u8; 32]>::try_from(c).map(Some).map_err(|_| {
            ConfigError::new_err(format!(
                "context must be 32 bytes (a digest of what the round is about), not {}",
                c.len()
            ))
        }),
    }
}

/// A validated round configuration: who takes part, the graph, the threshold, the modulus,
/// the quantization. The server's side of the round; clients receive it in the welcome.
#[pyclass(module = "secagg._native", frozen)]
#[derive(Clone)]
pub struct RoundConfig {
    pub inner: secagg_host::RoundConfig,
}

#[pymethods]
impl RoundConfig {
    #[new]
    #[pyo3(signature = (clients, params, *, neighbors=None, threshold=None, min_survivors=None,
        bits=32, prg="chacha20", clip=1.0, levels=None, max_weight=1, round_id=None,
        stage_timeout=30.0, context=None, dp=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        clients: usize,
        params: usize,
        neighbors: Option<usize>,
        threshold: Option<usize>,
        min_survivors: Option<usize>,
        bits: u32,
        prg: &str,
        clip: f32,
        levels: Option<u32>,
        max_weight: u32,
        round_id: Option<u64>,
        stage_timeout: f64,
        context: Option<&[u8]>,
        dp: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        if !(stage_timeout.is_finite() && stage_timeout > 0.0) {
            return Err(ConfigError::new_err(format!(
                "stage_timeout must be a positive number of seconds, not {stage_timeout}"
            )));
        }
        let mut b = secagg_host::RoundConfig::builder(clients, params)
            .bits(bits)
            .prg(parse_prg(prg)?)
            .stage_timeout(Duration::from_secs_f64(stage_timeout.min(1e9)));
        if let Some(k) = neighbors {
            b = b.neighbors(k);
        }
        if let Some(t) = threshold {
            b = b.threshold(t);
        }
        if let Some(m) = min_survivors {
            b = b.min_survivors(m);
        }
        let round_id = match round_id {
            Some(id) => id,
            None => {
                let mut r = [0u8; 8];
                getrandom::fill(&mut r).map_err(|e| errors::SecaggError::new_err(e.to_string()))?;
                u64::from_le_bytes(r)
            }
        };
        b = b.round_id(round_id);
        if let Some(c) = context_bytes(context)? {
            b = b.context(c);
        }
        if levels.is_some() || max_weight != 1 || clip != 1.0 {
            let levels = match levels {
                Some(q) => q,
                None => (1..=16u32)
                    .rev()
                    .map(|e| 1u32 << e)
                    .find(|&q| {
                        secagg_host::config::bits_needed(clients, q, max_weight.max(1)) <= bits
                    })
                    .unwrap_or(2),
            };
            b = b.quantization(Quantization {
                clip,
                levels,
                max_weight,
            });
        }
        if let Some(dp) = dp.filter(|d| !d.is_none()) {
            b = b.dp(Some(crate::dp::dp_from_dict(&dp)?));
        }
        b.build()
            .map(|inner| Self { inner })
            .map_err(errors::config)
    }

    /// Decodes the welcome a server sends (`Server.welcome()`).
    #[staticmethod]
    fn from_welcome(welcome: &[u8]) -> PyResult<Self> {
        codec::decode_welcome(welcome)
            .map(|inner| Self { inner })
            .map_err(errors::codec)
    }

    /// The welcome frame that carries this configuration to clients.
    fn welcome<'py>(&self, py: Python<'py>) -> Bound<'py, pyo3::types::PyBytes> {
        pyo3::types::PyBytes::new(py, &codec::encode_welcome(&self.inner))
    }

    #[getter]
    fn clients(&self) -> usize {
        self.inner.clients()
    }
    #[getter]
    fn params(&self) -> usize {
        self.inner.params()
    }
    #[getter]
    fn neighbors(&self) -> usize {
        self.inner.neighbors()
    }
    #[getter]
    fn threshold(&self) -> usize {
        self.inner.threshold()
    }
    #[getter]
    fn min_survivors(&self) -> usize {
        self.inner.min_survivors()
    }
    #[getter]
    fn bits(&self) -> u32 {
        self.inner.modulus().bits()
    }
    #[getter]
    fn prg(&self) -> String {
        self.inner.prg().to_string()
    }
    #[getter]
    fn clip(&self) -> f32 {
        self.inner.quantization().clip
    }
    #[getter]
    fn levels(&self) -> u32 {
        self.inner.quantization().levels
    }
    #[getter]
    fn max_weight(&self) -> u32 {
        self.inner.quantization().max_weight
    }
    #[getter]
    fn round_id(&self) -> u64 {
        self.inner.round_id()
    }
    #[getter]
    fn stage_timeout(&self) -> f64 {
        self.inner.stage_timeout().as_secs_f64()
    }
    #[getter]
    fn context<'py>(&self, py: Python<'py>) -> Bound<'py, pyo3::types::PyBytes> {
        pyo3::types::PyBytes::new(py, self.inner.context())
    }
    /// The round's distributed DP setting (clip, scale, noise, honest, beta), or None.
    #[getter]
    fn dp<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.inner
            .dp()
            .map(|dp| crate::dp::dp_to_dict(py, &dp))
            .transpose()
    }
    /// Whether every client is every other's neighbour (classic SecAgg).
    #[getter]
    fn complete_graph(&self) -> bool {
        self.inner.is_complete_graph()
    }

    fn __repr__(&self) -> String {
        let c = &self.inner;
        let q = c.quantization();
        format!(
            "RoundConfig(clients={}, params={}, neighbors={}, threshold={}, min_survivors={}, bits={}, prg='{}', clip={}, levels={}, max_weight={}, round_id={})",
            c.clients(),
            c.params(),
            c.neighbors(),
            c.threshold(),
            c.min_survivors(),
            c.modulus().bits(),
            c.prg(),
            q.clip,
            q.levels,
            q.max_weight,
            c.round_id()
        )
    }
}

/// A client's own floors for every round it joins; checked against the server's welcome
/// (and again against the real cohort) before anything is sent.
#[pyclass(module = "secagg._native", frozen)]
#[derive(Clone)]
pub struct Policy {
    pub inner: ClientPolicy,
}

#[pymethods]
impl Policy {
    #[new]
    #[pyo3(signature = (*, adversary="semi-malicious", colluders=secagg_host::policy::DEFAULT_COLLUDERS, dropout=0.1,
        security_bits=40, min_cohort=10, bits=(1, 64), prgs=vec!["chacha20".to_string(), "chacha12".to_string()],
        ca=None, context=None, epoch_secs=secagg_host::policy::DEFAULT_EPOCH_SECS, privacy=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        adversary: &str,
        colluders: usize,
        dropout: f64,
        security_bits: u32,
        min_cohort: usize,
        bits: (u32, u32),
        prgs: Vec<String>,
        ca: Option<PathBuf>,
        context: Option<&[u8]>,
        epoch_secs: u64,
        privacy: Option<(f64, f64)>,
    ) -> PyResult<Self> {
        let trust = match ca {
            Some(path) => Trust::Enrolled(CaPublicKey::load(&path).map_err(errors::identity)?),
            None => Trust::Unauthenticated,
        };
        let inner = ClientPolicy {
            adversary: parse_adversary(adversary)?,
            colluders,
            dropout_rate: dropout,
            security_bits,
            min_cohort,
            bits: bits.0..=bits.1,
            prgs: prgs
                .iter()
                .map(|p| parse_prg(p))
                .collect::<PyResult<Vec<_>>>()?,
            trust,
            context: context_bytes(context)?,
            epoch_secs,
            audit: secagg_host::policy::DEFAULT_AUDIT,
            now: None,
            privacy: privacy.map(|(epsilon, delta)| PrivacyFloor { epsilon, delta }),
        }
        .at_system_time();
        inner.validate().map_err(errors::policy)?;
        Ok(Self { inner })
    }

    #[getter]
    fn adversary(&self) -> String {
        self.inner.adversary.to_string()
    }
    #[getter]
    fn enrolled(&self) -> bool {
        matches!(self.inner.trust, Trust::Enrolled(_))
    }
    #[getter]
    fn min_cohort(&self) -> usize {
        self.inner.min_cohort
    }
    #[getter]
    fn colluders(&self) -> usize {
        self.inner.colluders
    }
    /// The moduli this client accepts, as (lowest, highest) b of 2^b, both included.
    #[getter]
    fn bits(&self) -> (u32, u32) {
        (*self.inner.bits.start(), *self.inner.bits.end())
    }
    /// The most ε (at its δ) one round may cost this client, as (epsilon, delta), or None.
    #[getter]
    fn privacy(&self) -> Option<(f64, f64)> {
        self.inner.privacy.map(|f| (f.epsilon, f.delta))
    }

    /// The honest inputs this policy guarantees in any released sum holding this client's
    /// input, for `config`'s round: what a DP round's noise may be sized for at most.
    fn honest_survivors(&self, config: &RoundConfig) -> PyResult<usize> {
        let colluders = self
            .inner
            .colluders_for(&config.inner)
            .map_err(errors::policy)?;
        Ok(self.inner.honest_survivors(&config.inner, colluders))
    }

    /// Checks a configuration against this policy; raises `PolicyError` naming the bound it
    /// fails.
    fn check(&self, config: &RoundConfig) -> PyResult<()> {
        self.inner
            .check_config(&config.inner)
            .map(|_| ())
            .map_err(errors::policy)
    }

    fn __repr__(&self) -> String {
        let p = &self.inner;
        format!(
            "Policy(adversary='{}', colluders={}, dropout={}, security_bits={}, min_cohort={}, bits=({}, {}), enrolled={})",
            p.adversary,
            p.colluders,
            p.dropout_rate,
            p.security_bits,
            p.min_cohort,
            p.bits.start(),
            p.bits.end(),
            matches!(p.trust, Trust::Enrolled(_))
        )
    }
}

/// Who a client is: its id and long-term identity key, with an enrollment certificate from
/// the deployment CA or (honest-but-curious rounds only) self-asserted.
#[pyclass(module = "secagg._native", frozen)]
pub struct Identity {
    pub id: u32,
    pub key: IdentityKey,
    pub certificate: Option<Certificate>,
}

impl Identity {
    pub fn to_client_identity(&self) -> PyResult<ClientIdentity> {
        let key = IdentityKey::from_secret_bytes(&self.key.to_secret_bytes());
        match &self.certificate {
            Some(cert) => ClientIdentity::enrolled(key, *cert).map_err(errors::client),
            None => Ok(ClientIdentity::self_asserted(ClientId(self.id), key)),
        }
    }
}

#[pymethods]
impl Identity {
    /// A fresh self-asserted identity for client `client_id` (honest-but-curious rounds).
    #[staticmethod]
    fn generate(client_id: u32) -> PyResult<Self> {
        let mut rng = secagg_host::round_rng().map_err(errors::identity)?;
        Ok(Self {
            id: client_id,
            key: IdentityKey::generate(&mut rng),
            certificate: None,
        })
    }

    /// An enrolled identity from the files `secagg enroll` writes: the secret key file
    /// (mode 0600), the certificate, and the CA's public key it must verify under.
    #[staticmethod]
    fn load(key_file: PathBuf, certificate_file: PathBuf, ca_file: PathBuf) -> PyResult<Self> {
        let ca = CaPublicKey::load(&ca_file).map_err(errors::identity)?;
        let (id, key) = IdentityKey::load(&key_file).map_err(errors::identity)?;
        let certificate = Certificate::load(&certificate_file, &ca).map_err(errors::identity)?;
        // The pairing is checked by ClientIdentity::enrolled.
        let this = Self {
            id: id.0,
            key,
            certificate: Some(certificate),
        };
        this.to_client_identity()?;
        Ok(this)
    }

    #[getter]
    fn client_id(&self) -> u32 {
        self.id
    }
    #[getter]
    fn enrolled(&self) -> bool {
        self.certificate.is_some()
    }
    /// The enrollment certificate's bytes (public), or None for a self-asserted identity.
    #[getter]
    fn certificate<'py>(&self, py: Python<'py>) -> Option<Bound<'py, pyo3::types::PyBytes>> {
        self.certificate
            .map(|c| pyo3::types::PyBytes::new(py, &c.to_bytes()))
    }

    /// Binds transport node `node` to this identity for the round of `welcome`: a
    /// signature by the identity key that `Server.admit_node` checks (for transports such as
    /// Flower whose nodes have ids of their own). Raises `IdentityError` for a self-asserted
    /// identity.
    fn bind_node<'py>(
        &self,
        py: Python<'py>,
        welcome: &[u8],
        node: u64,
    ) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
        if self.certificate.is_none() {
            return Err(errors::IdentityError::new_err(
                "only an enrolled identity (with a certificate) can bind a node",
            ));
        }
        let signature = crate::binding::sign(&self.key, welcome, node);
        Ok(pyo3::types::PyBytes::new(py, &signature))
    }

    fn __repr__(&self) -> String {
        format!(
            "Identity(client_id={}, enrolled={})",
            self.id,
            self.certificate.is_some()
        )
    }
}

/// The SecAgg+ planner: the smallest neighbour count k and a threshold t meeting the
/// security and correctness targets. Returns a dict (wrapped as `secagg.Plan`).
#[pyfunction]
#[pyo3(signature = (clients, *, dropout=0.1, corrupt=0.05, adversary="semi-malicious",
    security_bits=40, correctness_bits=20, neighbors=None, threshold=None, colluders=None))]
#[allow(clippy::too_many_arguments)]
pub fn plan<'py>(
    py: Python<'py>,
    clients: usize,
    dropout: f64,
    corrupt: f64,
    adversary: &str,
    security_bits: u32,
    correctness_bits: u32,
    neighbors: Option<usize>,
    threshold: Option<usize>,
    colluders: Option<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    let req = PlanRequest {
        clients,
        dropout_rate: dropout,
        corrupt_fraction: corrupt,
        colluders,
        security_bits,
        correctness_bits,
        adversary: parse_adversary(adversary)?,
    };
    let p = match (neighbors, threshold) {
        (None, None) => secagg_host::plan::plan(&req).map_err(|e| match e {
            secagg_host::plan::PlanError::InvalidRequest(_) => ConfigError::new_err(e.to_string()),
            _ => PlanError::new_err(e.to_string()),
        })?,
        (Some(k), Some(t)) => {
            secagg_host::plan::check(&req, k, t).map_err(|e| PlanError::new_err(e.to_string()))?
        }
        _ => {
            return Err(ConfigError::new_err(
                "give both neighbors and threshold (to check a pair), or neither (to plan)",
            ));
        }
    };
    let d = PyDict::new(py);
    d.set_item("clients", clients)?;
    d.set_item("neighbors", p.neighbors)?;
    d.set_item("threshold", p.threshold)?;
    d.set_item("log2_insecurity", p.log2_insecurity)?;
    d.set_item("log2_failure", p.log2_failure)?;
    d.set_item("complete_graph", p.neighbors + 1 >= clients)?;
    d.set_item("adversary", req.adversary.to_string())?;
    Ok(d)
}
