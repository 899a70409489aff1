//! The W3C Trace Context `traceparent` header.

use std::fmt;

/// Why a `traceparent` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceparentError {
    /// Not all ASCII.
    #[error("contains characters outside ASCII")]
    NonAscii,
    /// A version 00 value of another length than 55.
    #[error("is {0} characters long; version 00 has exactly 55")]
    Length(usize),
    /// Shorter than any version allows.
    #[error("is shorter than the 55 characters any version needs")]
    TooShort,
    /// A version that isn't two lowercase hex digits.
    #[error("version {0:?} is not two lowercase hex digits")]
    Version(String),
    /// Version ff, which the specification forbids.
    #[error("version ff is forbidden")]
    VersionFf,
    /// A field not followed by `-`.
    #[error("fields must be separated by '-'")]
    Separator,
    /// This field (`trace-id`, `parent-id` or `trace-flags`) is not lowercase hex.
    #[error("{0} is not lowercase hex")]
    NotLowerHex(&'static str),
    /// An all-zero trace-id.
    #[error("trace-id is all zeros")]
    ZeroTraceId,
    /// An all-zero parent-id.
    #[error("parent-id is all zeros")]
    ZeroParentId,
}

/// A 16-byte trace id, never all zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id, never all zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(pub [u8; 8]);

/// The flags jobtrace writes: `sampled` (0x01) and `random` (0x02, Trace Context Level 2).
/// Other bits are reserved and written as zero.
const KNOWN_FLAGS: u8 = 0x03;

/// W3C trace flags: `sampled` and, from Trace Context Level 2, `random` (the trace id's right 56
/// bits are random). Reserved bits are dropped when flags are read, so they are written as zero.
/// Shown as the two lowercase hex digits of `traceparent`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TraceFlags(u8);

impl TraceFlags {
    /// No flag set: not sampled.
    pub const NONE: Self = Self(0);
    /// The caller may have recorded its span.
    pub const SAMPLED: Self = Self(0x01);
    /// The trace id's right 56 bits are random.
    pub const RANDOM: Self = Self(0x02);

    /// The flags of `bits`, its reserved bits dropped.
    #[must_use]
    pub const fn from_bits(bits: u8) -> Self {
        Self(bits & KNOWN_FLAGS)
    }

    /// The flags as the byte `traceparent` and OTLP carry.
    #[must_use]
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether `sampled` is set.
    #[must_use]
    pub const fn is_sampled(self) -> bool {
        self.0 & Self::SAMPLED.0 != 0
    }

    /// Whether `random` is set.
    #[must_use]
    pub const fn is_random(self) -> bool {
        self.0 & Self::RANDOM.0 != 0
    }

    /// Only the `sampled` flag of these, if set.
    #[must_use]
    pub const fn sampled_only(self) -> Self {
        Self(self.0 & Self::SAMPLED.0)
    }
}

impl std::ops::BitOr for TraceFlags {
    type Output = Self;

    fn bitor(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl fmt::Display for TraceFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}", self.0)
    }
}

/// A parsed `traceparent`, always written back as version 00.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traceparent {
    /// The trace.
    pub trace_id: TraceId,
    /// The parent span: the caller's, or the pod attempt's in what jobtrace injects.
    pub parent_id: SpanId,
    /// The trace flags.
    pub flags: TraceFlags,
}

impl Traceparent {
    /// Whether the `sampled` flag is set.
    pub fn sampled(&self) -> bool {
        self.flags.is_sampled()
    }

    /// The same trace and flags with another parent: what a child of `span` propagates.
    #[must_use]
    pub fn with_parent(self, span: SpanId) -> Self {
        Self {
            parent_id: span,
            ..self
        }
    }
}

/// Parses a `traceparent` by the W3C Trace Context rules: version 00 is exactly 55 characters of
/// lowercase hex; a higher version is read by its first four fields and must be followed by
/// nothing or by `-`; version ff is invalid; all-zero ids are invalid.
pub fn parse(value: &str) -> Result<Traceparent, TraceparentError> {
    if !value.is_ascii() {
        return Err(TraceparentError::NonAscii);
    }
    let bytes = value.as_bytes();
    if bytes.len() < 2 || !is_lower_hex(&bytes[..2]) {
        let version: String = value.chars().take(2).collect();
        return Err(TraceparentError::Version(version));
    }
    let version = &value[..2];
    if version == "ff" {
        return Err(TraceparentError::VersionFf);
    }
    if version == "00" && bytes.len() != 55 {
        return Err(TraceparentError::Length(bytes.len()));
    }
    if bytes.len() < 55 {
        return Err(TraceparentError::TooShort);
    }
    if bytes.len() > 55 && bytes[55] != b'-' {
        return Err(TraceparentError::Separator);
    }
    if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
        return Err(TraceparentError::Separator);
    }
    let trace = hex_field::<16>(&bytes[3..35]).ok_or(TraceparentError::NotLowerHex("trace-id"))?;
    let parent =
        hex_field::<8>(&bytes[36..52]).ok_or(TraceparentError::NotLowerHex("parent-id"))?;
    let flags = hex_field::<1>(&bytes[53..55]).ok_or(TraceparentError::NotLowerHex("flags"))?;
    if trace == [0; 16] {
        return Err(TraceparentError::ZeroTraceId);
    }
    if parent == [0; 8] {
        return Err(TraceparentError::ZeroParentId);
    }
    Ok(Traceparent {
        trace_id: TraceId(trace),
        parent_id: SpanId(parent),
        flags: TraceFlags::from_bits(flags[0]),
    })
}

