//! The SEV-SNP certificate table that the host attaches to an extended report (GHCB spec
//! "SNP Extended Guest Request"; Linux hands it out as the configfs-tsm `auxblob` and
//! through `SNP_GET_EXT_REPORT`).
//!
//! Layout: entries of 24 bytes (GUID, u32 offset, u32 length, little-endian), ended by
//! an all-zero entry; each offset counts from the start of the table and points at one
//! DER certificate. The host writes this table, so it is untrusted input: every offset
//! and length is checked, and what it yields is only a candidate for [`super::verify`].

use super::SnpCerts;

/// Size of one table entry.
pub const ENTRY_LEN: usize = 24;
/// A table with more entries than this is refused (AMD defines five kinds).
pub const MAX_ENTRIES: usize = 64;

/// GUIDs of the certificate kinds, in the byte order of the table (RFC 4122).
/// GUID of the AMD Root Key (ARK) certificate entry.
pub const GUID_ARK: [u8; 16] = guid(0xc0b406a4, 0xa803, 0x4952, 0x9743_3fb6014cd0ae);
/// GUID of the AMD SEV Key (ASK) certificate entry.
pub const GUID_ASK: [u8; 16] = guid(0x4ab7b379, 0xbbac, 0x4fe4, 0xa02f_05aef327c782);
/// GUID of the VCEK certificate entry.
pub const GUID_VCEK: [u8; 16] = guid(0x63da758d, 0xe664, 0x4564, 0xadc5_f4b93be8accd);
/// GUID of the VLEK certificate entry.
pub const GUID_VLEK: [u8; 16] = guid(0xa8074bc2, 0xa25a, 0x483e, 0xaae6_39c045a0b8a1);
/// GUID of the certificate revocation list entry.
pub const GUID_CRL: [u8; 16] = guid(0x92f81bc3, 0x5811, 0x4d3d, 0x97ff_d19f88dc67ea);

const fn guid(a: u32, b: u16, c: u16, d: u64) -> [u8; 16] {
    let a = a.to_be_bytes();
    let b = b.to_be_bytes();
    let c = c.to_be_bytes();
    let d = d.to_be_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6],
        d[7],
    ]
}

/// What a table entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertKind {
    /// The AMD Root Key certificate; verification ignores it and uses its pinned copy.
    Ark,
    /// The AMD SEV Key certificate (or an ASVK), an intermediate signed by the ARK.
    Ask,
    /// The Versioned Chip Endorsement Key certificate.
    Vcek,
    /// The Versioned Loaded Endorsement Key certificate.
    Vlek,
    /// A certificate revocation list (DER), not used by verification.
    Crl,
    /// A GUID this code does not know; kept so callers can see it, never used.
    Other([u8; 16]),
}

impl CertKind {
    /// The kind an entry's GUID names; an unknown GUID gives [`CertKind::Other`].
    pub fn from_guid(g: [u8; 16]) -> CertKind {
        match g {
            GUID_ARK => CertKind::Ark,
            GUID_ASK => CertKind::Ask,
            GUID_VCEK => CertKind::Vcek,
            GUID_VLEK => CertKind::Vlek,
            GUID_CRL => CertKind::Crl,
            other => CertKind::Other(other),
        }
    }

    /// The GUID that names this kind in a table, in table byte order.
    pub fn guid(self) -> [u8; 16] {
        match self {
            CertKind::Ark => GUID_ARK,
            CertKind::Ask => GUID_ASK,
            CertKind::Vcek => GUID_VCEK,
            CertKind::Vlek => GUID_VLEK,
            CertKind::Crl => GUID_CRL,
            CertKind::Other(g) => g,
        }
    }
}

/// One entry: its kind and its bytes (a DER certificate, or a CRL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertTableEntry {
    /// What the entry holds, from its GUID.
    pub kind: CertKind,
    /// The bytes the entry's offset and length point at.
    pub data: Vec<u8>,
}

/// Why a certificate table was refused; offsets are from the start of the table.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertTableError {
    /// The buffer ends before an all-zero entry closes the entry list.
    #[error("certificate table ends at byte {len} before its all-zero terminator entry")]
    NoTerminator {
        /// Length of the buffer.
        len: usize,
    },
    /// The entry list has more than [`MAX_ENTRIES`] entries before its terminator.
    #[error("certificate table has more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    /// An entry's offset and length point past the end of the buffer.
    #[error("entry {index}: data at offset {offset} length {length} lies outside the {table_len}-byte table")]
    OutOfBounds {
        /// Position of the entry in the list, from 0.
        index: usize,
        /// The entry's data offset.
        offset: u32,
        /// The entry's data length.
        length: u32,
        /// Length of the buffer.
        table_len: usize,
    },
    /// An entry's data starts inside the entry list (terminator included).
    #[error("entry {index}: data at offset {offset} overlaps the entry list (which ends at {header_end})")]
    OverlapsHeader {
        /// Position of the entry in the list, from 0.
        index: usize,
        /// The entry's data offset.
        offset: u32,
        /// Offset of the first byte after the terminator entry.
        header_end: usize,
    },
    /// An entry declares zero bytes of data.
    #[error("entry {index}: zero length")]
    EmptyEntry {
        /// Position of the entry in the list, from 0.
        index: usize,
    },
    /// A known kind appears twice, so which one counts would be ambiguous.
    #[error("entry {index}: a second {kind:?} entry")]
    Duplicate {
        /// Position of the second entry in the list, from 0.
        index: usize,
        /// The repeated kind.
        kind: CertKind,
    },
}

