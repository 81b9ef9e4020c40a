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

/// Name of the mask module (entry points `apply` and `expand`).
pub(crate) const MASKS_MODULE: &str = "secagg-masks";
/// Name of the summation module (entry point `add`).
pub(crate) const SUM_MODULE: &str = "secagg-sum";
/// Name of the packed-addition module (entry point `add_packed`).
pub(crate) const PACKED_MODULE: &str = "secagg-packed";
/// Name of the loop-budget probe (entry point `loop_budget`).
pub(crate) const PROBE_MODULE: &str = "secagg-probe";

/// Every module the GPU engine compiles.
pub fn modules() -> Vec<ShaderModule> {
    vec![
        ShaderModule {
            name: MASKS_MODULE,
            entry_points: &["apply", "expand"],
            source: [COMMON, CHACHA, MASKS].join("\n"),
        },
        ShaderModule {
            name: SUM_MODULE,
            entry_points: &["add"],
            source: [COMMON, SUM].join("\n"),
        },
        ShaderModule {
            name: PACKED_MODULE,
            entry_points: &["add_packed"],
            source: [COMMON, PACKED].join("\n"),
        },
        ShaderModule {
            name: PROBE_MODULE,
            entry_points: &["loop_budget"],
            source: [COMMON, PROBE].join("\n"),
        },
    ]
}
