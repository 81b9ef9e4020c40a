//! The engine alone: masks applied to a slice on the GPU when there is one, on the CPU
//! otherwise, and the two compared bit for bit.
//!
//! A server's heavy work is expanding ChaCha keystreams into masks and adding them to a
//! vector mod 2^b. `Backend::apply_masks` does it in one fused pass: every keystream word is
//! generated next to the element it lands on and never stored. Any slice of a vector can be
//! masked on its own, because the keystream is seekable (`offset` is the slice's first
//! element).
//!
//! Run it with `cargo run --release --example engine` (set `SECAGG_BACKEND=gpu` to insist
//! on a GPU, software drivers included).

use secagg::engine::{Backend, CpuEngine, Engine, MaskTerm, Modulus, Prg, Seed};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A GPU adapter if one opens (hardware only, unless SECAGG_BACKEND=gpu), else the CPU.
    let engine = Engine::auto()?;
    println!("engine: {}", engine.describe());

    let modulus = Modulus::new(24)?; // sums mod 2^24
    let len = 1 << 20;
    // Three signed masks, as a server removing two self masks and adding back a pairwise
    // mask would list them. Seeds are secrets: zeroized on drop, never printed.
    let terms = [
        MaskTerm::minus(Seed::from_bytes([1; 32])),
        MaskTerm::minus(Seed::from_bytes([2; 32])),
        MaskTerm::plus(Seed::from_bytes([3; 32])),
    ];

    // Elements 5,000,000 .. 5,000,000 + len of a larger vector: keystream words at that offset.
    let offset = 5_000_000;
    let mut on_engine: Vec<u32> = (0..len as u32).map(|i| i % 1000).collect();
    let mut on_cpu = on_engine.clone();
    engine.apply_masks(&mut on_engine, offset, &terms, Prg::ChaCha20, modulus)?;
    CpuEngine::new().apply_masks(&mut on_cpu, offset, &terms, Prg::ChaCha20, modulus)?;
    assert_eq!(on_engine, on_cpu, "the engines must agree bit for bit");

    // Applying the opposite terms takes the masks off again.
    let opposite = [
        MaskTerm::plus(Seed::from_bytes([1; 32])),
        MaskTerm::plus(Seed::from_bytes([2; 32])),
        MaskTerm::minus(Seed::from_bytes([3; 32])),
    ];
    engine.apply_masks(&mut on_engine, offset, &opposite, Prg::ChaCha20, modulus)?;
    assert!(
        on_engine
            .iter()
            .enumerate()
            .all(|(i, &v)| v == i as u32 % 1000)
    );
    println!("masked and unmasked {len} elements at offset {offset}: both engines agree");
    Ok(())
}
