// Packed addition: data[dst0 + i] = (data[dst0 + i] + x_i) mod 2^b for i < len, where x_i is
// the b-bit field at bit `first_bit + i * b` of `packed`, a little-endian bit stream held in
// words (bit j of the stream is bit j % 32 of word j / 32). The unpacking is fused with the
// add: packed uploads never exist unpacked in memory.
//
// Params fields as this kernel reads them: `skip` = b (bits per element), `base_lo` = the
// first bit in `packed`, `dst0` and `len` as everywhere, `mask` = 2^b - 1. The host keeps
// `first_bit + len * b` below 2^32 and pads `packed` with two words, so that `w + 1` (and
// `w + 2` in `add_packed_wide`) are read in bounds.

@group(0) @binding(1) var<storage, read_write> data: array<u32>;
@group(0) @binding(3) var<storage, read> packed: array<u32>;

// The 32 bits of the stream from bit `s` of word `w`: the high part comes from the next word
// unless `s` is 0 (a shift by 32 is not defined, so the shift amount is kept in range and
// the part discarded).
fn bits_at(w: u32, s: u32) -> u32 {
    return (packed[w] >> s) | select(packed[w + 1u] << ((32u - s) & 31u), 0u, s == 0u);
}

@compute @workgroup_size(256)
fn add_packed(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = unit_index(gid);
    if (i >= params.len) {
        return;
    }
    let bit = params.base_lo + i * params.skip;
    let w = bit >> 5u;
    let s = bit & 31u;
    let x = bits_at(w, s) & params.mask;
    let e = params.dst0 + i;
    data[e] = (data[e] + x) & params.mask;
}

// `add_packed` for b in 33..=64: the field at bit `first_bit + i * b` spans up to three words
// from word w; it is read as a low and a high word and added with the carry into elements of
// two words (`dst0` counts words and is even; `len` counts elements). `mask` is all ones and
// `mask_hi` = 2^(b - 32) - 1.
@compute @workgroup_size(256)
fn add_packed_wide(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = unit_index(gid);
    if (i >= params.len) {
        return;
    }
    let bit = params.base_lo + i * params.skip;
    // The low word from the field's first bit, the high word 32 bits on (it reads `w + 1u`
    // and `w + 2u`).
    let lo = bits_at(bit >> 5u, bit & 31u);
    let hi = bits_at((bit >> 5u) + 1u, bit & 31u);
    add_wide_at(params.dst0 + 2u * i, lo, hi & params.mask_hi);
}
