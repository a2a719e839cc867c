//! What the CLI prints for people goes through [`escape`]: much of it came from the VM
//! (check details quoting evidence, error answers, progress, the application's status),
//! and a hostile VM could otherwise send terminal control sequences that repaint the
//! screen (`ESC[2J ... all checks PASSED`), rewrite a line with a carriage return, or
//! reorder text with Unicode direction overrides. JSON output needs none of this:
//! serde escapes every control character already.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` with every control character (C0, DEL, C1, including ESC, CR and LF) and every
/// Unicode direction override or isolate written as a visible escape (`\x1b`, `\n`,
/// `\u{202e}`), so that it prints as the characters it holds and nothing more.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let n = u32::from(c);
                if n < 0x100 {
                    let _ = write!(out, "\\x{n:02x}");
                } else {
                    let _ = write!(out, "\\u{{{n:04x}}}");
                }
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    // U+202A..U+202E (embeddings, overrides) and U+2066..U+2069 (isolates) reorder
    // what follows them on the screen.
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_sequences_become_visible() {
        assert_eq!(
            escape("\x1b[2J\x1b[H[PASS] all"),
            "\\x1b[2J\\x1b[H[PASS] all"
        );
        assert_eq!(escape("a\rb\nc\td\x7f\u{9b}"), "a\\rb\\nc\\td\\x7f\\x9b");
        assert_eq!(escape("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
    }

    #[test]
    fn plain_text_is_not_copied() {
        assert!(matches!(escape("tee: sev-snp, ok é"), Cow::Borrowed(_)));
    }
}
