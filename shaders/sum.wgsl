// Element-wise addition mod 2^b: data[dst0 + i] = (data[dst0 + i] + input[i]) mod 2^b, one element per
// invocation (memory bound; the GPU hides latency with many small items).

@group(0) @binding(1) var<storage, read_write> data: array<u32>;
@group(0) @binding(3) var<storage, read> input: array<u32>;

@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = unit_index(gid);
    if (i >= params.len) {
        return;
    }
    let e = params.dst0 + i;
    data[e] = (data[e] + input[i]) & params.mask;
}

// `add` for moduli above 2^32: `len` counts words, two per element (low, high), added with
// the carry; one element per invocation.
@compute @workgroup_size(256)
fn add_wide(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = unit_index(gid);
    if (i >= params.len / 2u) {
        return;
    }
    add_wide_at(params.dst0 + 2u * i, input[2u * i], input[2u * i + 1u]);
}
