// Fused mask kernels. One invocation owns one 16-word ChaCha block of the accumulator: it
// expands that block of every term's keystream in registers, sums them with their signs, and
// then reads, adds and writes its accumulator words once. No keystream reaches memory.
//
// `terms` holds TERM_WORDS words per term: key (8 words, little-endian), sign (0 = add,
// 1 = subtract), stream id (low, high), one word of padding.

const TERM_WORDS: u32 = 12u;

@group(0) @binding(1) var<storage, read_write> data: array<u32>;
@group(0) @binding(2) var<storage, read> terms: array<u32>;

fn term_block(t: u32, counter: vec2<u32>) -> Block {
    let o = t * TERM_WORDS;
    let k0 = vec4<u32>(terms[o], terms[o + 1u], terms[o + 2u], terms[o + 3u]);
    let k1 = vec4<u32>(terms[o + 4u], terms[o + 5u], terms[o + 6u], terms[o + 7u]);
    let stream = vec2<u32>(terms[o + 9u], terms[o + 10u]);
    return chacha_block(k0, k1, counter, stream);
}

// Stores the four words of `v`, which are words w..w+3 of block `unit`, into `data`:
// added to what is there when `accumulate`, written over it otherwise; reduced mod 2^b
// (odd words with `mask_hi`, which only differs from `mask` for two-word elements: `expand`
// serves every width this way).
fn put4(unit: u32, w: u32, v: vec4<u32>, accumulate: bool) {
    for (var j = 0u; j < 4u; j++) {
        let p = unit * 16u + w + j;
        if (p >= params.skip && p - params.skip < params.len) {
            let e = params.dst0 + p - params.skip;
            var x = v[j];
            if (accumulate) {
                x += data[e];
            }
            data[e] = x & select(params.mask, params.mask_hi, (p & 1u) == 1u);
        }
    }
}

// `put4` adding two-word elements: words w, w+1 and w+2, w+3 of block `unit` are two
// elements (low, high), added with the carry. `skip`, `len` and `dst0` are even, so both
// words of an element are in range or neither is. No loop: llvmpipe's loop budget is spent
// on terms only.
fn put4_wide(unit: u32, w: u32, v: vec4<u32>) {
    let p = unit * 16u + w;
    if (p >= params.skip && p - params.skip < params.len) {
        add_wide_at(params.dst0 + p - params.skip, v.x, v.y);
    }
    if (p + 2u >= params.skip && p + 2u - params.skip < params.len) {
        add_wide_at(params.dst0 + p + 2u - params.skip, v.z, v.w);
    }
}

// The signed sum over every term of block `unit` of their keystreams: word by word mod 2^32,
// or, when `wide`, as pairs (low, high) mod 2^64 with carries. `wide` is a constant at each
// call, so each kernel compiles to one of the two.
fn term_sum(unit: u32, wide: bool) -> Block {
    let counter = add64(params.base_lo, params.base_hi, unit);
    var s0 = vec4<u32>(0u);
    var s1 = vec4<u32>(0u);
    var s2 = vec4<u32>(0u);
    var s3 = vec4<u32>(0u);
    for (var t = 0u; t < params.n_terms; t++) {
        let k = term_block(t, counter);
        let minus = terms[t * TERM_WORDS + 8u] != 0u;
        if (wide) {
            if (minus) {
                s0 = sub_pairs(s0, k.r0); s1 = sub_pairs(s1, k.r1);
                s2 = sub_pairs(s2, k.r2); s3 = sub_pairs(s3, k.r3);
            } else {
                s0 = add_pairs(s0, k.r0); s1 = add_pairs(s1, k.r1);
                s2 = add_pairs(s2, k.r2); s3 = add_pairs(s3, k.r3);
            }
        } else if (minus) {
            s0 -= k.r0; s1 -= k.r1; s2 -= k.r2; s3 -= k.r3;
        } else {
            s0 += k.r0; s1 += k.r1; s2 += k.r2; s3 += k.r3;
        }
    }
    return Block(s0, s1, s2, s3);
}

@compute @workgroup_size(64)
fn apply(@builtin(global_invocation_id) gid: vec3<u32>) {
    let unit = unit_index(gid);
    if (unit >= params.units) {
        return;
    }
    let s = term_sum(unit, false);
    put4(unit, 0u, s.r0, true);
    put4(unit, 4u, s.r1, true);
    put4(unit, 8u, s.r2, true);
    put4(unit, 12u, s.r3, true);
}

@compute @workgroup_size(64)
fn expand(@builtin(global_invocation_id) gid: vec3<u32>) {
    let unit = unit_index(gid);
    if (unit >= params.units) {
        return;
    }
    let k = term_block(0u, add64(params.base_lo, params.base_hi, unit));
    put4(unit, 0u, k.r0, false);
    put4(unit, 4u, k.r1, false);
    put4(unit, 8u, k.r2, false);
    put4(unit, 12u, k.r3, false);
}

// `apply` for moduli above 2^32: element i is keystream words 2i (low) and 2i+1 (high), so a
// block holds eight elements, two per row, summed over the terms with carries.
@compute @workgroup_size(64)
fn apply_wide(@builtin(global_invocation_id) gid: vec3<u32>) {
    let unit = unit_index(gid);
    if (unit >= params.units) {
        return;
    }
    let s = term_sum(unit, true);
    put4_wide(unit, 0u, s.r0);
    put4_wide(unit, 4u, s.r1);
    put4_wide(unit, 8u, s.r2);
    put4_wide(unit, 12u, s.r3);
}
