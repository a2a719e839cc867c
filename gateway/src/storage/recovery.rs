//! The recovery passphrase: the second way into the container, for when this VM's TPM
//! is gone or the container moves to another VM (`storage migrate`).
//!
//! It is 52 symbols from a 32-symbol alphabet, 260 random bits, written in 13 groups
//! of four separated by `-` (`7kq2-…`). The alphabet is lowercase letters and digits
//! without `i`, `l`, `o` and `u`, so nothing reads as something else when copied by
//! hand. It is shown once, by `storage init --recovery`, and read back from stdin or a
//! file, never from the command line (argv is readable by every user); typed at a
//! terminal, with echo off ([`EchoOff`]).

use super::StorageError;
use attest::tpm::seal::Secret;
use std::path::{Path, PathBuf};

/// The 32 symbols, five bits each.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Symbols in a passphrase (52 × 5 = 260 bits).
pub const SYMBOLS: usize = 52;
/// Symbols per group.
const GROUP: usize = 4;
/// A passphrase file or stdin longer than this is not a passphrase.
const MAX_INPUT: u64 = 4096;

/// Makes a fresh passphrase from the kernel's CSPRNG.
pub fn generate() -> Result<Secret, StorageError> {
    let random = super::random_bytes(SYMBOLS)?;
    // Masking a uniform byte to five bits keeps it uniform over 32 symbols.
    let symbols: Vec<u8> = random
        .expose()
        .iter()
        .map(|b| ALPHABET[usize::from(b & 31)])
        .collect();
    let mut out = Vec::with_capacity(SYMBOLS + SYMBOLS / GROUP);
    for (i, group) in symbols.chunks(GROUP).enumerate() {
        if i > 0 {
            out.push(b'-');
        }
        out.extend_from_slice(group);
    }
    Ok(Secret::new(out))
}

/// Checks what the operator gave and returns the passphrase as stored in the keyslot:
/// surrounding white space (the newline of a file or of `echo`) is dropped and capitals
/// are read as lowercase; anything else that is not the shape [`generate`] writes is
/// refused before cryptsetup sees it.
pub fn parse(input: &[u8]) -> Result<Secret, StorageError> {
    let bad = |reason: &str| StorageError::BadPassphrase {
        reason: reason.to_string(),
    };
    let trimmed = input.trim_ascii();
    if trimmed.is_empty() {
        return Err(bad("empty"));
    }
    let lower: Vec<u8> = trimmed.to_ascii_lowercase();
    let groups: Vec<&[u8]> = lower.split(|b| *b == b'-').collect();
    if groups.len() != SYMBOLS / GROUP || groups.iter().any(|g| g.len() != GROUP) {
        return Err(bad(
            "expected 13 groups of 4 symbols separated by `-`, as `storage init --recovery` printed it",
        ));
    }
    if !lower.iter().all(|b| *b == b'-' || ALPHABET.contains(b)) {
        return Err(bad(
            "a symbol outside 0-9 and a-z without i, l, o, u (a mistyped letter?)",
        ));
    }
    Ok(Secret::new(lower))
}

/// Reads the passphrase from `file`, or from stdin when `file` is `None` or `-`.
pub fn read(file: Option<&Path>) -> Result<Secret, StorageError> {
    use std::io::Read;
    let mut bytes = Vec::new();
    let (from, read) = match file {
        Some(path) if path != Path::new("-") => (
            path.to_path_buf(),
            std::fs::File::open(path).and_then(|f| f.take(MAX_INPUT + 1).read_to_end(&mut bytes)),
        ),
        _ => {
            use std::io::{BufRead, IsTerminal};
            let stdin = std::io::stdin();
            let read = if stdin.is_terminal() {
                // Typed by hand: one line, not everything up to Ctrl-D, and not shown.
                eprint!("recovery passphrase (not shown): ");
                EchoOff::new(&stdin).and_then(|_quiet| {
                    stdin
                        .lock()
                        .take(MAX_INPUT + 1)
                        .read_until(b'\n', &mut bytes)
                })
            } else {
                stdin.lock().take(MAX_INPUT + 1).read_to_end(&mut bytes)
            };
            (PathBuf::from("stdin"), read)
        }
    };
    // Wrapped first, so that what was read is cleared on every path.
    let input = Secret::new(bytes);
    read.map_err(|source| StorageError::Io {
        op: "reading the recovery passphrase from",
        path: from.clone(),
        source,
    })?;
    if u64::try_from(input.expose().len()).map_or(true, |n| n > MAX_INPUT) {
        return Err(StorageError::BadPassphrase {
            reason: format!("{} holds more than {MAX_INPUT} bytes", from.display()),
        });
    }
    parse(input.expose())
}