fn u32_le(b: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(..4)?.try_into().ok()?))
}

/// Parses a certificate table. An empty buffer means "no certificates" (a host without
/// them) and yields no entries.
pub fn parse_cert_table(buf: &[u8]) -> Result<Vec<CertTableEntry>, CertTableError> {
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    let mut raw = Vec::new();
    let mut index = 0usize;
    loop {
        let start = index * ENTRY_LEN;
        let entry = buf
            .get(start..start + ENTRY_LEN)
            .ok_or(CertTableError::NoTerminator { len: buf.len() })?;
        if entry.iter().all(|&b| b == 0) {
            break;
        }
        if index >= MAX_ENTRIES {
            return Err(CertTableError::TooManyEntries);
        }
        let (g, rest) = entry.split_at(16);
        let mut guid = [0u8; 16];
        guid.copy_from_slice(g);
        let offset = u32_le(rest).ok_or(CertTableError::NoTerminator { len: buf.len() })?;
        let length = rest
            .get(4..)
            .and_then(u32_le)
            .ok_or(CertTableError::NoTerminator { len: buf.len() })?;
        raw.push((guid, offset, length));
        index += 1;
    }
    let header_end = (raw.len() + 1) * ENTRY_LEN;
    let mut out: Vec<CertTableEntry> = Vec::with_capacity(raw.len());
    for (index, (guid, offset, length)) in raw.into_iter().enumerate() {
        if length == 0 {
            return Err(CertTableError::EmptyEntry { index });
        }
        let off = usize::try_from(offset).unwrap_or(usize::MAX);
        let len = usize::try_from(length).unwrap_or(usize::MAX);
        if off < header_end {
            return Err(CertTableError::OverlapsHeader {
                index,
                offset,
                header_end,
            });
        }
        let data = off
            .checked_add(len)
            .and_then(|end| buf.get(off..end))
            .ok_or(CertTableError::OutOfBounds {
                index,
                offset,
                length,
                table_len: buf.len(),
            })?;
        let kind = CertKind::from_guid(guid);
        if !matches!(kind, CertKind::Other(_)) && out.iter().any(|e| e.kind == kind) {
            return Err(CertTableError::Duplicate { index, kind });
        }
        out.push(CertTableEntry {
            kind,
            data: data.to_vec(),
        });
    }
    Ok(out)
}

/// Builds a table in the host's format (used by tests and by anyone re-packing
/// certificates). Entries keep their order; data follows the terminator.
pub fn build_cert_table(entries: &[CertTableEntry]) -> Vec<u8> {
    let header_len = (entries.len() + 1) * ENTRY_LEN;
    let mut header = Vec::with_capacity(header_len);
    let mut data = Vec::new();
    for e in entries {
        let offset = header_len + data.len();
        header.extend_from_slice(&e.kind.guid());
        header.extend_from_slice(&u32::try_from(offset).unwrap_or(u32::MAX).to_le_bytes());
        header.extend_from_slice(
            &u32::try_from(e.data.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        data.extend_from_slice(&e.data);
    }
    header.extend_from_slice(&[0u8; ENTRY_LEN]);
    header.extend_from_slice(&data);
    header
}

/// Turns table entries into the candidates [`super::verify`] takes: every certificate
/// (VCEK, VLEK, ASK/ASVK, ARK) goes into the untrusted PEM chain, where verification picks
/// the endorsement key that the report's SIGNING_KEY field names and ignores any ARK (it
/// uses its pinned copy). CRLs and unknown GUIDs are dropped.
pub fn certs_from_table(entries: &[CertTableEntry]) -> SnpCerts {
    let chain: String = entries
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                CertKind::Vcek | CertKind::Vlek | CertKind::Ask | CertKind::Ark
            )
        })
        .map(|e| crate::pem::der_to_pem(&e.data))
        .collect();
    SnpCerts {
        vcek_or_vlek: None,
        chain_pem: (!chain.is_empty()).then(|| chain.into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_match_the_ghcb_spec_strings() {
        assert_eq!(hex::encode(GUID_VCEK), "63da758de6644564adc5f4b93be8accd");
        assert_eq!(hex::encode(GUID_ARK), "c0b406a4a803495297433fb6014cd0ae");
    }

    #[test]
    fn roundtrip_and_empty() {
        let entries = vec![
            CertTableEntry {
                kind: CertKind::Vcek,
                data: vec![1, 2, 3],
            },
            CertTableEntry {
                kind: CertKind::Other([9; 16]),
                data: vec![4],
            },
        ];
        assert_eq!(parse_cert_table(&build_cert_table(&entries)), Ok(entries));
        assert_eq!(parse_cert_table(&[]), Ok(vec![]));
    }
}
