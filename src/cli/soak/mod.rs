//! `secagg soak`: the attack soak (what it runs and checks: [`harness`]).

mod harness;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use harness::{SoakOptions, run as run_soak};

/// Arguments of `secagg soak`.
#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// Honest clients.
    #[arg(long, default_value_t = 200)]
    honest: usize,
    /// Rogue connections, spread over 13 kinds; one rogue member of each of 4 kinds per 100
    /// (at least one each) joins the round and breaks the upload rules.
    #[arg(long, default_value_t = 60)]
    rogue: usize,
    /// Parameters per update.
    #[arg(long, default_value_t = 10_000)]
    params: usize,
    /// The server's stage deadline, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    deadline_ms: u64,
    /// The server's hello timeout, in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    hello_timeout_ms: u64,
    /// The server's upload deadline, in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    upload_deadline_ms: u64,
    /// Scratch directory for the PKI, the sum and the server's summary. [default: a new
    /// directory under the system's temporary directory]
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Seed of the inputs and identities.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also write the report (JSON) to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run(a: SoakArgs) -> Result<ExitCode, String> {
    let dir = a.dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("secagg-soak-{}", std::process::id()))
    });
    let options = SoakOptions {
        honest: a.honest,
        rogue: a.rogue,
        params: a.params,
        deadline: Duration::from_millis(a.deadline_ms),
        hello_timeout: Duration::from_millis(a.hello_timeout_ms),
        upload_deadline: Duration::from_millis(a.upload_deadline_ms),
        server_bin: std::env::current_exe().map_err(|e| e.to_string())?,
        dir,
        seed: a.seed,
    };
    eprintln!(
        "soak: {} honest clients and {} rogue connections against a TLS server on loopback",
        a.honest, a.rogue
    );
    let report = run_soak(&options)?;
    let text = serde_json::to_string_pretty(&report.json).map_err(|e| e.to_string())?;
    println!("{text}");
    if let Some(path) = a.json {
        std::fs::write(&path, &text).map_err(|e| format!("--json {}: {e}", path.display()))?;
    }
    if report.passed {
        eprintln!("soak passed");
        Ok(ExitCode::SUCCESS)
    } else {
        for f in &report.failures {
            eprintln!("soak failure: {f}");
        }
        Ok(ExitCode::from(super::EXIT_CHECK_FAILED))
    }
}
