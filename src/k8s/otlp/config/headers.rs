//! Values as the OpenTelemetry specification writes them in variables: `key1=value1,key2=value2`,
//! percent-decoded.

/// `key1=value1,key2=value2`, values percent-decoded, as the OpenTelemetry specification has it.
pub(super) fn parse_headers(value: &str) -> Option<Vec<(String, String)>> {
    value
        .split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let k = k.trim();
            (!k.is_empty()).then_some(())?;
            Some((k.to_owned(), percent_decode(v.trim())?))
        })
        .collect()
}

pub(in crate::k8s::otlp) fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            // Two hex digits: `from_str_radix` alone would take a sign too.
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::super::tests::config;

    #[test]
    fn headers_are_percent_decoded() {
        let c = config(&[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "api-key=abc%20def, tenant = acme",
        )])
        .unwrap();
        assert_eq!(
            c.headers,
            [
                ("api-key".to_owned(), "abc def".to_owned()),
                ("tenant".to_owned(), "acme".to_owned())
            ]
        );
    }
}
