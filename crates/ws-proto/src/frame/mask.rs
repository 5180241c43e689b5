//! Payload masking (RFC 6455 §5.3).
//!
//! Masking is an XOR of the payload with a repeating 4-byte key. It is the
//! innermost loop of a server's receive path, so it works on eight bytes at a
//! time; the compiler turns the loop over `[u8; 8]` chunks into SIMD code.

/// XOR `buf` with `key`, as if `buf` started at byte 0 of the payload.
///
/// Masking and unmasking are the same operation.
///
/// ```
/// let mut data = *b"Hello";
/// ws_proto::frame::apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d]);
/// assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]); // RFC 6455 §5.7
/// ```
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    apply_mask_at(buf, key, 0);
}

/// XOR `buf` with `key`, where `buf` starts at byte `offset` of the payload.
///
/// This lets a payload be unmasked piece by piece as it arrives.
#[inline]
pub fn apply_mask_at(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate(key, offset);
    let wide = [
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ];
    let wide = u64::from_ne_bytes(wide);
    let (chunks, rest) = buf.as_chunks_mut::<8>();
    for chunk in chunks {
        *chunk = (u64::from_ne_bytes(*chunk) ^ wide).to_ne_bytes();
    }
    // `rest` starts at a multiple of 8, so the key phase is unchanged.
    for (byte, k) in rest.iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

/// The byte-at-a-time reference loop; kept for tests and the benchmark that
/// compares against it.
#[doc(hidden)]
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[(i + offset) % 4];
    }
}

#[inline]
fn rotate(key: [u8; 4], offset: usize) -> [u8; 4] {
    let s = offset % 4;
    [key[s], key[(s + 1) % 4], key[(s + 2) % 4], key[(s + 3) % 4]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_bytewise_for_all_lengths_and_offsets() {
        let key = [0x12, 0x34, 0x56, 0x78];
        for len in 0..70 {
            for offset in 0..9 {
                let data: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(31)).collect();
                let mut fast = data.clone();
                let mut slow = data.clone();
                apply_mask_at(&mut fast, key, offset);
                apply_mask_bytewise(&mut slow, key, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn any_key_offset_and_split(
            data in proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..200),
            key: [u8; 4],
            offset in 0usize..usize::MAX - 1000,
            split in 0usize..200,
        ) {
            let mut fast = data.clone();
            let mut slow = data.clone();
            apply_mask_at(&mut fast, key, offset);
            apply_mask_bytewise(&mut slow, key, offset);
            proptest::prop_assert_eq!(&fast, &slow);
            // In two pieces, then unmasked again: the original.
            let split = split.min(data.len());
            let (a, b) = fast.split_at_mut(split);
            apply_mask_at(a, key, offset);
            apply_mask_at(b, key, offset + split);
            proptest::prop_assert_eq!(fast, data);
        }
    }

    #[test]
    fn piecewise_equals_whole() {
        let key = [1, 2, 3, 4];
        let data: Vec<u8> = (0..100u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key);
        let mut pieces = data.clone();
        let (a, b) = pieces.split_at_mut(37);
        apply_mask_at(a, key, 0);
        apply_mask_at(b, key, 37);
        assert_eq!(whole, pieces);
    }
}
