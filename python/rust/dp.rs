//! Distributed differential privacy: the DP plan, the honest survivors a round's noise may
//! rest on, a round's privacy event and the ε spent over rounds (wrapped in Python as
//! `secagg.plan_dp`, `secagg.PrivacyEvent` and `secagg.privacy_spent`).

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use secagg_host::dp::DpConfig;
use secagg_host::dp::accountant::{PrivacyEvent, Rdp};
use secagg_host::plan::{Adversary, DpPlanError, DpRequest, DpTarget};
use secagg_host::{ClientPolicy, RoundConfig as HostConfig};

use crate::config::RoundConfig;
use crate::errors::{ConfigError, PlanError};

/// A DP setting from the dict `plan_dp(...)["dp"]` (or `RoundConfig.dp`) gives: clip,
/// scale, noise, honest, beta.
pub fn dp_from_dict(d: &Bound<'_, PyAny>) -> PyResult<DpConfig> {
    let field = |name: &str| {
        d.get_item(name).map_err(|_| {
            ConfigError::new_err(format!(
                "dp must be a mapping with clip, scale, noise, honest and beta (as plan_dp's \"dp\"); it has no {name:?}"
            ))
        })
    };
    fn bad(name: &'static str) -> impl Fn(PyErr) -> PyErr {
        move |_| ConfigError::new_err(format!("dp[{name:?}] is not a number"))
    }
    Ok(DpConfig {
        clip: field("clip")?.extract::<f32>().map_err(bad("clip"))?,
        scale: field("scale")?.extract::<f64>().map_err(bad("scale"))?,
        noise: field("noise")?.extract::<f64>().map_err(bad("noise"))?,
        honest: field("honest")?.extract::<u32>().map_err(|_| {
            ConfigError::new_err("dp[\"honest\"] must be a whole number of clients")
        })?,
        beta: field("beta")?.extract::<f64>().map_err(bad("beta"))?,
    })
}

/// The DP setting as a dict (the keys [`dp_from_dict`] reads).
pub fn dp_to_dict<'py>(py: Python<'py>, dp: &DpConfig) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("clip", dp.clip)?;
    d.set_item("scale", dp.scale)?;
    d.set_item("noise", dp.noise)?;
    d.set_item("honest", dp.honest)?;
    d.set_item("beta", dp.beta)?;
    Ok(d)
}

fn parse_adversary(s: &str) -> PyResult<Adversary> {
    s.parse::<Adversary>()
        .map_err(|e| ConfigError::new_err(format!("adversary {s:?}: {e}")))
}

/// The honest inputs a released sum of a round holds at least, with `colluders` colluding
/// clients: `T − c`, and against a semi-malicious server at most `k − t + 2` — what a
/// client's policy (`ClientPolicy::honest_survivors`, minimum cohort aside) guarantees, so
/// the noise a server sizes for it is noise every client accepts. Raises `ConfigError`
/// when the shape is not a round, `PlanError` when no honest input is guaranteed.
#[pyfunction]
#[pyo3(signature = (clients, neighbors, threshold, *, min_survivors=None, colluders=1,
    adversary="semi-malicious"))]
pub fn honest_survivors(
    clients: usize,
    neighbors: usize,
    threshold: usize,
    min_survivors: Option<usize>,
    colluders: usize,
    adversary: &str,
) -> PyResult<usize> {
    let mut b = HostConfig::builder(clients, 1)
        .neighbors(neighbors)
        .threshold(threshold);
    if let Some(m) = min_survivors {
        b = b.min_survivors(m);
    }
    let config = b.build().map_err(crate::errors::config)?;
    let policy = ClientPolicy {
        adversary: parse_adversary(adversary)?,
        colluders,
        min_cohort: 0,
        ..ClientPolicy::curious_unauthenticated()
    };
    let h = policy.honest_survivors(&config, colluders);
    if h == 0 {
        return Err(PlanError::new_err(format!(
            "with T = {}, t = {threshold}, k = {neighbors} and {colluders} colluders no honest \
             input is guaranteed in a released sum: DP noise cannot rest on the honest clients \
             (raise the threshold or lower the colluders)",
            config.min_survivors()
        )));
    }
    Ok(h)
}

/// The DP plan (`secagg plan --epsilon/--noise`): the scale, noise and modulus of a round
/// of `params` parameters over `clients` clients whose noise rests on `honest` of them.
/// Returns a dict (wrapped as `secagg.DpPlan`). Raises `ConfigError` for a request out of
/// range, `PlanError` when no scale fits.
#[pyfunction]
#[pyo3(signature = (params, clients, honest, *, epsilon=None, noise=None, delta=1e-6, rounds=1,
    clip=1.0, beta=None, bits=None, max_weight=1, survivors=None, wrap_probability=1e-6))]