/// A terminal's echo turned off, and back to what it was when dropped: what is typed
/// then stays off the screen, its scrollback and any recording of the session. The
/// newline is still echoed (`ECHONL`), so the next output starts on a line of its own.
struct EchoOff<Fd: std::os::fd::AsFd> {
    tty: Fd,
    saved: rustix::termios::Termios,
}

impl<Fd: std::os::fd::AsFd> EchoOff<Fd> {
    fn new(tty: Fd) -> std::io::Result<Self> {
        use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
        let saved = tcgetattr(&tty)?;
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        quiet.local_modes.insert(LocalModes::ECHONL);
        tcsetattr(&tty, OptionalActions::Now, &quiet)?;
        Ok(EchoOff { tty, saved })
    }
}

impl<Fd: std::os::fd::AsFd> Drop for EchoOff<Fd> {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            &self.tty,
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_passphrase_is_not_echoed_and_the_terminal_is_restored() {
        use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
        use rustix::termios::{tcgetattr, LocalModes};
        use std::io::{BufRead, BufReader, Read, Write};
        use std::os::unix::ffi::OsStrExt;

        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let name = ptsname(&master, Vec::new()).unwrap();
        let tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(std::ffi::OsStr::from_bytes(name.as_bytes()))
            .unwrap();
        let mut master = std::fs::File::from(master);
        assert!(tcgetattr(&tty)
            .unwrap()
            .local_modes
            .contains(LocalModes::ECHO));

        let pass = generate().unwrap();
        let mut line = Vec::new();
        {
            let _quiet = EchoOff::new(&tty).unwrap();
            master.write_all(pass.expose()).unwrap();
            master.write_all(b"\n").unwrap();
            BufReader::new(&tty).read_until(b'\n', &mut line).unwrap();
        }
        assert_eq!(parse(&line).unwrap().expose(), pass.expose());
        assert!(tcgetattr(&tty)
            .unwrap()
            .local_modes
            .contains(LocalModes::ECHO));

        // What the terminal showed: only the newline. A marker typed after the guard
        // is echoed, so the read below ends there instead of waiting.
        master.write_all(b"#\n").unwrap();
        let mut shown = Vec::new();
        let mut byte = [0u8; 1];
        while !shown.ends_with(b"#") {
            master.read_exact(&mut byte).unwrap();
            shown.push(byte[0]);
        }
        assert_eq!(shown, b"\r\n#", "{:?}", String::from_utf8_lossy(&shown));
    }

    #[test]
    fn generated_passphrases_parse_back_and_differ() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a.expose(), b.expose());
        let text = std::str::from_utf8(a.expose()).unwrap();
        assert_eq!(text.len(), SYMBOLS + SYMBOLS / GROUP - 1);
        assert_eq!(text.split('-').count(), 13);
        let mut typed = text.to_ascii_uppercase().into_bytes();
        typed.push(b'\n');
        assert_eq!(parse(&typed).unwrap().expose(), a.expose());
    }

    #[test]
    fn passphrase_files_are_read_trimmed_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("recovery.txt");
        let pass = generate().unwrap();
        let mut text = pass.expose().to_vec();
        text.extend_from_slice(b"\r\n");
        std::fs::write(&file, &text).unwrap();
        assert_eq!(read(Some(&file)).unwrap().expose(), pass.expose());
        std::fs::write(&file, vec![b'a'; 5000]).unwrap();
        match read(Some(&file)) {
            Err(StorageError::BadPassphrase { reason }) => {
                assert!(reason.contains("more than 4096 bytes"), "{reason}");
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        match read(Some(&dir.path().join("missing"))) {
            Err(StorageError::Io { path, .. }) => assert!(path.ends_with("missing")),
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn each_bad_passphrase_is_named() {
        let good = "0123-4567-89ab-cdef-ghjk-mnpq-rstv-wxyz-0000-1111-2222-3333-4444";
        assert!(parse(good.as_bytes()).is_ok());
        for (bad, why) in [
            ("", "empty"),
            (" \n", "empty"),
            ("0123-4567", "13 groups"),
            (&good[..good.len() - 1], "13 groups"),
            (&good.replace('-', ""), "13 groups"),
            (&good.replacen('0', "o", 1), "mistyped"),
            (&good.replacen('1', "l", 1), "mistyped"),
            (&good.replacen('2', "é", 1), "13 groups"),
        ] {
            match parse(bad.as_bytes()) {
                Err(StorageError::BadPassphrase { reason }) => {
                    assert!(reason.contains(why), "{bad:?}: {reason}");
                }
                other => panic!("{bad:?}: {:?}", other.map(|_| ())),
            }
        }
    }
}
