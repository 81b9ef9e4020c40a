//! Parses and validates every WGSL module the GPU engine builds, with naga and no GPU, so a
//! shader error fails on any machine before a driver ever sees it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use secagg_engine::gpu::modules;

#[test]
fn every_module_parses_and_validates() {
    let all = modules();
    assert!(all.len() >= 2, "expected the masks and sum modules");
    for m in all {
        let module = naga::front::wgsl::parse_str(&m.source)
            .unwrap_or_else(|e| panic!("{}: {}", m.name, e.emit_to_string(&m.source)));
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}: {}", m.name, e.emit_to_string(&m.source)));
        drop(info);
        for entry in m.entry_points {
            assert!(
                module.entry_points.iter().any(|ep| ep.name == *entry),
                "{}: entry point {entry} missing",
                m.name
            );
        }
    }
}

#[test]
fn a_broken_shader_is_caught() {
    // The check above must be able to fail: a type error has to be reported.
    let bad = "@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }";
    let parsed = naga::front::wgsl::parse_str(bad);
    let rejected = match parsed {
        Err(_) => true,
        Ok(m) => naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        )
        .validate(&m)
        .is_err(),
    };
    assert!(rejected);
}
