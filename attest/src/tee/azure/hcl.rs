//! The HCL report an Azure confidential VM's paravisor keeps in vTPM NV index
//! 0x01400001 (ARCHITECTURE.md, "Azure confidential VMs"): a pure parser over untrusted
//! bytes that checks every length against the others and refuses unsigned bytes that
//! are not zero padding.
//!
//! ```text
//! 0     header, 32 bytes, little-endian: "HCLA" | version u32 | report_size u32 |
//!       request_type u32 | status u32 | reserved [u32; 3]
//! 32    hardware report, 1184 bytes: an SEV-SNP report, or a TD report (1024 bytes)
//!       followed by 160 zero bytes
//! 1216  IGVM request data: data_size u32 | version u32 | report_type u32 (2 SNP, 4 TDX)
//!       | report_data_hash_type u32 (1 SHA-256, 2 SHA-384, 3 SHA-512) |
//!       variable_data_size u32, then variable_data_size bytes of runtime-data JSON
//! ...   zero padding up to the NV index's size
//! ```
//!
//! `report_size` is 32 + 1184 + `data_size`, and `data_size` is 20 +
//! `variable_data_size`. Nothing here is signed except through the hardware report:
//! its report_data starts with the hash of the runtime JSON ([`HclReport::runtime_hash`]).

use sha2::Digest as _;
use wire::Reader;

/// `HCLA`, the first four bytes of an HCL report.
pub const SIGNATURE: [u8; 4] = *b"HCLA";
/// Length of the header before the hardware report.
pub const HEADER_LEN: usize = 32;
/// Bytes reserved for the hardware report (an SEV-SNP report's length).
pub const HW_REPORT_LEN: usize = 1184;
/// Offset of the IGVM request data.
pub const REQUEST_DATA_OFFSET: usize = HEADER_LEN + HW_REPORT_LEN;
/// Length of the IGVM request data's header, before the runtime JSON.
pub const REQUEST_HEADER_LEN: usize = 20;
/// Length of a TD report inside the hardware report area.
pub const TD_REPORT_LEN: usize = 1024;
/// Offset of REPORTDATA inside a TD report (in its REPORTMACSTRUCT).
pub const TD_REPORT_DATA_OFFSET: usize = 128;
/// The largest HCL report accepted: far above the 2600 bytes of the NV index, so only
/// nonsense is refused.
pub const MAX_HCL_REPORT_BYTES: usize = 64 * 1024;

/// The hardware that made the report, from the IGVM request data's `report_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HardwareKind {
    /// `2`: an AMD SEV-SNP attestation report.
    SevSnp,
    /// `4`: an Intel TDX TD report (MAC'ed, not signed).
    Tdx,
}

impl std::fmt::Display for HardwareKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HardwareKind::SevSnp => "SEV-SNP",
            HardwareKind::Tdx => "TDX",
        })
    }
}

/// The hash of the runtime JSON that the hardware report's report_data starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeHash {
    /// `1`: SHA-256, report_data[0..32].
    Sha256,
    /// `2`: SHA-384, report_data[0..48].
    Sha384,
    /// `3`: SHA-512, all of report_data.
    Sha512,
}

impl RuntimeHash {
    /// The digest of `data` with this algorithm.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            RuntimeHash::Sha256 => sha2::Sha256::digest(data).to_vec(),
            RuntimeHash::Sha384 => sha2::Sha384::digest(data).to_vec(),
            RuntimeHash::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    /// The algorithm's name.
    pub fn name(self) -> &'static str {
        match self {
            RuntimeHash::Sha256 => "SHA-256",
            RuntimeHash::Sha384 => "SHA-384",
            RuntimeHash::Sha512 => "SHA-512",
        }
    }
}

/// Why bytes are not an HCL report.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum HclError {
    /// The input ended inside a field.
    #[error("HCL report: {0}")]
    Truncated(#[from] wire::Truncated),
    /// The input is larger than [`MAX_HCL_REPORT_BYTES`].
    #[error("HCL report is {len} bytes; the most accepted is {MAX_HCL_REPORT_BYTES}")]
    TooLarge {
        /// Length of the input.
        len: usize,
    },
    /// The first four bytes are not `HCLA`.
    #[error("not an HCL report: it starts with {found:02x?}, not \"HCLA\"")]
    NotHcl {
        /// The first four bytes (fewer if the input is shorter).
        found: Vec<u8>,
    },
    /// The header's report_size disagrees with the IGVM request data's size.
    #[error("HCL header report_size is {declared}, but 32 + 1184 + the request data's data_size ({data_size}) is {expected}")]
    ReportSize {
        /// The header's report_size.
        declared: u32,
        /// The IGVM request data's data_size.
        data_size: u32,
        /// What report_size must be.
        expected: u64,
    },
    /// The IGVM request data's data_size is not its header plus variable_data_size.
    #[error("IGVM request data: data_size is {data_size}, but 20 + variable_data_size ({variable}) is {expected}")]
    RequestDataSize {
        /// The declared data_size.
        data_size: u32,
        /// The declared variable_data_size.
        variable: u32,
        /// What data_size must be.
        expected: u64,
    },
    /// The IGVM request data's report_type is neither 2 (SEV-SNP) nor 4 (TDX).
    #[error("IGVM request data: report_type {0} is neither 2 (SEV-SNP) nor 4 (TDX)")]
    ReportType(u32),
    /// The IGVM request data's report_data_hash_type is not 1, 2 or 3.
    #[error("IGVM request data: report_data_hash_type {0} is not 1 (SHA-256), 2 (SHA-384) or 3 (SHA-512)")]
    HashType(u32),
    /// A byte that no signature covers and that must be zero is not.
    #[error("byte at offset {offset} ({area}) is not zero; nothing signs it")]
    NonZeroPadding {
        /// Offset in the HCL report.
        offset: usize,
        /// Which padding: `"TD report padding"` or `"after the runtime data"`.
        area: &'static str,
    },
}

