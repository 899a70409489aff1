//! The W3C Trace Context `tracestate` header, by Trace Context Level 2 (the level `traceparent`
//! follows too) and the expectations of the w3c/trace-context test suite: a grammar violation or
//! more than 32 members discards the whole value, a duplicate key keeps its first entry.

use crate::shorten;

/// Most list-members a `tracestate` may hold.
pub const MAX_MEMBERS: usize = 32;
/// jobtrace propagates at least this many characters, as the specification asks; longer values
/// lose whole entries.
pub const MAX_LEN: usize = 512;
/// Entries longer than this are the first to go when the value is too long.
const LARGE_ENTRY: usize = 128;

/// Why a `tracestate` value was rejected as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TracestateError {
    /// More than the 32 list-members the specification allows.
    #[error("has {0} list-members; at most 32 are allowed")]
    TooManyMembers(usize),
    /// A list-member without `=`.
    #[error("list-member {0:?} has no '='")]
    NoEquals(String),
    /// A key outside the key grammar.
    #[error("key {0:?} breaks the key grammar")]
    Key(String),
    /// The value of this key is outside the value grammar.
    #[error("the value of key {0:?} breaks the value grammar")]
    Value(String),
}

/// A valid `tracestate`: its entries in order, each `key=value`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tracestate {
    entries: Vec<String>,
    /// Keys that appeared again after their first entry; the later entries were left out.
    duplicates: Vec<String>,
}

impl Tracestate {
    /// Keys whose later entries were left out.
    pub fn duplicates(&self) -> &[String] {
        &self.duplicates
    }

    /// Whether no entry is left.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The header value: entries joined by commas.
    pub fn header(&self) -> String {
        self.entries.join(",")
    }

    fn len(&self) -> usize {
        self.entries.iter().map(String::len).sum::<usize>() + self.entries.len().saturating_sub(1)
    }

    /// Drops whole entries until the header fits `max_len`: entries over 128 characters first,
    /// then from the end. Returns how many were dropped.
    pub fn truncate(&mut self, max_len: usize) -> usize {
        let before = self.entries.len();
        while self.len() > max_len {
            match self.entries.iter().rposition(|e| e.len() > LARGE_ENTRY) {
                Some(i) => self.entries.remove(i),
                None => self.entries.pop().unwrap_or_default(),
            };
        }
        before - self.entries.len()
    }
}

/// Parses a `tracestate`. Empty list-members and optional whitespace around them are allowed; a
/// key seen before keeps its first entry (the test suite allows keeping either).
pub fn parse(value: &str) -> Result<Tracestate, TracestateError> {
    let mut entries: Vec<String> = Vec::new();
    let mut duplicates: Vec<String> = Vec::new();
    let mut keys: Vec<&str> = Vec::new();
    let members: Vec<&str> = value
        .split(',')
        .map(|m| m.trim_matches([' ', '\t']))
        .filter(|m| !m.is_empty())
        .collect();
    if members.len() > MAX_MEMBERS {
        return Err(TracestateError::TooManyMembers(members.len()));
    }
    for member in members {
        let (key, val) = member
            .split_once('=')
            .ok_or_else(|| TracestateError::NoEquals(shorten(member)))?;
        if !valid_key(key) {
            return Err(TracestateError::Key(shorten(key)));
        }
        if !valid_value(val) {
            return Err(TracestateError::Value(shorten(key)));
        }
        if keys.contains(&key) {
            let key = shorten(key);
            if !duplicates.contains(&key) {
                duplicates.push(key);
            }
            continue;
        }
        keys.push(key);
        entries.push(member.to_owned());
    }
    Ok(Tracestate {
        entries,
        duplicates,
    })
}

/// Level 2: `key = ( lcalpha / DIGIT ) 0*255( keychar )`, with
/// `keychar = lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@"`.
fn valid_key(key: &str) -> bool {
    let key_char = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-*/@".contains(&c);
    let bytes = key.as_bytes();
    bytes
        .first()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && bytes.len() <= 256
        && bytes.iter().copied().all(key_char)
}

