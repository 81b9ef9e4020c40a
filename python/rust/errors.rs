//! The exceptions Python sees, and the conversions from the Rust errors.
//!
//! Every fallible call maps its error to one of these; a panic inside a call is caught by
//! [`guard`] and raised as [`SecaggError`] naming an internal error, so none crosses into
//! Python as a `PanicException`.

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use secagg_engine::EngineError as RustEngineError;
use secagg_host::client::{ClientError, JournalError as HostJournalError};
use secagg_host::{CodecError as RustCodec, ConfigError as RustConfig, PolicyError as RustPolicy};

pyo3::create_exception!(
    _native,
    SecaggError,
    PyException,
    "Base class of every error secagg raises."
);
pyo3::create_exception!(
    _native,
    ConfigError,
    SecaggError,
    "A round configuration (or a planner request) that cannot work."
);
pyo3::create_exception!(
    _native,
    PlanError,
    ConfigError,
    "No neighbour count and threshold meet the requested security and correctness."
);
pyo3::create_exception!(
    _native,
    PolicyError,
    SecaggError,
    "The round the server announced fails this client's own policy; nothing was sent."
);
pyo3::create_exception!(
    _native,
    ProtocolError,
    SecaggError,
    "The round broke the protocol (or ended) for this party; the message says how."
);
pyo3::create_exception!(
    _native,
    CodecError,
    SecaggError,
    "Bytes that are not a valid secagg frame or snapshot."
);
pyo3::create_exception!(
    _native,
    InputError,
    SecaggError,
    "An update that cannot be used: wrong length, not finite, a weight out of range, or set too late."
);
pyo3::create_exception!(
    _native,
    IdentityError,
    SecaggError,
    "A key, certificate or CA file that cannot be used."
);
pyo3::create_exception!(
    _native,
    JournalError,
    SecaggError,
    "A client journal that cannot be used: a snapshot asked of a client without a step store, or a step store that holds no step count."
);
pyo3::create_exception!(
    _native,
    StaleSnapshotError,
    JournalError,
    "A snapshot (or a live client) that is not at the step its step store holds: resuming it would fork the client, so it is refused."
);
pyo3::create_exception!(
    _native,
    EngineError,
    SecaggError,
    "The vector engine (CPU or GPU) failed or is not available."
);

pub fn config(e: RustConfig) -> PyErr {
    ConfigError::new_err(e.to_string())
}

pub fn policy(e: RustPolicy) -> PyErr {
    PolicyError::new_err(e.to_string())
}

pub fn codec(e: RustCodec) -> PyErr {
    CodecError::new_err(e.to_string())
}

pub fn engine(e: RustEngineError) -> PyErr {
    EngineError::new_err(e.to_string())
}

pub fn identity(e: impl std::fmt::Display) -> PyErr {
    IdentityError::new_err(e.to_string())
}

pub fn client(e: ClientError) -> PyErr {
    match e {
        ClientError::Input(e) => InputError::new_err(e.to_string()),
        ClientError::Policy(e) => policy(e),
        ClientError::Identity(why) => IdentityError::new_err(why),
        ClientError::MissingInput | ClientError::InputAlreadySent => {
            InputError::new_err(e.to_string())
        }
        other => SecaggError::new_err(other.to_string()),
    }
}

/// A journal that cannot be used, or a client that cannot be built from one: bytes that are
/// no snapshot raise `CodecError` ("client snapshot: …"), as does a welcome or journaled frame
/// that does not decode; a bad certificate `IdentityError`; a round or identity the policy
/// refuses, as the constructor does.
pub fn journal(e: HostJournalError) -> PyErr {
    match e {
        HostJournalError::Welcome(e) | HostJournalError::Frame { source: e, .. } => codec(e),
        HostJournalError::Certificate(e) => identity(e),
        HostJournalError::Refused(e) => client(e),
        other => CodecError::new_err(format!("client snapshot: {other}")),
    }
}

/// Runs `f`, turning a panic into a `SecaggError` (a bug of ours, never the caller's input).
pub fn guard<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            Err(SecaggError::new_err(format!(
                "internal error in secagg (please report it): {what}"
            )))
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("SecaggError", py.get_type::<SecaggError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("PlanError", py.get_type::<PlanError>())?;
    m.add("PolicyError", py.get_type::<PolicyError>())?;
    m.add("ProtocolError", py.get_type::<ProtocolError>())?;
    m.add("CodecError", py.get_type::<CodecError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("IdentityError", py.get_type::<IdentityError>())?;
    m.add("EngineError", py.get_type::<EngineError>())?;
    m.add("JournalError", py.get_type::<JournalError>())?;
    m.add("StaleSnapshotError", py.get_type::<StaleSnapshotError>())?;
    Ok(())
}
