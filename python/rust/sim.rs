//! `simulate`: one in-memory round with a dropout schedule, as `secagg simulate` runs it.

use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use secagg_engine::{BackendSpec, Engine, Prg};
use secagg_host::plan::{self, Adversary, PlanRequest};
use secagg_host::sim::{self, DropMode, DropSchedule, SimConfig};
use secagg_host::{ClientPolicy, Quantization, RoundConfig, Stage};

use crate::errors::{self, ConfigError};

fn parse<T: std::str::FromStr>(what: &str, s: &str) -> PyResult<T>
where
    T::Err: std::fmt::Display,
{
    s.parse::<T>()
        .map_err(|e| ConfigError::new_err(format!("{what} {s:?}: {e}")))
}

/// Runs one round in memory: `clients` clients with random updates of `params` values
/// (drawn from `seed`), a fraction `dropout` of them leaving before `dropout_stage`, and
/// checks the server's sum against the plaintext sum of the included clients. Returns a dict
/// (wrapped as `secagg.SimulationResult`).
#[pyfunction]
#[pyo3(signature = (clients=100, params=10_000, *, neighbors=None, threshold=None,
    dropout=0.1, dropout_stage="masked-input", silent=false, corrupt=0.05,
    adversary="semi-malicious", unauthenticated=false, backend="cpu", prg="chacha20",
    bits=32, clip=1.0, levels=None, max_weight=1, seed=None))]
