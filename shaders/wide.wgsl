// Two-word elements (moduli 2^33 ..= 2^64): element i is words 2i (low) and 2i + 1 (high) of
// `data`. Included after a module that declares `data`.

// Pairs (low, high) of 64-bit lanes held in a vec4 (x, y) and (z, w): addition and
// subtraction mod 2^64 with the carry or borrow from the low word.
fn add_pairs(a: vec4<u32>, b: vec4<u32>) -> vec4<u32> {
    let lo = a.xz + b.xz;
    let hi = a.yw + b.yw + select(vec2<u32>(0u), vec2<u32>(1u), lo < a.xz);
    return vec4<u32>(lo.x, hi.x, lo.y, hi.y);
}

fn sub_pairs(a: vec4<u32>, b: vec4<u32>) -> vec4<u32> {
    let lo = a.xz - b.xz;
    let hi = a.yw - b.yw - select(vec2<u32>(0u), vec2<u32>(1u), a.xz < b.xz);
    return vec4<u32>(lo.x, hi.x, lo.y, hi.y);
}

// data[e], data[e + 1] (low, high) plus (lo, hi) mod 2^b, for b in 33..=64.
fn add_wide_at(e: u32, lo: u32, hi: u32) {
    let a = vec4<u32>(data[e], data[e + 1u], 0u, 0u);
    let s = add_pairs(a, vec4<u32>(lo, hi, 0u, 0u));
    data[e] = s.x & params.mask;
    data[e + 1u] = s.y & params.mask_hi;
}
