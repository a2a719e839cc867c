//! What the CLI prints for people goes through [`escape`]: much of it came from the VM
//! (check details quoting evidence, error answers, progress, the application's status),
//! and a hostile VM could otherwise send terminal control sequences that repaint the
//! screen (`ESC[2J ... all checks PASSED`), rewrite a line with a carriage return, or
//! reorder text with Unicode direction overrides. JSON output needs none of this:
//! serde escapes every control character already.
//!
//! Colours are the CLI's own escapes, added after [`escape`] and only where they help a
//! person: on a terminal, unless `NO_COLOR` is set (<https://no-color.org>) or `--color`
//! says otherwise. A pipe, a file or a log never gets them.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::sync::OnceLock;

/// `--color`: when the text output is coloured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless `NO_COLOR` is set to anything but the empty string.
    #[default]
    Auto,
    /// Always, even into a pipe.
    Always,
    /// Never.
    Never,
}

/// The stream a coloured text goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// What a coloured text means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// A passed check (green).
    Good,
    /// A failed check or an error (red).
    Bad,
}

static CHOICE: OnceLock<ColorChoice> = OnceLock::new();

/// Sets the choice for the whole run (the first call wins); without a call, `Auto`.
pub fn set_color(choice: ColorChoice) {
    let _ = CHOICE.set(choice);
}

/// Whether to colour: `choice`, and for `Auto` whether the stream is a terminal and
/// `NO_COLOR` (its value, if set) is unset or empty.
pub fn colour_enabled(choice: ColorChoice, is_terminal: bool, no_color: Option<&str>) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => is_terminal && no_color.is_none_or(str::is_empty),
    }
}

/// `text` (already escaped) in the colour of `tone` when colours are on for `stream`.
pub fn paint(text: &str, tone: Tone, stream: Stream) -> Cow<'_, str> {
    let is_terminal = match stream {
        Stream::Stdout => std::io::stdout().is_terminal(),
        Stream::Stderr => std::io::stderr().is_terminal(),
    };
    let no_color = std::env::var("NO_COLOR").ok();
    let choice = CHOICE.get().copied().unwrap_or_default();
    if !colour_enabled(choice, is_terminal, no_color.as_deref()) {
        return Cow::Borrowed(text);
    }
    let code = match tone {
        Tone::Good => "32",
        Tone::Bad => "31",
    };
    Cow::Owned(format!("\x1b[1;{code}m{text}\x1b[0m"))
}

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
    fn colour_only_on_a_terminal_without_no_color() {
        use ColorChoice::{Always, Auto, Never};
        assert!(colour_enabled(Auto, true, None));
        assert!(colour_enabled(Auto, true, Some("")));
        assert!(!colour_enabled(Auto, false, None));
        assert!(!colour_enabled(Auto, true, Some("1")));
        assert!(colour_enabled(Always, false, Some("1")));
        assert!(!colour_enabled(Never, true, None));
    }

    #[test]
    fn plain_text_is_not_copied() {
        assert!(matches!(escape("tee: sev-snp, ok é"), Cow::Borrowed(_)));
    }
}
