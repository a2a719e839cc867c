//! Which files the IMA policy would measure if they were executed or mapped: executables
//! (any exec bit), shared objects (ELF `ET_DYN`, or a `*.so` / `*.so.N` name) and scripts
//! (`#!`). The decision uses the mode, the name and at most [`HEADER_LEN`] leading bytes,
//! so classifying a large data file never reads it.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use serde::{Deserialize, Serialize};

/// How many leading bytes [`class_from_header`] needs: the ELF identification and
/// `e_type` (offsets 0..18), which also covers the two bytes of `#!`.
pub const HEADER_LEN: usize = 18;

/// Why a file is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileClass {
    /// A regular file with at least one exec bit.
    Executable,
    /// An ELF `ET_DYN` object (shared library or PIE) or a file named like one.
    SharedObject,
    /// A file starting with `#!`.
    Script,
}

const S_IXUGO: u32 = 0o111;
const ELF_MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];
const ELFDATA2LSB: u8 = 1;
const ELFDATA2MSB: u8 = 2;
const ET_DYN: u16 = 3;

/// The class that mode and name alone decide, or `None` when the leading bytes must be
/// read (then call [`class_from_header`]).
pub fn class_from_metadata(mode: u32, name: &OsStr) -> Option<FileClass> {
    if mode & S_IXUGO != 0 {
        Some(FileClass::Executable)
    } else if has_shared_object_name(name) {
        Some(FileClass::SharedObject)
    } else {
        None
    }
}

/// The class that a file's first bytes decide (`header` may be shorter than
/// [`HEADER_LEN`] for a short file), or `None` for a file IMA would not measure.
pub fn class_from_header(header: &[u8]) -> Option<FileClass> {
    if header.starts_with(b"#!") {
        return Some(FileClass::Script);
    }
    if header.get(..4)? != ELF_MAGIC {
        return None;
    }
    let e_type_bytes: [u8; 2] = header.get(16..18)?.try_into().ok()?;
    let e_type = match *header.get(5)? {
        ELFDATA2LSB => u16::from_le_bytes(e_type_bytes),
        ELFDATA2MSB => u16::from_be_bytes(e_type_bytes),
        _ => return None,
    };
    (e_type == ET_DYN).then_some(FileClass::SharedObject)
}

/// `libfoo.so`, `libc.so.6`, `libssl.so.3.0.2`; not `notes.so.txt` or `.so`.
pub fn has_shared_object_name(name: &OsStr) -> bool {
    let name = name.as_bytes();
    if name.len() > 3 && name.ends_with(b".so") {
        return true;
    }
    // `<stem>.so.<version>` where the version is digits and dots, starting with a digit.
    name.windows(4).enumerate().any(|(i, w)| {
        w == b".so."
            && i > 0
            && name.get(i + 4..).is_some_and(|version| {
                version.first().is_some_and(u8::is_ascii_digit)
                    && version.iter().all(|b| b.is_ascii_digit() || *b == b'.')
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(class_data: u8, e_type: [u8; 2]) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LEN];
        h[..4].copy_from_slice(&ELF_MAGIC);
        h[4] = 2; // ELFCLASS64, not used for the decision
        h[5] = class_data;
        h[16..18].copy_from_slice(&e_type);
        h
    }

    #[test]
    fn exec_bit_decides_alone() {
        for mode in [0o100, 0o010, 0o001, 0o755, 0o4711] {
            assert_eq!(
                class_from_metadata(mode, OsStr::new("data.bin")),
                Some(FileClass::Executable),
                "{mode:o}"
            );
        }
        assert_eq!(class_from_metadata(0o644, OsStr::new("data.bin")), None);
    }

    #[test]
    fn shared_object_names() {
        for yes in ["libc.so", "libc.so.6", "libssl.so.3.0.2", "a.so.1.so"] {
            assert!(has_shared_object_name(OsStr::new(yes)), "{yes}");
        }
        for no in [
            ".so",
            "libc.so.",
            "notes.so.txt",
            "libc.so.6a",
            "so",
            "x.sox",
            "libc.so..",
        ] {
            assert!(!has_shared_object_name(OsStr::new(no)), "{no}");
        }
    }

    #[test]
    fn headers() {
        assert_eq!(class_from_header(b"#!/bin/sh\n"), Some(FileClass::Script));
        assert_eq!(class_from_header(b"#!"), Some(FileClass::Script));
        assert_eq!(
            class_from_header(&elf(ELFDATA2LSB, [3, 0])),
            Some(FileClass::SharedObject)
        );
        assert_eq!(
            class_from_header(&elf(ELFDATA2MSB, [0, 3])),
            Some(FileClass::SharedObject)
        );
        // ET_EXEC without an exec bit, ET_REL objects and core files are not mapped as code.
        assert_eq!(class_from_header(&elf(ELFDATA2LSB, [2, 0])), None);
        assert_eq!(class_from_header(&elf(ELFDATA2LSB, [1, 0])), None);
        assert_eq!(class_from_header(&elf(ELFDATA2MSB, [3, 0])), None);
        assert_eq!(class_from_header(&elf(0, [3, 0])), None);
        assert_eq!(class_from_header(b"plain text"), None);
        assert_eq!(class_from_header(b""), None);
    }

    #[test]
    fn every_prefix_of_an_elf_header_is_answered_without_panic() {
        let full = elf(ELFDATA2LSB, [3, 0]);
        for n in 0..full.len() {
            assert_eq!(class_from_header(&full[..n]), None, "prefix {n}");
        }
        assert_eq!(class_from_header(&full), Some(FileClass::SharedObject));
    }
}
