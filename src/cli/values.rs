//! The parsers of flag values that clap has no type for: durations, ratios, URL templates.

use std::time::Duration;

/// Parses a share from 0 to 1.
pub(crate) fn ratio(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{value:?} is not a number from 0 to 1")),
    }
}

/// Parses a duration such as `90d`, `12h`, `15m`, `30s` or `500ms`.
pub fn duration(value: &str) -> Result<Duration, String> {
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{value:?} is not a duration such as 90d, 12h, 15m or 30s"))?;
    let seconds = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{value:?}: unknown unit {unit:?} (use ms, s, m, h or d)"
            ));
        }
    };
    n.checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{value:?} is too long"))
}

/// Takes a URL with a `{trace_id}` to replace.
pub(crate) fn url_template(value: &str) -> Result<String, String> {
    if value.contains("{trace_id}") {
        Ok(value.to_owned())
    } else {
        Err(format!("{value:?} has no {{trace_id}} to replace"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit_and_clear_refusals() {
        assert_eq!(duration("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(duration("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(duration("5x").unwrap_err().contains("unknown unit \"x\""));
        assert!(duration("d").unwrap_err().contains("is not a duration"));
        assert!(duration("99999999999999999999d").is_err());
        assert!(
            duration("999999999999999999d")
                .unwrap_err()
                .contains("too long")
        );
    }
}
