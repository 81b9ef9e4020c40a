//! The shortest whole round: ten clients' `f32` updates in, their weighted mean out, with one
//! client dropping out half-way. Every client masks its update; the server only ever sees
//! masked vectors, and recovers the sum without the dropped client.
//!
//! Run it with `cargo run --release --example in_memory`.

use secagg::host::local::aggregate;
use secagg::host::{ClientId, Quantization, RoundConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (n, m) = (10, 100_000);
    // Client i's update: every value i / 20, so the expected mean is easy to check.
    let updates: Vec<Vec<f32>> = (0..n).map(|i| vec![i as f32 / 20.0; m]).collect();
    let weights: Vec<u32> = (1..=n as u32).collect();

    // A round of n clients, m parameters; values clipped to [-1, 1] on 2^16 levels, weights
    // up to 10 (the build checks that n · (levels − 1) · weight fits in 2^b).
    let config = RoundConfig::builder(n, m)
        .quantization(Quantization {
            clip: 1.0,
            levels: 1 << 16,
            max_weight: 10,
        })
        .build()?;
    // Client 3 deals its shares, then vanishes before masking.
    let out = aggregate(&config, &updates, Some(&weights), &[ClientId(3)])?;

    let mean = out.weighted_mean(&config);
    let included: Vec<u32> = out.included.iter().map(|c| c.0).collect();
    // The plaintext weighted mean over the included clients, to compare.
    let (num, den) = included.iter().fold((0.0f64, 0.0f64), |(a, b), &i| {
        let w = f64::from(weights[i as usize]);
        (a + w * f64::from(i) / 20.0, b + w)
    });
    println!("included {included:?}, total weight {}", out.total_weight);
    println!("mean[0] = {:.5}, plaintext {:.5}", mean[0], num / den);
    assert!(!included.contains(&3));
    assert!((f64::from(mean[0]) - num / den).abs() < 1e-3);
    Ok(())
}