fn is_lower_hex(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

fn hex_field<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
    if bytes.len() != 2 * N || !is_lower_hex(bytes) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0]) << 4) | nibble(pair[1]);
    }
    Some(out)
}

fn nibble(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        _ => b - b'a' + 10,
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Display for Traceparent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-{}-{}", self.trace_id, self.parent_id, self.flags)
    }
}

impl SpanId {
    /// Parses 16 lowercase hex digits, not all zeros.
    pub fn parse(value: &str) -> Option<Self> {
        hex_field::<8>(value.as_bytes())
            .filter(|id| *id != [0; 8])
            .map(Self)
    }

    /// A span id from 8 random bytes; zero, which is invalid, becomes one.
    pub fn from_random(bytes: [u8; 8]) -> Self {
        if bytes == [0; 8] {
            Self([0, 0, 0, 0, 0, 0, 0, 1])
        } else {
            Self(bytes)
        }
    }
}

impl TraceId {
    /// A trace id from random bytes (never all zeros).
    pub fn from_random(mut bytes: [u8; 16]) -> Self {
        if bytes == [0; 16] {
            bytes[15] = 1;
        }
        Self(bytes)
    }

    /// Parses 32 lowercase hex digits, not all zeros.
    pub fn parse(value: &str) -> Option<Self> {
        hex_field::<16>(value.as_bytes())
            .filter(|id| *id != [0; 16])
            .map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn valid_version_00_round_trips() {
        let tp = parse(VALID).unwrap();
        assert!(tp.sampled());
        assert_eq!(tp.to_string(), VALID);
        assert_eq!(tp.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.parent_id.to_string(), "00f067aa0ba902b7");
    }

    #[test]
    fn rejections() {
        let cases: &[(&str, TraceparentError)] = &[
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                TraceparentError::NotLowerHex("trace-id"),
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
                TraceparentError::NotLowerHex("parent-id"),
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                TraceparentError::ZeroTraceId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                TraceparentError::ZeroParentId,
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                TraceparentError::VersionFf,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
                TraceparentError::Length(54),
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011",
                TraceparentError::Length(56),
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
                TraceparentError::Length(61),
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
                TraceparentError::Separator,
            ),
            (
                "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                TraceparentError::Version("0g".into()),
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473é-00f067aa0ba902b7-01",
                TraceparentError::NonAscii,
            ),
            (
                "é0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                TraceparentError::NonAscii,
            ),
            ("", TraceparentError::Version(String::new())),
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
                TraceparentError::TooShort,
            ),
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
                TraceparentError::Separator,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
                TraceparentError::NotLowerHex("flags"),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input).as_ref(), Err(expected), "{input}");
        }
    }

    #[test]
    fn non_ascii_of_the_right_byte_length_is_rejected() {
        let input = "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01";
        assert_eq!(input.len(), 55);
        assert_eq!(parse(input), Err(TraceparentError::NonAscii));
    }

    #[test]
    fn higher_version_is_read_by_its_first_four_fields_and_written_as_00() {
        let tp =
            parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds")
                .unwrap();
        assert_eq!(tp.to_string(), VALID);
        let exact = parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!exact.sampled());
    }

    #[test]
    fn reserved_flags_are_written_as_zero() {
        let tp = parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff").unwrap();
        assert!(tp.sampled());
        assert!(tp.to_string().ends_with("-03"));
    }

    #[test]
    fn trace_flags_keep_sampled_and_random_only() {
        let all = TraceFlags::from_bits(0xff);
        assert_eq!(all, TraceFlags::SAMPLED | TraceFlags::RANDOM);
        assert!(all.is_sampled() && all.is_random());
        assert_eq!(all.sampled_only(), TraceFlags::SAMPLED);
        assert_eq!(TraceFlags::RANDOM.sampled_only(), TraceFlags::NONE);
        assert!(!TraceFlags::from_bits(0xfe).is_sampled());
        assert_eq!(TraceFlags::from_bits(0x81).bits(), 0x01);
        assert_eq!(TraceFlags::RANDOM.to_string(), "02");
        assert_eq!(TraceFlags::default(), TraceFlags::NONE);
    }

    #[test]
    fn unsampled_is_kept() {
        let tp = parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!tp.sampled());
        assert!(tp.to_string().ends_with("-00"));
    }

    #[test]
    fn with_parent_keeps_trace_and_flags() {
        let tp = parse(VALID).unwrap();
        let child = tp.with_parent(SpanId([1, 2, 3, 4, 5, 6, 7, 8]));
        assert_eq!(
            child.to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01"
        );
    }

    #[test]
    fn ids_parse_only_lowercase_non_zero_hex() {
        assert!(SpanId::parse("00f067aa0ba902b7").is_some());
        assert!(SpanId::parse("00F067AA0BA902B7").is_none());
        assert!(SpanId::parse("0000000000000000").is_none());
        assert!(SpanId::parse("00f067aa0ba902b").is_none());
        assert!(TraceId::parse("4bf92f3577b34da6a3ce929d0e0e4736").is_some());
        assert!(TraceId::parse("00000000000000000000000000000000").is_none());
        assert_eq!(SpanId::from_random([0; 8]).to_string(), "0000000000000001");
    }
}
