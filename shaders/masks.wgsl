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
// added to what is there when `accumulate`, written over it otherwise; reduced mod 2^b.
fn put4(unit: u32, w: u32, v: vec4<u32>, accumulate: bool) {
    for (var j = 0u; j < 4u; j++) {
        let p = unit * 16u + w + j;
        if (p >= params.skip && p - params.skip < params.len) {
            let e = params.dst0 + p - params.skip;
            var x = v[j];
            if (accumulate) {
                x += data[e];
            }
            data[e] = x & params.mask;
        }
    }
}

@compute @workgroup_size(64)
fn apply(@builtin(global_invocation_id) gid: vec3<u32>) {
    let unit = unit_index(gid);
    if (unit >= params.units) {
        return;
    }
    let counter = add64(params.base_lo, params.base_hi, unit);
    var s0 = vec4<u32>(0u);
    var s1 = vec4<u32>(0u);
    var s2 = vec4<u32>(0u);
    var s3 = vec4<u32>(0u);
    for (var t = 0u; t < params.n_terms; t++) {
        let k = term_block(t, counter);
        if (terms[t * TERM_WORDS + 8u] == 0u) {
            s0 += k.r0; s1 += k.r1; s2 += k.r2; s3 += k.r3;
        } else {
            s0 -= k.r0; s1 -= k.r1; s2 -= k.r2; s3 -= k.r3;
        }
    }
    put4(unit, 0u, s0, true);
    put4(unit, 4u, s1, true);
    put4(unit, 8u, s2, true);
    put4(unit, 12u, s3, true);
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
