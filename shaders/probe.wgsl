// The loop budget probe. Some drivers end the loops of a shader invocation once it has run a
// fixed number of loop iterations, all loops together, and let it carry on with what it has,
// without an error: llvmpipe (Mesa's software rasterizer, which lavapipe runs on) stops at
// 65,535. The mask kernel loops over terms and over ChaCha rounds, so it needs to know.
//
// One invocation runs a loop that should go round `params.len` times and writes how many
// times it did into data[0]. The host reads a count below `len` as the adapter's budget.

@group(0) @binding(1) var<storage, read_write> data: array<u32>;

@compute @workgroup_size(1)
fn loop_budget() {
    var n = 0u;
    for (var i = 0u; i < params.len; i++) {
        n += 1u;
    }
    data[0] = n;
}
