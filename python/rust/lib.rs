//! `secagg._native`: the Rust core of the `secagg` Python package.
//!
//! The Python-facing API is documented in `secagg/__init__.py` and the type stubs
//! (`secagg/_native.pyi`). Every heavy call (key agreement, masking, unmasking, a simulated
//! round) releases the GIL; every error is one of the exceptions in [`errors`]; no panic
//! reaches Python.

use pyo3::prelude::*;

mod binding;
mod client;
mod config;
mod dp;
mod errors;
mod server;
mod sim;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<config::RoundConfig>()?;
    m.add_class::<config::Policy>()?;
    m.add_class::<config::Identity>()?;
    m.add_class::<client::Client>()?;
    m.add_class::<server::Server>()?;
    m.add_function(wrap_pyfunction!(config::plan, m)?)?;
    m.add_function(wrap_pyfunction!(sim::simulate, m)?)?;
    m.add_function(wrap_pyfunction!(dp::plan_dp, m)?)?;
    m.add_function(wrap_pyfunction!(dp::honest_survivors, m)?)?;
    m.add_function(wrap_pyfunction!(dp::privacy_event, m)?)?;
    m.add_function(wrap_pyfunction!(dp::privacy_spent, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
