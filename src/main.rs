//! `secagg`: secure aggregation from the command line.
//!
//! * `secagg simulate`: a whole round in memory, checked against the plaintext sum.
//! * `secagg plan`: the SecAgg+ planner's neighbour count and threshold for a deployment, or
//!   the check of a given pair, against a curious or semi-malicious server.
//! * `secagg ca new` and `secagg enroll`: the deployment CA and the clients' certificates.
//! * `secagg server` and `secagg client`: a round over TCP with model files.

#![deny(missing_docs)]

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp_millis()
        .init();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(cli::EXIT_USAGE)
        }
    }
}
