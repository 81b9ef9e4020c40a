// The ChaCha block function (Bernstein 2008; RFC 8439 section 2.3), with the 64-bit block
// counter and 64-bit stream id of the original construction: state words 12..13 are the
// counter (low, high), 14..15 the stream (low, high). This is the layout of rand_chacha's
// ChaCha{20,12,8}Rng, whose `next_u32` returns words 0..15 of each block in order.
//
// The 4x4 state is held as four row vectors. A double round is a column round on the rows as
// they are, then a diagonal round on rows rotated so that each diagonal lines up in one lane.

// Number of rounds: 20, 12 or 8, fixed per pipeline so the loop can be unrolled.
override ROUNDS: u32 = 20u;

struct Block {
    r0: vec4<u32>,
    r1: vec4<u32>,
    r2: vec4<u32>,
    r3: vec4<u32>,
}

fn rotl(v: vec4<u32>, n: u32) -> vec4<u32> {
    return (v << vec4<u32>(n)) | (v >> vec4<u32>(32u - n));
}

// 64-bit (lo, hi) + u32, wrapping mod 2^64 like the ChaCha counter.
fn add64(lo: u32, hi: u32, x: u32) -> vec2<u32> {
    let sum = lo + x;
    return vec2<u32>(sum, hi + select(0u, 1u, sum < lo));
}

// One keystream block for key rows (k0, k1), counter and stream.
fn chacha_block(k0: vec4<u32>, k1: vec4<u32>, counter: vec2<u32>, stream: vec2<u32>) -> Block {
    let c0 = vec4<u32>(0x61707865u, 0x3320646eu, 0x79622d32u, 0x6b206574u);
    let c3 = vec4<u32>(counter, stream);
    var a = c0;
    var b = k0;
    var c = k1;
    var d = c3;
    for (var i = 0u; i < ROUNDS; i += 2u) {
        // column round: quarter-rounds on (0,4,8,12) (1,5,9,13) (2,6,10,14) (3,7,11,15)
        a += b; d = rotl(d ^ a, 16u);
        c += d; b = rotl(b ^ c, 12u);
        a += b; d = rotl(d ^ a, 8u);
        c += d; b = rotl(b ^ c, 7u);
        // line the diagonals up: (0,5,10,15) (1,6,11,12) (2,7,8,13) (3,4,9,14)
        b = b.yzwx;
        c = c.zwxy;
        d = d.wxyz;
        a += b; d = rotl(d ^ a, 16u);
        c += d; b = rotl(b ^ c, 12u);
        a += b; d = rotl(d ^ a, 8u);
        c += d; b = rotl(b ^ c, 7u);
        b = b.wxyz;
        c = c.zwxy;
        d = d.yzwx;
    }
    return Block(a + c0, b + k0, c + k1, d + c3);
}
