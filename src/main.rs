//! `secagg`: secure aggregation from the command line.
//!
//! * `secagg simulate`: a whole round in memory, checked against the plaintext sum.
//! * `secagg plan`: the SecAgg+ planner's neighbour count and threshold for a deployment.

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
