//! Byte searches eight bytes at a time, in plain integer arithmetic.
//!
//! The event reader and the log writer both spend their time looking for a few special bytes
//! (quotes, backslashes, control characters) in runs of ordinary text; testing a whole 64-bit
//! word at once takes a handful of instructions instead of a loop per byte.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Eight bytes at `i` as one word (first byte lowest), when there are eight left.
pub fn word_at(bytes: &[u8], i: usize) -> Option<u64> {
    bytes.get(i..)?.first_chunk::<8>().map(|w| u64::from_le_bytes(*w))
}

/// The high bit of each byte of `word` that is below `n` (`n` at most 128). Bits above the
/// lowest one may be false alarms; the lowest one is always right.
pub fn bytes_below(word: u64, n: u8) -> u64 {
    word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS
}

/// The high bit of each byte of `word` equal to `byte`, with the same caveat.
pub fn bytes_equal(word: u64, byte: u8) -> u64 {
    bytes_below(word ^ (ONES * u64::from(byte)), 1)
}

/// Index within the word of the first byte a mask from the functions above marks.
pub fn first_marked(mask: u64) -> usize {
    (mask.trailing_zeros() / 8) as usize
}

/// The number of bytes of `word`, from the first, that equal `byte` (8 when all do).
pub fn leading_equal(word: u64, byte: u8) -> usize {
    let other = word ^ (ONES * u64::from(byte));
    (other.trailing_zeros() / 8) as usize
}

/// Index of the first byte at or after `i` that is a quote, a backslash, a control character or
/// `extra` (which may repeat one of those), or `bytes.len()` when there is none.
pub fn find_text_stop(bytes: &[u8], mut i: usize, extra: u8) -> usize {
    let is_stop = |b: u8| b == b'"' || b == b'\\' || b < 0x20 || b == extra;
    while let Some(word) = word_at(bytes, i) {
        let stops =
            bytes_equal(word, b'"') | bytes_equal(word, b'\\') | bytes_below(word, 0x20) | bytes_equal(word, extra);
        if stops != 0 {
            return i + first_marked(stops);
        }
        i += 8;
    }
    while bytes.get(i).is_some_and(|&b| !is_stop(b)) {
        i += 1;
    }
    i.min(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn special() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                3 => Just(b' '),
                2 => Just(b'a'),
                2 => prop::sample::select(b"\t\n\r\"\\\x00\x1f\x20\x7f\x80\xe2\xff".to_vec()),
            ],
            0..40,
        )
    }

    proptest! {
        /// The word-at-a-time searches stop exactly where a byte-by-byte search stops.
        #[test]
        fn word_searches_match_the_byte_rule(bytes in special(), start in 0usize..40, extra in prop::sample::select(vec![b'"', 0xE2, b' '])) {
            let start = start.min(bytes.len());
            let naive = (start..bytes.len())
                .find(|&i| matches!(bytes[i], b'"' | b'\\' | 0..=0x1f) || bytes[i] == extra)
                .unwrap_or(bytes.len());
            prop_assert_eq!(find_text_stop(&bytes, start, extra), naive);
            if let Some(word) = word_at(&bytes, start) {
                let run = bytes[start..start + 8].iter().take_while(|&&b| b == b' ').count();
                prop_assert_eq!(leading_equal(word, b' '), run);
            }
        }
    }
}
