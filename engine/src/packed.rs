//! The packed b-bit format: how a masked vector travels and how the accumulators take it.
//!
//! This module is the format's one home. The host's wire codec packs and checks with it, the
//! CPU accumulator unpacks with it (`add_unpacked`), and the GPU accumulator stages runs for
//! the WGSL kernel (`shaders/packed.wgsl`) with it (`kernel_words`).
//!
//! ## The layout
//!
//! A run of `count` elements packed at `b` bits (1 ≤ b ≤ 32) is a little-endian bit stream:
//! element i occupies bits `i·b .. (i+1)·b`, and bit j of the stream is bit `j % 8` of byte
//! `j / 8`. A run is exactly [`packed_len`]`(count, b)` = ⌈count·b / 8⌉ bytes, starts at bit 0
//! of its first byte whatever its element offset in a vector, and its padding bits (those after
//! the last element, in the last byte) are zero, so that each run has exactly one encoding.
//!
//! ```
//! use secagg_engine::packed::{check_padding, pack, packed_len, unpack};
//! # fn main() -> Result<(), secagg_engine::packed::PackedError> {
//! let mut bytes = Vec::new();
//! pack(&[1u32, 2, 3], 4, &mut bytes); // three 4-bit elements: 12 bits
//! assert_eq!(bytes, [0x21, 0x03]);
//! assert_eq!(bytes.len(), packed_len(3, 4));
//!
//! let mut back = [0u32; 3];
//! unpack(&bytes, 4, &mut back)?;
//! assert_eq!(back, [1, 2, 3]);
//! assert!(check_padding(&[0x21, 0x13], 3, 4).is_err()); // bits 12..16 must be zero
//! # Ok(())
//! # }
//! ```
//!
//! ## The GPU kernel's view
//!
//! The `add_packed` kernel reads the same stream as 32-bit words: bit j of the stream is bit
//! `j % 32` of word `j / 32` (the little-endian bytes, four to a word). Element i of a dispatch
//! is the b-bit field at bit `first_bit + i·b`; the kernel reads the word holding the field's
//! first bit and the word after it (`packed[w + 1u]`; at b > 32 `add_packed_wide` reads the
//! two after it, a field spanning up to three words), so the staged words end with two zero
//! words. `kernel_words` cuts a piece of a run into that shape: the whole words from the one
//! holding the piece's first bit, the ragged end padded to a word, and the zero word. The
//! kernel's bit index is a `u32`: a dispatch covers at most 2^26 elements at b ≤ 32
//! (`KERNEL_MAX_ELEMS`) and 2^25 above, so that `first_bit + len · b` (with `first_bit` < 32)
//! stays below 2^32. The WGSL repeats the word width and the words read past; a test here
//! checks it.

use std::borrow::Cow;

use crate::Lane;

// The GPU kernel's side of the format: built with the GPU engine (and for the tests here).

/// Bits of a word as the GPU kernel reads the packed stream.
#[cfg(any(feature = "gpu", test))]
pub(crate) const KERNEL_WORD_BITS: usize = 32;
/// Zero words after the last word of a piece staged for the GPU kernels (`add_packed` reads
/// the word after the one holding a field's first bit; `add_packed_wide`, for b > 32, the two
/// after it).
#[cfg(any(feature = "gpu", test))]
pub(crate) const KERNEL_PAD_WORDS: usize = 2;
/// Most elements one dispatch of the GPU kernel covers at b ≤ 32: keeps
/// `first_bit + len · b` below 2^32 (the kernel's bit index is a `u32`; `first_bit` < 32).
#[cfg(any(feature = "gpu", test))]
pub(crate) const KERNEL_MAX_ELEMS: usize = 1 << 26;
/// [`KERNEL_MAX_ELEMS`] for b in 33..=64.
#[cfg(any(feature = "gpu", test))]
pub(crate) const KERNEL_MAX_ELEMS_WIDE: usize = 1 << 25;

/// Most elements one dispatch of the GPU kernel covers at `bits`.
#[cfg(any(feature = "gpu", test))]
pub(crate) fn kernel_max_elems(bits: u32) -> usize {
    if bits > 32 {
        KERNEL_MAX_ELEMS_WIDE
    } else {
        KERNEL_MAX_ELEMS
    }
}
/// Bytes staged after a piece's whole words: its ragged end padded to a word, then the pad.
#[cfg(any(feature = "gpu", test))]
const KERNEL_TAIL: usize = (1 + KERNEL_PAD_WORDS) * KERNEL_WORD_BITS / 8;