/// A parsed, unverified HCL report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HclReport {
    /// The header's version (1 and 2 are seen on Azure).
    pub version: u32,
    /// The header's request_type.
    pub request_type: u32,
    /// The hardware that made the report.
    pub kind: HardwareKind,
    /// The hardware report: 1184 bytes for SEV-SNP, the 1024-byte TD report for TDX.
    pub hardware_report: Vec<u8>,
    /// The IGVM request data's version.
    pub request_version: u32,
    /// How the runtime JSON is hashed into report_data.
    pub runtime_hash: RuntimeHash,
    /// The runtime-data JSON, exactly the bytes that are hashed.
    pub runtime_data: Vec<u8>,
}

impl HclReport {
    /// The report_data of the hardware report: SEV-SNP offset 0x50, TD report offset
    /// 128 (REPORTDATA).
    pub fn report_data(&self) -> Option<[u8; 64]> {
        let at = match self.kind {
            HardwareKind::SevSnp => 0x50,
            HardwareKind::Tdx => TD_REPORT_DATA_OFFSET,
        };
        self.hardware_report
            .get(at..at.checked_add(64)?)
            .and_then(|s| s.try_into().ok())
    }
}

/// Whether `bytes` start like an HCL report (the `HCLA` signature): how the CLI tells
/// an HCL report from the other report files it accepts.
pub fn looks_like_hcl(bytes: &[u8]) -> bool {
    bytes.starts_with(&SIGNATURE)
}

/// Parses an HCL report as read from NV index 0x01400001 (trailing zero padding allowed).
pub fn parse(bytes: &[u8]) -> Result<HclReport, HclError> {
    if bytes.len() > MAX_HCL_REPORT_BYTES {
        return Err(HclError::TooLarge { len: bytes.len() });
    }
    if !looks_like_hcl(bytes) {
        return Err(HclError::NotHcl {
            found: bytes.get(..4).unwrap_or(bytes).to_vec(),
        });
    }
    let mut r = Reader::new(bytes);
    r.skip(4, "header signature")?;
    let version = r.u32_le("header version")?;
    let report_size = r.u32_le("header report_size")?;
    let request_type = r.u32_le("header request_type")?;
    r.skip(16, "header status and reserved")?;
    let hw_area = r.take(HW_REPORT_LEN, "hardware report")?;
    let data_size = r.u32_le("IGVM request data_size")?;
    let request_version = r.u32_le("IGVM request version")?;
    let report_type = r.u32_le("IGVM request report_type")?;
    let hash_type = r.u32_le("IGVM request report_data_hash_type")?;
    let variable = r.u32_le("IGVM request variable_data_size")?;

    let expected_data = u64::from(variable) + REQUEST_HEADER_LEN as u64;
    if u64::from(data_size) != expected_data {
        return Err(HclError::RequestDataSize {
            data_size,
            variable,
            expected: expected_data,
        });
    }
    let expected_size = u64::from(data_size) + REQUEST_DATA_OFFSET as u64;
    if u64::from(report_size) != expected_size {
        return Err(HclError::ReportSize {
            declared: report_size,
            data_size,
            expected: expected_size,
        });
    }
    let kind = match report_type {
        2 => HardwareKind::SevSnp,
        4 => HardwareKind::Tdx,
        other => return Err(HclError::ReportType(other)),
    };
    let runtime_hash = match hash_type {
        1 => RuntimeHash::Sha256,
        2 => RuntimeHash::Sha384,
        3 => RuntimeHash::Sha512,
        other => return Err(HclError::HashType(other)),
    };
    let variable = usize::try_from(variable).unwrap_or(usize::MAX);
    let runtime_data = r.take(variable, "runtime data")?.to_vec();
    check_zero(r.rest(), r.offset(), "after the runtime data")?;

    let hardware_report = match kind {
        HardwareKind::SevSnp => hw_area.to_vec(),
        HardwareKind::Tdx => {
            let (td, pad) = hw_area.split_at(TD_REPORT_LEN);
            check_zero(pad, HEADER_LEN + TD_REPORT_LEN, "TD report padding")?;
            td.to_vec()
        }
    };
    Ok(HclReport {
        version,
        request_type,
        kind,
        hardware_report,
        request_version,
        runtime_hash,
        runtime_data,
    })
}

fn check_zero(bytes: &[u8], base: usize, area: &'static str) -> Result<(), HclError> {
    match bytes.iter().position(|b| *b != 0) {
        Some(i) => Err(HclError::NonZeroPadding {
            offset: base.saturating_add(i),
            area,
        }),
        None => Ok(()),
    }
}
