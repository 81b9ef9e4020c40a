//! `secagg plan`: the planner's answer for a deployment.

use std::process::ExitCode;

use secagg_host::config::bits_needed;
use secagg_host::plan::{PlanRequest, plan};

/// Arguments of `secagg plan`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Number of clients n.
    #[arg(long)]
    clients: usize,
    /// Expected fraction of clients that drop out (an upper bound).
    #[arg(long, default_value_t = 0.1)]
    dropout: f64,
    /// Fraction of clients that may collude with the server (an upper bound).
    #[arg(long, default_value_t = 0.05)]
    corrupt: f64,
    /// Statistical security σ: the server learns more than the sum with probability ≤ 2^-σ.
    #[arg(long, default_value_t = 40)]
    security_bits: u32,
    /// Correctness η: the round fails to unmask with probability ≤ 2^-η.
    #[arg(long, default_value_t = 20)]
    correctness_bits: u32,
    /// Quantization levels per input (precision wanted); sets the modulus bits.
    #[arg(long, default_value_t = 1 << 16)]
    levels: u32,
    /// Largest integer weight per client.
    #[arg(long, default_value_t = 1)]
    max_weight: u32,
}

pub fn run(a: PlanArgs) -> Result<ExitCode, String> {
    let req = PlanRequest {
        clients: a.clients,
        dropout_rate: a.dropout,
        corrupt_fraction: a.corrupt,
        security_bits: a.security_bits,
        correctness_bits: a.correctness_bits,
    };
    let p = plan(&req).map_err(|e| e.to_string())?;
    let bits = bits_needed(a.clients, a.levels, a.max_weight);
    let graph = if p.neighbors + 1 >= a.clients {
        "the complete graph (classic SecAgg)".to_string()
    } else {
        format!("a {}-regular Harary graph (SecAgg+)", p.neighbors)
    };
    println!(
        "n = {}, dropout ≤ {}, corrupted ≤ {}: {graph}",
        a.clients, a.dropout, a.corrupt
    );
    println!("  neighbors k = {}", p.neighbors);
    println!("  threshold t = {}", p.threshold);
    println!(
        "  insecurity ≤ {} (target 2^-{}), failure ≤ {} (target 2^-{})",
        super::pow2(p.log2_insecurity),
        a.security_bits,
        super::pow2(p.log2_failure),
        a.correctness_bits
    );
    if bits > 32 {
        println!(
            "  modulus: {} levels x weight {} over {} clients needs {bits} bits, above 32: lower the levels",
            a.levels, a.max_weight, a.clients
        );
    } else {
        println!(
            "  modulus bits b = {bits} ({} levels x weight {} over {} clients)",
            a.levels, a.max_weight, a.clients
        );
    }
    Ok(ExitCode::SUCCESS)
}
