//! The W3C `baggage` header, by the current W3C Baggage text. Members are checked against the
//! grammar and propagated as received (values are never decoded, so a percent-escape that is not
//! UTF-8, which a decoder turns into U+FFFD, is kept). Invalid or over-limit members are dropped
//! one by one; the rest is kept in order.

use crate::shorten;

/// Most list-members jobtrace propagates: the grammar's 180 (`list-member 0*179(...)`); the
/// specification asks for at least 64.
pub const MAX_MEMBERS: usize = 180;
/// Longest `baggage` jobtrace propagates, in bytes: the 8192 the specification asks for, which is
/// also where the OpenTelemetry SDKs that read it stop. There is no per-member limit.
pub const MAX_BYTES: usize = 8192;

/// Why part of a `baggage` value was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaggageProblem {
    /// A list-member that breaks the grammar, dropped alone.
    #[error("member {member:?} dropped: {why}")]
    Malformed {
        /// The member as received (shortened for quoting).
        member: String,
        /// The rule it breaks.
        why: &'static str,
    },
    /// This many members past [`MAX_MEMBERS`], dropped.
    #[error("{0} members past the 180-member limit dropped")]
    TooManyMembers(usize),
    /// This many members dropped from the end to stay within [`MAX_BYTES`].
    #[error("{0} members dropped to stay within 8192 bytes")]
    TooLong(usize),
    /// This many malformed members past the [`MAX_DESCRIBED`] described one by one.
    #[error("{0} more malformed members dropped")]
    MoreMalformed(usize),
}

/// Most malformed members described one by one; the rest are counted in
/// [`BaggageProblem::MoreMalformed`], so a value of any length yields a handful of problems.
pub const MAX_DESCRIBED: usize = 8;

/// What is left of a `baggage` once its problems are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Baggage {
    members: Vec<String>,
}

impl Baggage {
    /// Whether no member is left.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The members in order, each as received (`key=value`, then any `;property`).
    pub fn members(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(String::as_str)
    }

    /// The header value: members joined by commas.
    pub fn header(&self) -> String {
        self.members.join(",")
    }

    /// Keeps the members whose key `keep` accepts, in order.
    #[must_use]
    pub fn retain_keys(mut self, keep: impl Fn(&str) -> bool) -> Self {
        self.members.retain(|member| {
            let key = member.split('=').next().unwrap_or_default();
            keep(key.trim_matches([' ', '\t']))
        });
        self
    }
}

/// Parses a `baggage` value, keeping every valid member within the limits.
pub fn parse(value: &str) -> (Baggage, Vec<BaggageProblem>) {
    let mut problems = Vec::new();
    let mut members: Vec<String> = Vec::new();
    let mut over_count = 0;
    let mut over_bytes = 0;
    let mut more_malformed = 0;
    let mut bytes = 0;
    for member in value.split(',') {
        let member = member.trim_matches([' ', '\t']);
        if member.is_empty() {
            continue;
        }
        if let Err(why) = check_member(member) {
            if problems.len() < MAX_DESCRIBED {
                problems.push(BaggageProblem::Malformed {
                    member: shorten(member),
                    why,
                });
            } else {
                more_malformed += 1;
            }
            continue;
        }
        if members.len() == MAX_MEMBERS {
            over_count += 1;
            continue;
        }
        let added = member.len() + usize::from(!members.is_empty());
        if bytes + added > MAX_BYTES {
            over_bytes += 1;
            continue;
        }
        bytes += added;
        members.push(member.to_owned());
    }
    if more_malformed > 0 {
        problems.push(BaggageProblem::MoreMalformed(more_malformed));
    }
    if over_count > 0 {
        problems.push(BaggageProblem::TooManyMembers(over_count));
    }
    if over_bytes > 0 {
        problems.push(BaggageProblem::TooLong(over_bytes));
    }
    (Baggage { members }, problems)
}

/// `list-member = key OWS "=" OWS value *( OWS ";" OWS property )`.
fn check_member(member: &str) -> Result<(), &'static str> {
    let mut parts = member.split(';');
    let pair = parts.next().unwrap_or_default();
    let (key, value) = pair.split_once('=').ok_or("no '=' between key and value")?;
    if !is_token(key.trim_end_matches([' ', '\t'])) {
        return Err("the key is not a token");
    }
    check_value(value.trim_matches([' ', '\t']))?;
    for property in parts {
        let property = property.trim_matches([' ', '\t']);
        match property.split_once('=') {
            Some((k, v)) => {
                if !is_token(k.trim_end_matches([' ', '\t'])) {
                    return Err("a property key is not a token");
                }
                check_value(v.trim_start_matches([' ', '\t']))?;
            }
            None if is_token(property) => {}
            None => return Err("a property is not a token"),
        }
    }
    Ok(())
}

