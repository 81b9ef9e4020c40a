//! The WGSL sources, assembled from `shaders/` at compile time.
//!
//! WGSL has no include directive, so each module is the concatenation of the files it needs.
//! [`modules`] is public so that a GPU-free test can parse and validate exactly what the
//! engine hands to the driver.

const COMMON: &str = include_str!("../../../shaders/common.wgsl");
const CHACHA: &str = include_str!("../../../shaders/chacha.wgsl");
const MASKS: &str = include_str!("../../../shaders/masks.wgsl");
const SUM: &str = include_str!("../../../shaders/sum.wgsl");
const PACKED: &str = include_str!("../../../shaders/packed.wgsl");
const WIDE: &str = include_str!("../../../shaders/wide.wgsl");
const PROBE: &str = include_str!("../../../shaders/probe.wgsl");

/// A shader module: its name and its full WGSL source.
#[derive(Clone, Debug)]
pub struct ShaderModule {
    /// The module name (also the wgpu label).
    pub name: &'static str,
    /// The entry points it defines.
    pub entry_points: &'static [&'static str],
    /// The assembled source.
    pub source: String,
}

/// Name of the mask module (entry points `apply`, `expand` and `apply_wide`).
pub(crate) const MASKS_MODULE: &str = "secagg-masks";
/// Name of the summation module (entry points `add` and `add_wide`).
pub(crate) const SUM_MODULE: &str = "secagg-sum";
/// Name of the packed-addition module (entry points `add_packed` and `add_packed_wide`).
pub(crate) const PACKED_MODULE: &str = "secagg-packed";
/// Name of the loop-budget probe (entry point `loop_budget`).
pub(crate) const PROBE_MODULE: &str = "secagg-probe";

/// Every module the GPU engine compiles.
pub fn modules() -> Vec<ShaderModule> {
    vec![
        ShaderModule {
            name: MASKS_MODULE,
            entry_points: &["apply", "expand", "apply_wide"],
            source: [COMMON, CHACHA, MASKS, WIDE].join("\n"),
        },
        ShaderModule {
            name: SUM_MODULE,
            entry_points: &["add", "add_wide"],
            source: [COMMON, SUM, WIDE].join("\n"),
        },
        ShaderModule {
            name: PACKED_MODULE,
            entry_points: &["add_packed", "add_packed_wide"],
            source: [COMMON, PACKED, WIDE].join("\n"),
        },
        ShaderModule {
            name: PROBE_MODULE,
            entry_points: &["loop_budget"],
            source: [COMMON, PROBE].join("\n"),
        },
    ]
}
