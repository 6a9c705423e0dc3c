//! The quick reading of an event body: one pass over the bytes, building the [`Event`] as it goes.
//!
//! It reads the plain bodies NSPS sends and steps aside on anything else: [`read`] returns `None`
//! and serde_json reads the body instead, deciding whether it is valid and what is wrong with it.
//! It steps aside on escaped text in a key or in a value the connector keeps, a member the
//! connector reads given twice, a number where a value is read (other than a small integer),
//! nesting deeper than [`MAX_DEPTH`], and any JSON syntax error. Members the connector does not
//! read are still checked to be valid JSON, exactly as serde_json checks the members it skips.
//!
//! So it never accepts a body serde_json refuses, and what it builds is what serde_json would
//! build: the property tests and the fuzz target compare the two on generated bodies.

use super::{AccessPolicy, AccountInfo, BillStatus, Blocked, Event, EventData, Loose, Obj, OneOrMany, PbData};
use super::{PolicyAttribute, SimInfo};
use crate::words::{find_text_stop, leading_equal, word_at};

/// Deepest nesting read here (serde_json's own limit is higher, so it never decides the answer).
const MAX_DEPTH: u32 = 64;

/// The event in `text`, or `None` when serde_json has to read it.
pub(super) fn read(text: &str) -> Option<Event> {
    let mut r = Reader {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        depth: 0,
    };
    let event = r.event()?;
    r.skip_space();
    (r.pos == r.bytes.len()).then_some(event)
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: u32,
}

/// Stores a member's value; a member given twice is serde's "duplicate field" error.
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(value);
            Some(())
        }
    }
}

/// Where white space starting at `i` ends. Pretty-printed bodies indent with runs of spaces,
/// taken eight at a time.
fn space_end(bytes: &[u8], mut i: usize) -> usize {
    loop {
        if let Some(word) = word_at(bytes, i) {
            let run = leading_equal(word, b' ');
            i += run;
            if run == 8 {
                continue;
            }
        }
        match bytes.get(i) {
            Some(b' ' | b'\n' | b'\r' | b'\t') => i += 1,
            _ => return i,
        }
    }
}

/// Where the plain run of string content starting at `i` ends: at a quote, a backslash, a
/// control character or the end of the body.
fn text_end(bytes: &[u8], i: usize) -> usize {
    find_text_stop(bytes, i, b'"')
}