/// A token as RFC 7230 defines it.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// `value = *baggage-octet`: no controls, whitespace, '"', ',', ';' or '\\'. Percent-escapes are
/// not decoded here: the value travels as received.
fn check_value(value: &str) -> Result<(), &'static str> {
    let octet = |c: u8| matches!(c, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e);
    if value.bytes().all(octet) {
        Ok(())
    } else {
        Err("the value has characters that must be percent-encoded")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_kept_or_dropped_by_key() {
        let (b, _) = parse("a=1, user.email = x@y ;p,b=2");
        let kept = b.retain_keys(|k| k != "user.email");
        assert_eq!(kept.header(), "a=1,b=2");
    }

    #[test]
    fn valid_members_are_kept_in_order() {
        let (b, problems) =
            parse("userId=alice, serverNode = DF%2028 ;prop;k=v,isProduction=false");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            b.header(),
            "userId=alice,serverNode = DF%2028 ;prop;k=v,isProduction=false"
        );
    }

    #[test]
    fn value_may_contain_equals() {
        let (b, problems) = parse("k=a=b");
        assert!(problems.is_empty());
        assert_eq!(b.header(), "k=a=b");
    }

    #[test]
    fn malformed_members_are_dropped_one_by_one() {
        let cases = [
            "novalue",
            "k=a b",
            "k=café",
            "k=a\\b",
            "bad key=v",
            "k=v;bad prop",
            "k=\"quoted\"",
        ];
        for bad in cases {
            let (b, problems) = parse(&format!("a=1,{bad},z=2"));
            assert_eq!(b.header(), "a=1,z=2", "{bad}");
            assert!(
                matches!(problems.as_slice(), [BaggageProblem::Malformed { .. }]),
                "{bad}: {problems:?}"
            );
        }
    }

    #[test]
    fn percent_encoded_utf8_is_valid() {
        let (b, problems) = parse("city=M%C3%BCnchen");
        assert!(problems.is_empty());
        assert_eq!(b.header(), "city=M%C3%BCnchen");
    }

    #[test]
    fn members_past_180_are_dropped() {
        let value: Vec<String> = (0..181).map(|i| format!("k{i}=v")).collect();
        let (b, problems) = parse(&value.join(","));
        assert_eq!(b.members.len(), 180);
        assert_eq!(problems, vec![BaggageProblem::TooManyMembers(1)]);
    }

    #[test]
    fn a_member_of_any_length_within_the_total_is_kept() {
        let big = format!("big={}", "x".repeat(6000));
        let (b, problems) = parse(&format!("a=1,{big}"));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(b.header(), format!("a=1,{big}"));
    }

    #[test]
    fn values_are_propagated_as_received_not_decoded() {
        for value in ["k=%c3", "k=%zz", "k=%C3%28", "k=%", "k=50%25", "k="] {
            let (b, problems) = parse(value);
            assert!(problems.is_empty(), "{value}: {problems:?}");
            assert_eq!(b.header(), value);
        }
    }

    #[test]
    fn dollar_and_parentheses_are_baggage_octets() {
        let (b, problems) = parse("k=$(DB_PASSWORD),$weird=a$$b");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(b.header(), "k=$(DB_PASSWORD),$weird=a$$b");
    }

    #[test]
    fn total_over_8192_bytes_drops_members() {
        let member = |i: usize| format!("k{i}={}", "x".repeat(3000));
        let value = (0..3).map(member).collect::<Vec<_>>().join(",");
        let (b, problems) = parse(&value);
        assert_eq!(b.members.len(), 2);
        assert!(b.header().len() <= MAX_BYTES);
        assert_eq!(problems, vec![BaggageProblem::TooLong(1)]);
    }

    #[test]
    fn any_number_of_malformed_members_yields_a_bounded_list_of_problems() {
        let value = vec!["no-equals"; 125_000].join(",") + ",k=v";
        let (b, problems) = parse(&value);
        assert_eq!(b.header(), "k=v");
        assert_eq!(problems.len(), MAX_DESCRIBED + 1, "{:?}", &problems[..3]);
        assert_eq!(
            problems.last(),
            Some(&BaggageProblem::MoreMalformed(125_000 - MAX_DESCRIBED))
        );
    }
}
