//! The W3C Trace Context `tracestate` header (Level 1 grammar).

use super::shorten;

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
    #[error("has {0} list-members; at most 32 are allowed")]
    TooManyMembers(usize),
    #[error("list-member {0:?} has no '='")]
    NoEquals(String),
    #[error("key {0:?} breaks the key grammar")]
    Key(String),
    #[error("the value of key {0:?} breaks the value grammar")]
    Value(String),
    #[error("key {0:?} appears more than once")]
    DuplicateKey(String),
}

impl TracestateError {
    /// A short, stable name for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::TooManyMembers(_) => "too_many_members",
            Self::NoEquals(_) | Self::Key(_) | Self::Value(_) => "grammar",
            Self::DuplicateKey(_) => "duplicate_key",
        }
    }
}

/// A valid `tracestate`: its entries in order, each `key=value`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tracestate {
    entries: Vec<String>,
}

impl Tracestate {
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

/// Parses a `tracestate`. Empty list-members and optional whitespace around them are allowed.
pub fn parse(value: &str) -> Result<Tracestate, TracestateError> {
    let mut entries: Vec<String> = Vec::new();
    let mut keys: Vec<&str> = Vec::new();
    for member in value.split(',') {
        let member = member.trim_matches([' ', '\t']);
        if member.is_empty() {
            continue;
        }
        if keys.len() == MAX_MEMBERS {
            let total = value
                .split(',')
                .filter(|m| !m.trim_matches([' ', '\t']).is_empty())
                .count();
            return Err(TracestateError::TooManyMembers(total));
        }
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
            return Err(TracestateError::DuplicateKey(shorten(key)));
        }
        keys.push(key);
        entries.push(member.to_owned());
    }
    Ok(Tracestate { entries })
}

fn key_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-' | b'*' | b'/')
}

/// `simple-key = lcalpha 0*255(keychar)`, or `tenant-id "@" system-id` with
/// `tenant-id = (lcalpha / DIGIT) 0*240(keychar)` and `system-id = lcalpha 0*13(keychar)`.
fn valid_key(key: &str) -> bool {
    let starts = |s: &str, digit_ok: bool| {
        s.bytes()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || (digit_ok && c.is_ascii_digit()))
    };
    let rest_ok = |s: &str| s.bytes().all(key_char);
    match key.split_once('@') {
        None => starts(key, false) && key.len() <= 256 && rest_ok(key),
        Some((tenant, system)) => {
            starts(tenant, true)
                && tenant.len() <= 241
                && rest_ok(tenant)
                && starts(system, false)
                && system.len() <= 14
                && rest_ok(system)
        }
    }
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
    fn grammar_violations() {
        let cases = [
            ("Rojo=1", TracestateError::Key("Rojo".into())),
            ("1abc=1", TracestateError::Key("1abc".into())),
            ("rojo", TracestateError::NoEquals("rojo".into())),
            ("rojo=", TracestateError::Value("rojo".into())),
            ("rojo=a\u{7f}", TracestateError::Value("rojo".into())),
            ("rojo=é", TracestateError::Value("rojo".into())),
            ("rojo=a=b", TracestateError::Value("rojo".into())),
            ("a@B=1", TracestateError::Key("a@B".into())),
            (
                "a@abcdefghijklmno=1",
                TracestateError::Key("a@abcdefghijklmno".into()),
            ),
            (
                "rojo=1,rojo=2",
                TracestateError::DuplicateKey("rojo".into()),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input), Err(expected), "{input}");
        }
        assert!(
            parse("1tenant@sys=1").is_ok(),
            "a tenant id may start with a digit"
        );
        assert_eq!(
            parse("rojo=a b ").unwrap().header(),
            "rojo=a b",
            "inner spaces are allowed, trailing ones are OWS"
        );
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