/// A packed run that is not in the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PackedError {
    /// Not [`packed_len`]`(count, bits)` bytes.
    #[error("{bytes} bytes for {count} elements of {bits} bits")]
    Length {
        /// Bytes given.
        bytes: usize,
        /// Elements expected.
        count: usize,
        /// Bits per element.
        bits: u32,
    },
    /// A bit after the last element is set.
    #[error("non-zero padding bits")]
    Padding,
}

/// Bytes of `count` elements packed at `bits` each: ⌈count · bits / 8⌉.
///
/// ```
/// use secagg_engine::packed::packed_len;
///
/// assert_eq!(packed_len(3, 4), 2); // 12 bits
/// assert_eq!(packed_len(1000, 20), 2500);
/// assert_eq!(packed_len(5, 32), 20);
/// ```
pub fn packed_len(count: usize, bits: u32) -> usize {
    (count as u128 * u128::from(bits)).div_ceil(8) as usize
}

/// The low `bits` bits set (all 32 from 32 bits on).
fn low_bits(bits: u32) -> u32 {
    if bits >= 32 {
        u32::MAX
    } else {
        (1u32 << bits) - 1
    }
}

/// The low `bits` bits set (all 64 from 64 bits on).
fn low_bits64(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// Appends `values` packed at `bits` per element (each value's bits above `bits` are
/// dropped). `bits` is at most 32 for `u32` values and at most 64 for `u64` values.
///
/// ```
/// use secagg_engine::packed::{pack, unpack};
/// # fn main() -> Result<(), secagg_engine::packed::PackedError> {
/// let mut bytes = Vec::new();
/// pack(&[u64::MAX >> 24, 1], 40, &mut bytes); // two 40-bit elements: 10 bytes
/// assert_eq!(bytes, [0xff, 0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0]);
/// let mut back = [0u64; 2];
/// unpack(&bytes, 40, &mut back)?;
/// assert_eq!(back, [(1 << 40) - 1, 1]);
/// # Ok(())
/// # }
/// ```
pub fn pack<L: Lane>(values: &[L], bits: u32, out: &mut Vec<u8>) {
    let mask = u128::from(low_bits64(bits.min(L::BITS)));
    out.reserve(packed_len(values.len(), bits));
    // At most 7 bits wait in `acc` between elements, so 7 + 64 bits fit a u128.
    let mut acc: u128 = 0;
    let mut filled = 0u32;
    for &v in values {
        acc |= (u128::from(v.to_u64()) & mask) << filled;
        filled += bits;
        while filled >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            filled -= 8;
        }
    }
    if filled > 0 {
        out.push(acc as u8);
    }
}

/// The run is [`packed_len`]`(count, bits)` bytes long.
pub fn check_len(packed: &[u8], count: usize, bits: u32) -> Result<(), PackedError> {
    if packed.len() == packed_len(count, bits) {
        Ok(())
    } else {
        Err(PackedError::Length {
            bytes: packed.len(),
            count,
            bits,
        })
    }
}

/// The bits after the last of `count` elements of `bits` each, in the last byte, are zero
/// (so that each packed run has exactly one encoding). Checks nothing else: see
/// [`check_len`].
pub fn check_padding(packed: &[u8], count: usize, bits: u32) -> Result<(), PackedError> {
    let used = (count as u128 * u128::from(bits) % 8) as u32;
    match packed.last() {
        Some(&last) if used != 0 && last >> used != 0 => Err(PackedError::Padding),
        _ => Ok(()),
    }
}

/// Unpacks `out.len()` elements of `bits` each from `packed`, which must be exactly
/// [`packed_len`] long with zero padding bits. On a padding error `out` holds the elements.
pub fn unpack<L: Lane>(packed: &[u8], bits: u32, out: &mut [L]) -> Result<(), PackedError> {
    check_len(packed, out.len(), bits)?;
    out.fill(L::default());
    add_unpacked(out, packed, 0, bits, low_bits64(bits));
    check_padding(packed, out.len(), bits)
}

