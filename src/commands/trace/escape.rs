//! Text that came from a span's emitter or a query API, made safe to print on a terminal. Any
//! program that can export a span chooses its name, its service and its attributes; printed as
//! they are, a control sequence in one could clear the screen, move the cursor, set the
//! clipboard (OSC 52), or draw tree lines of spans that don't exist.
//!
//! One visible form, unambiguous because a backslash is escaped too: `\\`, `\n`, `\r`, `\t`,
//! and `\u{XX}` (hexadecimal, as Rust writes it) for every other character escaped.

use std::borrow::Cow;

/// The format characters (Unicode general category Cf, as of Unicode 15.1): invisible, and
/// some (bidi embeddings, overrides and isolates) reorder what follows them on screen.
const FORMAT: &[(char, char)] = &[
    ('\u{ad}', '\u{ad}'),
    ('\u{600}', '\u{605}'),
    ('\u{61c}', '\u{61c}'),
    ('\u{6dd}', '\u{6dd}'),
    ('\u{70f}', '\u{70f}'),
    ('\u{890}', '\u{891}'),
    ('\u{8e2}', '\u{8e2}'),
    ('\u{180e}', '\u{180e}'),
    ('\u{200b}', '\u{200f}'),
    ('\u{202a}', '\u{202e}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206f}'),
    ('\u{feff}', '\u{feff}'),
    ('\u{fff9}', '\u{fffb}'),
    ('\u{110bd}', '\u{110bd}'),
    ('\u{110cd}', '\u{110cd}'),
    ('\u{13430}', '\u{1343f}'),
    ('\u{1bca0}', '\u{1bca3}'),
    ('\u{1d173}', '\u{1d17a}'),
    ('\u{e0001}', '\u{e0001}'),
    ('\u{e0020}', '\u{e007f}'),
];

/// Whether `c` is printed escaped: a backslash, a control character (C0, DEL, C1), a format
/// character, or the line and paragraph separators U+2028 and U+2029.
fn escaped(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}')
        || FORMAT
            .iter()
            .any(|&(first, last)| (first..=last).contains(&c))
}

/// `text` with every character that could change the terminal, or what it shows, escaped; the
/// one function every untrusted text `jobtrace trace` prints goes through.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if escaped(c) => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `text` escaped and between double quotes, a quote in it escaped too (`\"`), so that where the
/// value ends can't be faked: an attribute value.
pub fn quoted(text: &str) -> String {
    format!("\"{}\"", escape(text).replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_could_change_the_terminal_is_escaped_visibly() {
        for (text, shown) in [
            ("café ✓", "café ✓"),
            ("generate-report", "generate-report"),
            ("日本語の名前", "日本語の名前"),
            // A decomposed é: a combining mark is not a control.
            ("cafe\u{301}", "cafe\u{301}"),
            ("\u{1b}[2J\u{1b}[H", "\\u{1b}[2J\\u{1b}[H"),
            ("\u{1b}[31mred\u{1b}[0m", "\\u{1b}[31mred\\u{1b}[0m"),
            // OSC 52: sets the clipboard, ended by BEL or by ST.
            (
                "\u{1b}]52;c;ZWNobyBvd25lZA==\u{7}",
                "\\u{1b}]52;c;ZWNobyBvd25lZA==\\u{7}",
            ),
            (
                "\u{1b}]52;c;ZWNobw==\u{1b}\\",
                "\\u{1b}]52;c;ZWNobw==\\u{1b}\\\\",
            ),
            ("a\nb\r\nc\td", "a\\nb\\r\\nc\\td"),
            ("x\n└── fake", "x\\n└── fake"),
            ("\0\u{7f}", "\\u{0}\\u{7f}"),
            // C1: CSI and OSC on their own, NEL.
            ("\u{9b}2J\u{9d}\u{85}", "\\u{9b}2J\\u{9d}\\u{85}"),
            ("\u{2028}\u{2029}", "\\u{2028}\\u{2029}"),
            // Bidi: an override that shows "exe.txt" for "txt.exe", embeddings and isolates.
            ("\u{202e}txt.exe", "\\u{202e}txt.exe"),
            (
                "\u{202a}\u{202b}\u{202c}\u{202d}",
                "\\u{202a}\\u{202b}\\u{202c}\\u{202d}",
            ),
            (
                "\u{2066}\u{2067}\u{2068}\u{2069}\u{61c}",
                "\\u{2066}\\u{2067}\\u{2068}\\u{2069}\\u{61c}",
            ),
            // Zero-width and other invisible characters.
            (
                "job\u{200b}\u{200c}\u{200d}\u{200e}\u{200f}",
                "job\\u{200b}\\u{200c}\\u{200d}\\u{200e}\\u{200f}",
            ),
            ("\u{feff}pod\u{2060}\u{ad}", "\\u{feff}pod\\u{2060}\\u{ad}"),
            ("\u{e0041}", "\\u{e0041}"),
            // A backslash is escaped, so an escape in the text can't pass for one of ours.
            ("C:\\u{1b}", "C:\\\\u{1b}"),
            ("", ""),
        ] {
            assert_eq!(escape(text), shown, "{text:?}");
        }
    }

    #[test]
    fn plain_text_is_not_copied() {
        assert!(matches!(escape("pod nightly-x"), Cow::Borrowed(_)));
    }

    #[test]
    fn quoted_values_end_where_they_seem_to() {
        for (text, shown) in [
            ("Error", "\"Error\""),
            (
                "a\" k8s.pod.status.reason=\"b",
                "\"a\\\" k8s.pod.status.reason=\\\"b\"",
            ),
            ("a\\\"", "\"a\\\\\\\"\""),
            ("\u{1b}[2K\r", "\"\\u{1b}[2K\\r\""),
        ] {
            assert_eq!(quoted(text), shown, "{text:?}");
        }
    }
}
