// Shared by every secagg kernel: the per-dispatch parameters and the 2-D dispatch index.
//
// A dispatch covers `units` work items (16-word ChaCha blocks for the mask kernels, single
// elements for `add`). When more workgroups are needed than one dimension allows (65,535 on
// most adapters), the host dispatches a 2-D grid and `row_stride` is the number of invocations
// in one row, so that item = x + y * row_stride.

struct Params {
    // 64-bit ChaCha block counter of unit 0 (low word, high word).
    base_lo: u32,
    base_hi: u32,
    // Element 0 of `data` is word `skip` of block unit 0 (0..15).
    skip: u32,
    // Number of elements in `data` this dispatch covers.
    len: u32,
    // Number of mask terms in `terms`.
    n_terms: u32,
    // 2^b - 1: every stored element is reduced with it.
    mask: u32,
    // Number of work items in the dispatch.
    units: u32,
    // Invocations per row of a 2-D dispatch.
    row_stride: u32,
    // Element `dst0` of `data` is element 0 of this dispatch (device-resident accumulators
    // bind a whole chunk and work on part of it).
    dst0: u32,
    // The high word's mask for moduli above 2^32 (two words per element, low first: then
    // `mask` is all ones); equal to `mask` for narrower moduli.
    mask_hi: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;

fn unit_index(gid: vec3<u32>) -> u32 {
    return gid.x + gid.y * params.row_stride;
}

