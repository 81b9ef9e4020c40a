// Packed addition: data[dst0 + i] = (data[dst0 + i] + x_i) mod 2^b for i < len, where x_i is
// the b-bit field at bit `first_bit + i * b` of `packed`, a little-endian bit stream held in
// words (bit j of the stream is bit j % 32 of word j / 32). The unpacking is fused with the
// add: packed uploads never exist unpacked in memory.
//
// Params fields as this kernel reads them: `skip` = b (bits per element), `base_lo` = the
// first bit in `packed`, `dst0` and `len` as everywhere, `mask` = 2^b - 1. The host keeps
// `first_bit + len * b` below 2^32 and pads `packed` with one word, so that `w + 1` is read
// in bounds.

@group(0) @binding(1) var<storage, read_write> data: array<u32>;
@group(0) @binding(3) var<storage, read> packed: array<u32>;

@compute @workgroup_size(256)
fn add_packed(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = unit_index(gid);
    if (i >= params.len) {
        return;
    }
    let bit = params.base_lo + i * params.skip;
    let w = bit >> 5u;
    let s = bit & 31u;
    // The high part comes from the next word unless the field starts on a word boundary
    // (a shift by 32 is not defined, so the shift amount is kept in range and discarded).
    let hi = select(packed[w + 1u] << ((32u - s) & 31u), 0u, s == 0u);
    let x = ((packed[w] >> s) | hi) & params.mask;
    let e = params.dst0 + i;
    data[e] = (data[e] + x) & params.mask;
}