/// Adds `acc.len()` elements packed at `bits` from `packed` (starting at bit `bit0`) into
/// `acc`, mod `mask + 1`: the CPU accumulator's kernel for one tile, and [`unpack`]'s (into
/// zeros). Bits past the end of `packed` read as zero.
pub(crate) fn add_unpacked<L: Lane>(
    acc: &mut [L],
    packed: &[u8],
    bit0: usize,
    bits: u32,
    mask: u64,
) {
    if L::BITS == 64 {
        add_unpacked_wide(acc, packed, bit0, bits, mask);
        return;
    }
    let acc: &mut [u32] = bytemuck::cast_slice_mut(acc);
    let mask = mask as u32;
    if bits == 32 && bit0 % 8 == 0 {
        // Whole little-endian words: no bit shuffling.
        let start = bit0 / 8;
        let words = packed
            .get(start..start + acc.len() * 4)
            .unwrap_or_default()
            .chunks_exact(4);
        for (a, w) in acc.iter_mut().zip(words) {
            *a = a.wrapping_add(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        }
        return;
    }
    // Each field lies inside the 8 bytes from the byte holding its first bit (a shift of at
    // most 7 plus at most 31 bits): one unaligned little-endian load per element.
    let take = u64::from(low_bits(bits));
    for (i, a) in acc.iter_mut().enumerate() {
        let bit = bit0 + i * bits as usize;
        let w = window::<8>(packed, bit / 8);
        let x = ((u64::from_le_bytes(w) >> (bit % 8)) & take) as u32;
        *a = a.wrapping_add(x) & mask;
    }
}

/// The `N` bytes of `packed` from `byte`, those past its end read as zero.
#[inline]
fn window<const N: usize>(packed: &[u8], byte: usize) -> [u8; N] {
    let mut w = [0u8; N];
    let end = packed.len();
    if byte + N <= end {
        w.copy_from_slice(&packed[byte..byte + N]);
    } else if byte < end {
        w[..end - byte].copy_from_slice(&packed[byte..end]);
    }
    w
}

/// [`add_unpacked`] for `u64` lanes (b up to 64): each field lies inside the 16 bytes from the
/// byte holding its first bit (a shift of at most 7 plus at most 64 bits).
fn add_unpacked_wide<L: Lane>(acc: &mut [L], packed: &[u8], bit0: usize, bits: u32, mask: u64) {
    let take = u128::from(low_bits64(bits));
    for (i, a) in acc.iter_mut().enumerate() {
        let bit = bit0 + i * bits as usize;
        let w = window::<16>(packed, bit / 8);
        let x = ((u128::from_le_bytes(w) >> (bit % 8)) & take) as u64;
        *a = L::from_u64(a.to_u64().wrapping_add(x) & mask);
    }
}

/// Elements `from .. from + n` of a packed run of `count` elements at `bits` (whose length
/// [`check_len`] has accepted) as a packed run of their own: the format's exact bytes, with
/// zero padding bits. A piece whose first bit starts a byte and whose last bit ends one (or
/// ends the run, whose padding is the run's own) is the run's own bytes, borrowed; any other
/// piece is copied, shifted down to bit 0, with the bits after its last element cleared.
///
/// The sharded accumulator hands each engine its range of an upload with it: at shard
/// boundaries that are multiples of 8 elements, a run that starts on one too (every wire
/// chunk) is cut without a copy at any b.
pub(crate) fn piece(
    packed: &[u8],
    count: usize,
    from: usize,
    n: usize,
    bits: u32,
) -> Cow<'_, [u8]> {
    let b = bits as usize;
    let (first, end) = (from * b, (from + n) * b);
    let len = packed_len(n, bits);
    let byte0 = first / 8;
    if first % 8 == 0 && (end % 8 == 0 || from + n == count) {
        return Cow::Borrowed(&packed[byte0..byte0 + len]);
    }
    let shift = first % 8;
    let mut out: Vec<u8> = (0..len)
        .map(|j| {
            let lo = packed[byte0 + j] >> shift;
            let hi = match packed.get(byte0 + j + 1) {
                Some(&next) if shift > 0 => next << (8 - shift),
                _ => 0,
            };
            lo | hi
        })
        .collect();
    let used = (n * b % 8) as u32;
    if let Some(last) = out.last_mut().filter(|_| used != 0) {
        *last &= (1u8 << used) - 1;
    }
    Cow::Owned(out)
}

/// Elements `from .. from + n` of a packed run, cut for the GPU kernel (see the module docs):
/// `body` and then `tail` are the words to stage, and the piece's first element is the field
/// at bit `first_bit` of them.
#[cfg(any(feature = "gpu", test))]
pub(crate) struct KernelWords<'a> {
    /// The whole words from the one holding the piece's first bit, as the run's bytes.
    pub(crate) body: &'a [u8],
    /// The ragged end padded to a word, then the zero word the kernel reads past the last.
    pub(crate) tail: [u8; KERNEL_TAIL],
    /// The piece's first bit within `body` (below 32).
    pub(crate) first_bit: u32,
}