impl<'a> Reader<'a> {
    fn skip_space(&mut self) {
        if let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.pos) {
            self.pos = space_end(self.bytes, self.pos);
        }
    }

    /// The next byte that is not white space (not consumed).
    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.bytes.get(self.pos).copied()
    }

    fn consume(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.pos + word.len();
        (self.bytes.get(self.pos..end)? == word).then(|| self.pos = end)
    }

    fn enter(&mut self, open: u8) -> Option<()> {
        self.consume(open)?;
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    /// Closes an object or a list when `close` is next; `None` when it is not.
    fn leave(&mut self, close: u8) -> Option<()> {
        (self.peek()? == close).then(|| {
            self.pos += 1;
            self.depth -= 1;
        })
    }

    /// Walks an object: `member` gets each key and must read that member's value.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.enter(b'{')?;
        if self.leave(b'}').is_some() {
            return Some(());
        }
        loop {
            let key = self.plain_text()?;
            self.consume(b':')?;
            member(self, key)?;
            if self.consume(b',').is_none() {
                return self.leave(b'}');
            }
        }
    }

    /// Walks a list: `item` must read each element.
    fn list(&mut self, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.enter(b'[')?;
        if self.leave(b']').is_some() {
            return Some(());
        }
        loop {
            item(self)?;
            if self.consume(b',').is_none() {
                return self.leave(b']');
            }
        }
    }

    /// A list whose every element `item` reads.
    fn list_of<T>(&mut self, mut item: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        let mut all = Vec::new();
        self.list(|r| {
            all.push(item(r)?);
            Some(())
        })?;
        Some(all)
    }

    /// A string without escapes, borrowed from the body.
    fn plain_text(&mut self) -> Option<&'a str> {
        self.consume(b'"')?;
        let start = self.pos;
        let i = text_end(self.bytes, start);
        if self.bytes.get(i) != Some(&b'"') {
            return None;
        }
        self.pos = i + 1;
        // The body is UTF-8 and both ends are ASCII quotes, so this slice is always text.
        self.text.get(start..i)
    }

    /// Any valid string, escapes included, without keeping it.
    fn skip_text(&mut self) -> Option<()> {
        self.consume(b'"')?;
        let mut i = self.pos;
        loop {
            i = text_end(self.bytes, i);
            match *self.bytes.get(i)? {
                b'"' => break,
                b'\\' => {
                    i += match *self.bytes.get(i + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => 2,
                        b'u' => {
                            let hex = self.bytes.get(i + 2..i + 6)?;
                            // Surrogate halves (`\uD800`-`\uDFFF`) are left to serde_json.
                            let surrogate = matches!(hex[0], b'd' | b'D')
                                && matches!(hex[1], b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F');
                            if surrogate || !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            6
                        }
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
        self.pos = i + 1;
        Some(())
    }

    /// A JSON number, checked against the grammar; returns whether it is a small integer.
    fn skip_number(&mut self) -> Option<bool> {
        let b = self.bytes;
        let start = self.pos;
        let mut i = start;
        let digits = |mut i: usize| {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => i = digits(i),
            _ => return None,
        }
        let mut integer = true;
        if b.get(i) == Some(&b'.') {
            let end = digits(i + 1);
            if end == i + 1 {
                return None;
            }
            (i, integer) = (end, false);
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            let end = digits(i);
            if end == i {
                return None;
            }
            (i, integer) = (end, false);
        }
        self.pos = i;
        Some(integer && i - start <= 18)
    }

    /// Any JSON value, checked and not kept.
    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.skip_text(),
            b'{' => self.object(|r, _| r.skip_value()),
            b'[' => self.list(Self::skip_value),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.skip_number().map(|_| ()),
            _ => None,
        }
    }

    /// `null` as `None`, else what `read` reads.
    fn nullable<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Some(None);
        }
        read(self).map(Some)
    }

    fn owned_text(&mut self) -> Option<String> {
        self.plain_text().map(str::to_owned)
    }

    fn optional_text(&mut self) -> Option<Option<String>> {
        self.nullable(Self::owned_text)
    }

    fn loose(&mut self) -> Option<Loose> {
        Some(match self.peek()? {
            b'n' => {
                self.literal(b"null")?;
                Loose::Null
            }
            b'"' => Loose::Text(self.owned_text()?),
            b'-' | b'0'..=b'9' => {
                // serde_json reads the number's value here, which can fail; leave others to it.
                if !self.skip_number()? {
                    return None;
                }
                Loose::Other
            }
            _ => {
                self.skip_value()?;
                Loose::Other
            }
        })
    }

    fn event(&mut self) -> Option<Event> {
        let (mut event_id, mut data, mut pb_data, mut created_at, mut updated_at) = (None, None, None, None, None);
        self.object(|r, key| match key {
            "event_id" => once(&mut event_id, r.owned_text()?),
            "data" => once(&mut data, r.event_data()?),
            "pb_data" => once(&mut pb_data, r.nullable(Self::pb_data)?),
            "created_at" => once(&mut created_at, r.loose()?),
            "updated_at" => once(&mut updated_at, r.loose()?),
            _ => r.skip_value(),
        })?;
        let text = |l: Option<Loose>| match l {
            Some(Loose::Text(s)) => Some(s),
            _ => None,
        };
        Some(Event {
            event_id: event_id?,
            data: Obj(data?),
            pb_data: pb_data.flatten().map(Obj),
            created_at: text(created_at),
            updated_at: text(updated_at),
        })
    }

    fn event_data(&mut self) -> Option<EventData> {
        let mut event_type = None;
        self.object(|r, key| match key {
            "event_type" => once(&mut event_type, r.owned_text()?),
            _ => r.skip_value(),
        })?;
        Some(EventData {
            event_type: event_type?,
        })
    }

    fn pb_data(&mut self) -> Option<PbData> {
        let (mut account_info, mut sim_info, mut prev_sim_info, mut access_policy_info) = (None, None, None, None);
        self.object(|r, key| match key {
            "account_info" => once(&mut account_info, r.nullable(Self::account_info)?),
            "sim_info" => once(&mut sim_info, r.nullable(Self::sim_info)?),
            "prev_sim_info" => once(&mut prev_sim_info, r.nullable(Self::sim_info)?),
            "access_policy_info" => once(&mut access_policy_info, r.nullable(Self::access_policies)?),
            _ => r.skip_value(),
        })?;
        Some(PbData {
            account_info: account_info.flatten().map(Obj),
            sim_info: sim_info.flatten().map(Obj),
            prev_sim_info: prev_sim_info.flatten().map(Obj),
            access_policy_info: access_policy_info.flatten(),
        })
    }

    fn account_info(&mut self) -> Option<AccountInfo> {
        let (mut bill_status, mut blocked, mut id) = (None, None, None);
        self.object(|r, key| match key {
            "bill_status" => once(&mut bill_status, r.nullable(|r| r.plain_text().map(BillStatus::parse))?),
            "blocked" => once(&mut blocked, r.nullable(Self::blocked)?),
            "id" => once(&mut id, r.optional_text()?),
            _ => r.skip_value(),
        })?;
        Some(AccountInfo {
            bill_status: bill_status.flatten(),
            blocked: blocked.flatten(),
            id: id.flatten(),
        })
    }

    fn blocked(&mut self) -> Option<Blocked> {
        match self.peek()? {
            b't' => self.literal(b"true").map(|()| Blocked(true)),
            b'f' => self.literal(b"false").map(|()| Blocked(false)),
            b'"' => Blocked::from_text(self.plain_text()?),
            _ => None,
        }
    }

    fn sim_info(&mut self) -> Option<SimInfo> {
        let (mut imsi, mut msisdn) = (None, None);
        self.object(|r, key| match key {
            "imsi" => once(&mut imsi, r.optional_text()?),
            "msisdn" => once(&mut msisdn, r.optional_text()?),
            _ => r.skip_value(),
        })?;
        Some(SimInfo {
            imsi: imsi.flatten(),
            msisdn: msisdn.flatten(),
        })
    }

    /// One policy object or a list of them.
    fn access_policies(&mut self) -> Option<OneOrMany<Obj<AccessPolicy>>> {
        if self.peek()? == b'{' {
            return self.access_policy().map(|p| OneOrMany::One(Obj(p)));
        }
        self.list_of(|r| r.access_policy().map(Obj)).map(OneOrMany::Many)
    }

    fn access_policy(&mut self) -> Option<AccessPolicy> {
        let mut attributes = None;
        self.object(|r, key| match key {
            "attributes" => once(&mut attributes, r.nullable(Self::attributes)?),
            _ => r.skip_value(),
        })?;
        Some(AccessPolicy {
            attributes: attributes.flatten(),
        })
    }

    fn attributes(&mut self) -> Option<Vec<Obj<PolicyAttribute>>> {
        self.list_of(|r| {
            let (mut name, mut value) = (None, None);
            r.object(|r, key| match key {
                "name" => once(&mut name, r.loose()?),
                "value" => once(&mut value, r.loose()?),
                _ => r.skip_value(),
            })?;
            Some(Obj(PolicyAttribute {
                name: name.unwrap_or_default(),
                value: value.unwrap_or_default(),
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{read, space_end};
    use crate::nsps::parse_event_tracked;
    use proptest::prelude::*;

    proptest! {
        /// White space ends where a byte-by-byte search says it does.
        #[test]
        fn space_runs_end_where_bytes_say(
            bytes in prop::collection::vec(prop::sample::select(b"     \t\n\ra\"".to_vec()), 0..40),
            start in 0usize..40,
        ) {
            let start = start.min(bytes.len());
            let naive = (start..bytes.len())
                .find(|&i| !matches!(bytes[i], b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(bytes.len());
            prop_assert_eq!(space_end(&bytes, start), naive);
        }
    }

    /// What the quick reading builds, as text; `None` when it steps aside.
    fn quick(body: &str) -> Option<String> {
        read(body).map(|e| format!("{e:?}"))
    }

    /// The quick reading reads `body` and builds what serde_json builds.
    fn same(body: &str) {
        let tracked = parse_event_tracked(body.as_bytes()).map(|e| format!("{e:?}"));
        assert_eq!(quick(body), Some(tracked.expect("serde_json reads it")), "{body}");
    }

    /// The quick reading steps aside on `body`.
    fn aside(body: &str) {
        assert_eq!(quick(body), None, "{body}");
    }

    #[test]
    fn every_fixture_is_read_quickly_and_the_same() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).expect("fixtures") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "json") {
                same(&std::fs::read_to_string(&path).expect("read"));
                seen += 1;
            }
        }
        assert!(seen >= 10, "only {seen} fixtures");
    }

    #[test]
    fn loose_and_nullable_members_read_as_serde_json_reads_them() {
        same(r#"{"event_id":"1","data":{"event_type":"x"},"pb_data":null,"created_at":5,"updated_at":null}"#);
        same(
            r#" {"event_id":"1","data":{"event_type":"x","variables":{"a":[1,2.5e-3,-0,true,null,"\"\u00e9\n"]}},
            "pb_data":{"account_info":{"bill_status":"C","blocked":"yes","id":null},"sim_info":null,
            "prev_sim_info":{"imsi":"1","msisdn":null},"access_policy_info":[{"attributes":null},
            {"attributes":[{"name":"cs_profile","value":{"k":[]}},{"name":true},{}]}]}} "#,
        );
        same(r#"{"event_id":"1","data":{"event_type":"x"},"pb_data":{"account_info":{"blocked":false}}}"#);
        same(r#"{"event_id":"é","data":{"event_type":"x"},"pb_data":{"access_policy_info":{"attributes":[]}}}"#);
    }

    #[test]
    fn unusual_bodies_are_left_to_serde_json() {
        // Escapes where text is kept, or in any key.
        aside(r#"{"event_id":"a\"b","data":{"event_type":"x"}}"#);
        aside(r#"{"event\u005fid":"1","data":{"event_type":"x"}}"#);
        aside(r#"{"event_id":"1","data":{"event_type":"x","v":{"k\n":1}}}"#);
        // Numbers where a value is read, and surrogate escapes anywhere.
        aside(r#"{"event_id":"1","data":{"event_type":"x"},"created_at":1e999}"#);
        aside(r#"{"event_id":"1","data":{"event_type":"x"},"pb_data":{"account_info":{"blocked":1}}}"#);
        aside(r#"{"event_id":"1","data":{"event_type":"x","v":"\ud83d\ude00"}}"#);
        // Members given twice, missing, or of the wrong type.
        aside(r#"{"event_id":"1","event_id":"2","data":{"event_type":"x"}}"#);
        aside(r#"{"event_id":"1"}"#);
        aside(r#"{"event_id":"1","data":{"event_type":5}}"#);
        aside(r#"{"event_id":"1","data":{"event_type":"x"},"pb_data":{"sim_info":[]}}"#);
        aside(r#"{"event_id":"1","data":{"event_type":"x"},"pb_data":{"account_info":{"blocked":"maybe"}}}"#);
        // Deep nesting, syntax errors, trailing content.
        let deep = format!(
            r#"{{"event_id":"1","data":{{"event_type":"x"}},"v":{}1{}}}"#,
            "[".repeat(70),
            "]".repeat(70)
        );
        aside(&deep);
        for bad in [
            r#"{"event_id":"1","data":{"event_type":"x"},}"#,
            r#"{"event_id":"1","data":{"event_type":"x"},"v":[1,]}"#,
            r#"{"event_id":"1","data":{"event_type":"x"},"v":01}"#,
            r#"{"event_id":"1","data":{"event_type":"x"},"v":1.}"#,
            r#"{"event_id":"1","data":{"event_type":"x"},"v":"\x"}"#,
            "{\"event_id\":\"1\",\"data\":{\"event_type\":\"x\"},\"v\":\"\t\"}",
            r#"{"event_id":"1","data":{"event_type":"x"},"v":tru}"#,
            r#"{"event_id":"1","data":{"event_type":"x"}} {}"#,
            r#"{"event_id":"1","data":{"event_type":"x"}"#,
            "",
        ] {
            aside(bad);
            assert!(parse_event_tracked(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