#[allow(clippy::too_many_arguments)]
pub fn simulate<'py>(
    py: Python<'py>,
    clients: usize,
    params: usize,
    neighbors: Option<usize>,
    threshold: Option<usize>,
    dropout: f64,
    dropout_stage: &str,
    silent: bool,
    corrupt: f64,
    adversary: &str,
    unauthenticated: bool,
    backend: &str,
    prg: &str,
    bits: u32,
    clip: f32,
    levels: Option<u32>,
    max_weight: u32,
    seed: Option<u64>,
) -> PyResult<Bound<'py, PyDict>> {
    if !(0.0..=1.0).contains(&dropout) {
        return Err(ConfigError::new_err(format!(
            "dropout {dropout} must be a fraction in [0, 1]"
        )));
    }
    let stage: Stage = parse("dropout_stage", dropout_stage)?;
    if stage == Stage::Join {
        return Err(ConfigError::new_err(
            "dropout_stage: a client that never joins is not in the round; use a later stage",
        ));
    }
    let adversary: Adversary = parse("adversary", adversary)?;
    if unauthenticated && adversary != Adversary::Curious {
        return Err(ConfigError::new_err(
            "unauthenticated needs adversary='curious': without enrolled identities a lying server can substitute every key",
        ));
    }
    let prg: Prg = parse("prg", prg)?;
    let spec: BackendSpec = parse("backend", backend)?;
    let seed = match seed {
        Some(s) => s,
        None => {
            let mut r = [0u8; 8];
            getrandom::fill(&mut r).map_err(|e| errors::SecaggError::new_err(e.to_string()))?;
            u64::from_le_bytes(r)
        }
    };
    let colluders = (corrupt * clients as f64 - 1e-6).ceil().max(0.0) as usize;
    let req = PlanRequest {
        clients,
        dropout_rate: dropout.min(0.99),
        corrupt_fraction: corrupt,
        colluders: Some(colluders),
        adversary,
        ..PlanRequest::default()
    };
    let (k, t) = match (neighbors, threshold) {
        (Some(k), Some(t)) => (k, t),
        (None, t) => {
            let p =
                plan::plan(&req).map_err(|e| crate::errors::PlanError::new_err(e.to_string()))?;
            (p.neighbors, t.unwrap_or(p.threshold))
        }
        (Some(k), None) => {
            let k = k.min(clients.saturating_sub(1));
            let t = (2.min(k)..=k)
                .find(|&t| match plan::check(&req, k, t) {
                    Ok(_) => true,
                    Err(e) => !e.is_security(),
                })
                .ok_or_else(|| {
                    ConfigError::new_err(format!(
                        "no threshold makes k = {k} secure against a {adversary} server; raise neighbors or leave it to the planner"
                    ))
                })?;
            (k, t)
        }
    };
    let mut builder = RoundConfig::builder(clients, params)
        .neighbors(k)
        .threshold(t)
        .bits(bits)
        .prg(prg)
        .round_id(seed);
    if levels.is_some() || max_weight != 1 || clip != 1.0 {
        let fit = (1..=16u32)
            .rev()
            .map(|e| 1u32 << e)
            .find(|&q| secagg_host::config::bits_needed(clients, q, max_weight.max(1)) <= bits)
            .unwrap_or(2);
        builder = builder.quantization(Quantization {
            clip,
            levels: levels.unwrap_or(fit),
            max_weight,
        });
    }
    let round = builder.build().map_err(errors::config)?;
    let cfg = SimConfig {
        round: round.clone(),
        seed,
        drops: DropSchedule::random(clients, dropout, stage, seed),
        mode: if silent {
            DropMode::Silent
        } else {
            DropMode::Disconnect
        },
        random_weights: max_weight > 1,
        enrolled: !unauthenticated,
        policy: ClientPolicy {
            adversary,
            colluders,
            dropout_rate: dropout.min(0.99),
            min_cohort: clients.saturating_sub(colluders).clamp(3, 10),
            prgs: vec![Prg::ChaCha20, Prg::ChaCha12, Prg::ChaCha8],
            ..ClientPolicy::curious_unauthenticated()
        },
        members: None,
    };
    let report = py.detach(|| {
        errors::guard(|| {
            let engine = Engine::open(&spec).map_err(errors::engine)?;
            let describe = secagg_engine::Backend::describe(&engine);
            sim::run(&cfg, engine, &|_| {})
                .map(|r| (r, describe))
                .map_err(|e| errors::SecaggError::new_err(e.to_string()))
        })
    })?;
    let (report, engine) = report;
    let d = PyDict::new(py);
    d.set_item("clients", clients)?;
    d.set_item("params", params)?;
    d.set_item("neighbors", round.neighbors())?;
    d.set_item("threshold", round.threshold())?;
    d.set_item("bits", round.modulus().bits())?;
    d.set_item("levels", round.quantization().levels)?;
    d.set_item("seed", seed)?;
    d.set_item("engine", engine)?;
    d.set_item("dropped", cfg.drops.len())?;
    d.set_item("wall_s", report.wall.as_secs_f64())?;
    match &report.outcome {
        Ok(out) => {
            d.set_item("completed", true)?;
            d.set_item("error", py.None())?;
            d.set_item(
                "included",
                out.included.iter().map(|c| c.0).collect::<Vec<u32>>(),
            )?;
            d.set_item("total_weight", out.total_weight)?;
            d.set_item("mean", out.weighted_mean(&round).into_pyarray(py))?;
            d.set_item("sum", out.dequantized_sum(&round).into_pyarray(py))?;
        }
        Err(why) => {
            d.set_item("completed", false)?;
            d.set_item("error", why.to_string())?;
            d.set_item("included", Vec::<u32>::new())?;
            d.set_item("total_weight", 0)?;
            d.set_item("mean", py.None())?;
            d.set_item("sum", py.None())?;
        }
    }
    match &report.check {
        Some(c) => {
            d.set_item("check_passed", c.passed())?;
            d.set_item("max_error", c.max_error)?;
            d.set_item("error_bound", c.bound)?;
        }
        None => {
            d.set_item("check_passed", false)?;
            d.set_item("max_error", py.None())?;
            d.set_item("error_bound", py.None())?;
        }
    }
    let stages = PyList::empty(py);
    for s in &report.stages {
        let item = PyDict::new(py);
        item.set_item("stage", s.stage.map(|s| s.to_string()))?;
        item.set_item("server_s", s.server.as_secs_f64())?;
        item.set_item("slowest_client_s", s.slowest_client.as_secs_f64())?;
        item.set_item("bytes_up", s.bytes_up)?;
        item.set_item("bytes_down", s.bytes_down)?;
        stages.append(item)?;
    }
    d.set_item("stages", stages)?;
    Ok(d)
}