#[cfg(any(feature = "gpu", test))]
impl KernelWords<'_> {
    /// Bytes to stage: `body` and `tail`.
    pub(crate) fn staged_len(&self) -> usize {
        self.body.len() + self.tail.len()
    }
}

/// Cuts elements `from .. from + n` of `packed` (a run at `bits` whose length
/// [`check_len`] has accepted) into the words the GPU kernel reads.
#[cfg(any(feature = "gpu", test))]
pub(crate) fn kernel_words(packed: &[u8], from: usize, n: usize, bits: u32) -> KernelWords<'_> {
    let word_bytes = KERNEL_WORD_BITS / 8;
    let first_bit = from * bits as usize;
    let byte0 = first_bit / KERNEL_WORD_BITS * word_bytes;
    let end = (first_bit + n * bits as usize)
        .div_ceil(8)
        .min(packed.len());
    // The whole words go straight from the caller's bytes; the ragged end, padded to a word,
    // and the zero word follow.
    let body = (end - byte0) / word_bytes * word_bytes;
    let mut tail = [0u8; KERNEL_TAIL];
    tail[..end - byte0 - body].copy_from_slice(&packed[byte0 + body..end]);
    KernelWords {
        body: &packed[byte0..byte0 + body],
        tail,
        first_bit: (first_bit - byte0 * 8) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips_every_width() {
        for bits in 1..=32u32 {
            let mask = if bits == 32 {
                u32::MAX
            } else {
                (1u32 << bits) - 1
            };
            let values: Vec<u32> = (0..37u32)
                .map(|i| i.wrapping_mul(2_654_435_761) & mask)
                .collect();
            let mut buf = Vec::new();
            pack(&values, bits, &mut buf);
            assert_eq!(buf.len(), packed_len(values.len(), bits));
            let mut back = vec![0u32; values.len()];
            unpack(&buf, bits, &mut back).unwrap();
            assert_eq!(back, values, "bits {bits}");
        }
    }

    #[test]
    fn packed_bits_are_a_little_endian_stream() {
        // Three 4-bit values 0x1, 0x2, 0x3 -> bytes 0x21, 0x03.
        let mut buf = Vec::new();
        pack(&[1u32, 2, 3], 4, &mut buf);
        assert_eq!(buf, [0x21, 0x03]);
        let mut out = [0u32; 3];
        assert!(
            unpack(&[0x21, 0x13], 4, &mut out).is_err(),
            "padding bits must be zero"
        );
        // The packed path checks the same without unpacking.
        assert!(check_padding(&[0x21, 0x13], 3, 4).is_err());
        assert!(check_padding(&[0x21, 0x03], 3, 4).is_ok());
        assert!(check_padding(&[0xff, 0xff], 2, 8).is_ok());
        assert!(check_padding(&[0xff, 0x7f], 3, 5).is_ok());
        assert!(check_padding(&[0xff, 0xff], 3, 5).is_err());
    }

    #[test]
    fn lengths_and_padding_are_typed() {
        let mut out = [0u32; 3];
        assert_eq!(
            unpack(&[0x21], 4, &mut out),
            Err(PackedError::Length {
                bytes: 1,
                count: 3,
                bits: 4
            })
        );
        assert_eq!(
            unpack(&[0x21, 0x13], 4, &mut out),
            Err(PackedError::Padding)
        );
        // As the wire codec reports them.
        assert_eq!(
            PackedError::Length {
                bytes: 1,
                count: 3,
                bits: 4
            }
            .to_string(),
            "1 bytes for 3 elements of 4 bits"
        );
        assert_eq!(PackedError::Padding.to_string(), "non-zero padding bits");
        assert!(check_len(&[0; 2], 3, 4).is_ok());
        assert!(check_len(&[0; 3], 3, 4).is_err());
    }

    #[test]
    fn pieces_are_runs_of_their_own() {
        for bits in 1..=32u32 {
            let values: Vec<u32> = (0..300u32)
                .map(|i| i.wrapping_mul(0x85eb_ca6b).rotate_left(i) & low_bits(bits))
                .collect();
            let mut packed = Vec::new();
            pack(&values, bits, &mut packed);
            for (from, n) in [
                (0, 300),
                (0, 64),
                (64, 236),
                (8, 16),
                (1, 299),
                (13, 50),
                (299, 1),
            ] {
                let cut = piece(&packed, values.len(), from, n, bits);
                let mut back = vec![0u32; n];
                // `unpack` also refuses set padding bits.
                unpack(&cut, bits, &mut back).unwrap();
                assert_eq!(back, values[from..from + n], "b = {bits}, piece {from}+{n}");
                // Whole bytes at both ends (or the run's end) are borrowed, not copied.
                let whole = from * bits as usize % 8 == 0
                    && ((from + n) * bits as usize % 8 == 0 || from + n == values.len());
                assert_eq!(
                    matches!(cut, Cow::Borrowed(_)),
                    whole,
                    "b = {bits}, piece {from}+{n}"
                );
            }
        }
    }

    /// The WGSL kernels' read of element `i`, in Rust (`shaders/packed.wgsl`: `bits_at`, and
    /// `add_packed` for b ≤ 32 or `add_packed_wide` above).
    fn kernel_field(words: &[u32], first_bit: u32, bits: u32, i: u32) -> u64 {
        let bits_at = |w: usize, s: u32| {
            let hi = if s == 0 {
                0
            } else {
                words[w + 1] << ((32 - s) & 31)
            };
            (words[w] >> s) | hi
        };
        let bit = first_bit + i * bits;
        let w = (bit >> 5) as usize;
        let s = bit & 31;
        if bits <= 32 {
            u64::from(bits_at(w, s) & low_bits(bits))
        } else {
            (u64::from(bits_at(w + 1, s)) << 32 | u64::from(bits_at(w, s))) & low_bits64(bits)
        }
    }

    #[test]
    fn kernel_words_hold_every_piece_for_the_kernel() {
        for bits in 1..=64u32 {
            let values: Vec<u64> = (0..300u64)
                .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) & low_bits64(bits))
                .collect();
            let mut packed = Vec::new();
            if bits <= 32 {
                let narrow: Vec<u32> = values.iter().map(|&v| v as u32).collect();
                pack(&narrow, bits, &mut packed);
            } else {
                pack(&values, bits, &mut packed);
            }
            for (from, n) in [(0, 300), (1, 299), (7, 33), (31, 1), (33, 200), (299, 1)] {
                let cut = kernel_words(&packed, from, n, bits);
                assert!(cut.first_bit < 32);
                assert_eq!(cut.body.len() % 4, 0);
                assert_eq!(cut.staged_len() % 4, 0);
                let mut staged = cut.body.to_vec();
                staged.extend_from_slice(&cut.tail);
                let words: Vec<u32> = staged
                    .chunks_exact(4)
                    .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
                    .collect();
                // The last two words are the zero pad the kernels may read past a field's
                // first word.
                assert_eq!(
                    &words[words.len() - KERNEL_PAD_WORDS..],
                    [0; KERNEL_PAD_WORDS]
                );
                for i in 0..n {
                    assert_eq!(
                        kernel_field(&words, cut.first_bit, bits, i as u32),
                        values[from + i],
                        "b = {bits}, piece {from}+{n}, element {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_kernel_reads_the_documented_layout() {
        // What the WGSL duplicates of this module: 32-bit words (`>> 5u`, `& 31u`) and one
        // word read past the field's first (`w + 1u`).
        let src = include_str!("../../shaders/packed.wgsl");
        assert_eq!(KERNEL_WORD_BITS, 1 << 5);
        assert!(src.contains("let w = bit >> 5u;"), "word index");
        assert!(src.contains("let s = bit & 31u;"), "bit within the word");
        // `add_packed` (b <= 32) reads one word past the field's first, `add_packed_wide`
        // (b > 32) two, and never more: the pad is two words.
        assert_eq!(KERNEL_PAD_WORDS, 2);
        // Every read goes through `bits_at(w, s)`, which reads words w and w + 1.
        assert!(src.contains("packed[w + 1u]"), "the one word read past");
        assert_eq!(
            src.matches("packed[").count(),
            2,
            "bits_at is the only reader"
        );
        let (narrow, wide) = src.split_at(src.find("fn add_packed_wide").unwrap());
        assert!(narrow.contains("bits_at(w, s)"), "b <= 32: words w, w + 1");
        assert!(
            wide.contains("bits_at((bit >> 5u) + 1u, bit & 31u)"),
            "b > 32: the high word reads w + 1, w + 2"
        );
        assert_eq!(wide.matches("bits_at(").count(), 2, "and nothing further");
        // A dispatch's last bit fits the kernel's u32 bit index.
        assert!((31 + KERNEL_MAX_ELEMS as u64 * 32) < 1 << 32);
        assert!((31 + KERNEL_MAX_ELEMS_WIDE as u64 * 64) < 1 << 32);
        assert_eq!(kernel_max_elems(32), KERNEL_MAX_ELEMS);
        assert_eq!(kernel_max_elems(33), KERNEL_MAX_ELEMS_WIDE);
    }
}