/// `value = 0*255(chr) nblk-chr`: printable ASCII without ',' and '=', not ending in a space.
fn valid_value(value: &str) -> bool {
    let printable = |c: u8| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=';
    !value.is_empty() && value.len() <= 256 && value.bytes().all(printable) && !value.ends_with(' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_values_keep_their_entries_in_order() {
        let ts = parse("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE ,,\tvendor@sys=x").unwrap();
        assert_eq!(
            ts.header(),
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE,vendor@sys=x"
        );
    }

    #[test]
    fn empty_is_valid_and_empty() {
        assert!(parse("").unwrap().is_empty());
        assert!(parse(" , ").unwrap().is_empty());
    }

    #[test]
    fn thirty_two_members_are_allowed() {
        let value: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
        assert_eq!(parse(&value.join(",")).unwrap().entries.len(), 32);
    }

    #[test]
    fn thirty_three_members_are_rejected() {
        let value: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert_eq!(
            parse(&value.join(",")),
            Err(TracestateError::TooManyMembers(33))
        );
    }

    #[test]
    fn grammar_violations_discard_the_whole_value() {
        let cases = [
            ("Rojo=1", TracestateError::Key("Rojo".into())),
            ("foo =1", TracestateError::Key("foo ".into())),
            ("foo.bar=1", TracestateError::Key("foo.bar".into())),
            ("@foo=1,bar=2", TracestateError::Key("@foo".into())),
            ("_foo=1", TracestateError::Key("_foo".into())),
            ("a@B=1", TracestateError::Key("a@B".into())),
            ("rojo", TracestateError::NoEquals("rojo".into())),
            ("foo=,bar=3", TracestateError::Value("foo".into())),
            ("rojo=a\u{7f}", TracestateError::Value("rojo".into())),
            ("rojo=é", TracestateError::Value("rojo".into())),
            ("foo=bar=baz", TracestateError::Value("foo".into())),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input), Err(expected), "{input}");
        }
        assert_eq!(
            parse("rojo=a b ").unwrap().header(),
            "rojo=a b",
            "inner spaces are allowed, trailing ones are OWS"
        );
    }

    #[test]
    fn level_2_keys_may_start_with_a_digit_and_hold_at_signs_anywhere_after_the_first() {
        for key in [
            "1abc",
            "foo@",
            "foo@@bar",
            "foo@bar@baz",
            "a@abcdefghijklmno",
            &"z".repeat(256),
            &format!("{}@{}", "t".repeat(241), "v".repeat(14)),
            &format!("{}@v", "t".repeat(242)),
            &format!("t@{}", "v".repeat(15)),
        ] {
            let ts = parse(&format!("foo=1,{key}=1")).unwrap_or_else(|e| panic!("{key}: {e}"));
            assert_eq!(ts.header(), format!("foo=1,{key}=1"));
        }
        let long = "z".repeat(257);
        assert_eq!(
            parse(&format!("foo=1,{long}=1")),
            Err(TracestateError::Key(crate::shorten(&long)))
        );
    }

    #[test]
    fn duplicate_keys_keep_their_first_entry() {
        let ts = parse("foo=1,bar=2,foo=3,foo=4,bar=5").unwrap();
        assert_eq!(ts.header(), "foo=1,bar=2");
        assert_eq!(ts.duplicates(), ["foo", "bar"]);
        assert!(parse("foo=1,foo=1").unwrap().header() == "foo=1");
        assert!(parse("foo=1").unwrap().duplicates().is_empty());
    }

    #[test]
    fn leading_spaces_of_a_value_are_kept() {
        assert_eq!(parse("foo= 1").unwrap().header(), "foo= 1");
        assert_eq!(
            parse("foo=1 \t , \t bar=2, \t baz=3").unwrap().header(),
            "foo=1,bar=2,baz=3"
        );
    }

    #[test]
    fn thirty_three_members_with_duplicates_are_still_too_many() {
        let value = vec!["foo=1"; 33].join(",");
        assert_eq!(parse(&value), Err(TracestateError::TooManyMembers(33)));
    }

    #[test]
    fn long_value_loses_large_entries_first_then_from_the_end() {
        let big = format!("big={}", "x".repeat(200));
        let small: Vec<String> = (0..20)
            .map(|i| format!("k{i:02}=vvvvvvvvvvvvvvvvv"))
            .collect();
        let value = format!("{},{big},{}", small[..10].join(","), small[10..].join(","));
        assert!(value.len() > 600);
        let mut ts = parse(&value).unwrap();
        let dropped = ts.truncate(MAX_LEN);
        let header = ts.header();
        assert!(header.len() <= MAX_LEN);
        assert!(
            !header.contains("big="),
            "the entry over 128 characters goes first"
        );
        assert!(
            header.starts_with("k00="),
            "entries are dropped from the end"
        );
        assert_eq!(dropped, 1 + 20 - ts.entries.len());
        assert!(parse(&header).is_ok(), "what is left is still valid");
    }

    #[test]
    fn short_value_is_not_truncated() {
        let mut ts = parse("a=1,b=2").unwrap();
        assert_eq!(ts.truncate(MAX_LEN), 0);
        assert_eq!(ts.header(), "a=1,b=2");
    }
}