#[allow(clippy::too_many_arguments)]
pub fn plan_dp<'py>(
    py: Python<'py>,
    params: usize,
    clients: usize,
    honest: usize,
    epsilon: Option<f64>,
    noise: Option<f64>,
    delta: f64,
    rounds: u32,
    clip: f32,
    beta: Option<f64>,
    bits: Option<u32>,
    max_weight: u32,
    survivors: Option<usize>,
    wrap_probability: f64,
) -> PyResult<Bound<'py, PyDict>> {
    let target = match (epsilon, noise) {
        (Some(e), None) => DpTarget::Epsilon(e),
        (None, Some(z)) => DpTarget::Noise(z),
        _ => {
            return Err(ConfigError::new_err(
                "give epsilon (the target over the rounds) or noise (the noise multiplier), not both or neither",
            ));
        }
    };
    let base = DpRequest::new(target, params, clients);
    let req = DpRequest {
        delta,
        rounds,
        clip,
        honest,
        survivors: survivors.unwrap_or(clients),
        max_weight,
        beta: beta.unwrap_or(base.beta),
        bits,
        wrap_probability,
        ..base
    };
    let p = py
        .detach(|| secagg_host::plan::plan_dp(&req))
        .map_err(|e| match e {
            DpPlanError::Invalid(_) => ConfigError::new_err(e.to_string()),
            _ => PlanError::new_err(e.to_string()),
        })?;
    let d = PyDict::new(py);
    d.set_item("bits", p.bits)?;
    d.set_item("dp", dp_to_dict(py, &p.dp)?)?;
    d.set_item("order", p.order)?;
    d.set_item("rounds", rounds)?;
    d.set_item("within_slack", p.within_slack)?;
    let figures = [
        ("epsilon", p.epsilon),
        ("delta", p.delta),
        ("l2_sensitivity", p.sensitivity.l2),
        ("l1_sensitivity", p.sensitivity.l1),
        ("sampler_delta", p.sampler_delta),
        ("noise_std", p.noise_std),
        ("ideal_std", p.ideal_std),
        ("ideal_epsilon", p.ideal_epsilon),
        ("central_error", p.central_error),
        ("mean_error", p.mean_error),
        ("wrap_probability", p.wrap_probability),
    ];
    for (name, value) in figures {
        d.set_item(name, value)?;
    }
    Ok(d)
}

fn event_of(config: &HostConfig, delta: f64) -> PyResult<(DpConfig, PrivacyEvent)> {
    let dp = config
        .dp()
        .ok_or_else(|| ConfigError::new_err("the round has no differential privacy (dp)"))?;
    let event = PrivacyEvent::of(
        &dp,
        config.params(),
        config.quantization().max_weight,
        config.clients(),
        delta,
    )
    .map_err(|e| ConfigError::new_err(format!("the round's noise: {e}")))?;
    Ok((dp, event))
}

/// One DP round's privacy event, as the server's summary states it: the mechanism, its
/// setting ("dp": clip, scale, per-client noise, honest survivors, beta), the central
/// variance and noise and the sensitivities (integer units), ε of this round alone at `delta`, what the
/// sampler adds to δ, and the RDP curve (order, ε(order)) to compose rounds with. A dict
/// (wrapped as `secagg.PrivacyEvent`). Raises `ConfigError` for a round without DP.
#[pyfunction]
#[pyo3(signature = (config, *, delta))]
pub fn privacy_event<'py>(
    py: Python<'py>,
    config: &RoundConfig,
    delta: f64,
) -> PyResult<Bound<'py, PyDict>> {
    check_delta(delta)?;
    let (dp, e) = event_of(&config.inner, delta)?;
    let d = PyDict::new(py);
    d.set_item("mechanism", "skellam")?;
    d.set_item("epsilon", e.epsilon)?;
    d.set_item("delta", e.delta)?;
    d.set_item("sampler_delta", e.sampler_delta)?;
    d.set_item("dp", dp_to_dict(py, &dp)?)?;
    d.set_item("central_variance", e.central_variance)?;
    d.set_item("noise_std", e.noise_std())?;
    d.set_item("max_weight", config.inner.quantization().max_weight)?;
    d.set_item("l2_sensitivity", e.sensitivity.l2)?;
    d.set_item("l1_sensitivity", e.sensitivity.l1)?;
    let curve = PyList::empty(py);
    for (order, value) in e.rdp.curve() {
        curve.append((order, value))?;
    }
    d.set_item("rdp", curve)?;
    Ok(d)
}

fn check_delta(delta: f64) -> PyResult<()> {
    if delta > 0.0 && delta < 1.0 {
        Ok(())
    } else {
        Err(ConfigError::new_err(format!(
            "delta must lie in (0, 1), got {delta}"
        )))
    }
}

/// ε spent at `delta` by the DP rounds `configs` together (their RDP curves added, then
/// converted), and the order that gives it. Raises `ConfigError` for a round without DP or
/// an empty list.
#[pyfunction]
#[pyo3(signature = (configs, *, delta))]
pub fn privacy_spent(configs: Vec<Bound<'_, RoundConfig>>, delta: f64) -> PyResult<(f64, u32)> {
    check_delta(delta)?;
    let mut total: Option<Rdp> = None;
    for config in &configs {
        let (_, e) = event_of(&config.get().inner, delta)?;
        total = Some(match total {
            None => e.rdp,
            Some(t) => t.then(&e.rdp),
        });
    }
    total
        .map(|t| t.epsilon(delta))
        .ok_or_else(|| ConfigError::new_err("no rounds to account"))
}
