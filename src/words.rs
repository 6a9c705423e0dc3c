//! Byte searches eight bytes at a time, in plain integer arithmetic, and JSON string escaping
//! built on them.
//!
//! The event reader, the log writer and the answers all spend their time looking for a few
//! special bytes (quotes, backslashes, control characters) in runs of ordinary text; testing a
//! whole 64-bit word at once takes a handful of instructions instead of a loop per byte.

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

/// Bytes that end a run of plain JSON string content: quote, backslash, control characters.
static TEXT_STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// Index of the first byte at or after `i` that is a quote, a backslash, a control character or
/// `extra` (which may repeat one of those), or `bytes.len()` when there is none.
pub fn find_text_stop(bytes: &[u8], mut i: usize, extra: u8) -> usize {
    // The last few bytes (all of a short key or value) one at a time, by table.
    let is_stop = |b: u8| TEXT_STOP[usize::from(b)] || b == extra;
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

/// Appends `s` to `out`, escaped for the inside of a JSON string. Runs of plain text are found
/// eight bytes at a time and copied whole. Escaped: quotes, backslashes, control characters, and
/// the two line separators (U+2028, U+2029, which start with byte 0xE2) some log viewers split
/// lines on.
pub fn push_escaped(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let mut plain_from = 0;
    let mut i = 0;
    loop {
        i = find_text_stop(bytes, i, 0xE2);
        let Some(&b) = bytes.get(i) else { break };
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0xE2 => match bytes.get(i + 1..i + 3) {
                Some([0x80, 0xA8]) => "\\u2028",
                Some([0x80, 0xA9]) => "\\u2029",
                // Another character that starts with 0xE2: plain text.
                _ => {
                    i += 1;
                    continue;
                }
            },
            _ => "",
        };
        // `i` is at an ASCII byte or at the start of a character, so both slices are on
        // character boundaries.
        out.push_str(s.get(plain_from..i).unwrap_or_default());
        if escaped.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        } else {
            out.push_str(escaped);
        }
        plain_from = i + if b == 0xE2 { 3 } else { 1 };
        i = plain_from;
    }
    out.push_str(s.get(plain_from..).unwrap_or_default());
}

/// Appends `s` as a JSON string (quoted and escaped).
pub fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    push_escaped(out, s);
    out.push('"');
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

    #[test]
    fn json_strings_are_escaped_as_serde_json_reads_them() {
        for text in [
            "plain",
            "a\"b\\c",
            "line\nbreak\ttab\r",
            "\u{1}\u{1f}\u{7f}",
            "é \u{2028}\u{2029} \u{2030} €",
            "",
        ] {
            let mut out = String::new();
            push_json_string(&mut out, text);
            let back: String = serde_json::from_str(&out).expect("valid JSON");
            assert_eq!(back, text, "{out}");
            assert!(!out.contains('\n') && !out.contains('\u{2028}'), "{out}");
        }
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
