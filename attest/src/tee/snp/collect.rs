//! SEV-SNP collection through `/dev/sev-guest` (the `sev` crate's ioctl wrapper), for
//! kernels without configfs-tsm. Behind the `snp-collect` feature; it only runs inside
//! an SEV-SNP guest. The ioctl request and response structures are the crate's; the
//! gateway's `sev_guest` test runs this path against a stand-in of the kernel driver
//! built from the kernel's UAPI header, so their layout is checked against the
//! kernel's without the device.

use super::cert_table::{CertKind, CertTableEntry};
use sev::firmware::guest::Firmware;

/// A report with the certificates the host attached to it.
#[derive(Debug, Clone)]
pub struct ExtendedReport {
    /// The raw attestation report (1184 bytes).
    pub report: Vec<u8>,
    /// The host's certificate table, parsed; empty when the host provides none.
    pub certificates: Vec<CertTableEntry>,
}

/// Why `/dev/sev-guest` gave no report.
#[derive(Debug, thiserror::Error)]
pub enum SnpCollectError {
    /// `/dev/sev-guest` cannot be opened (not an SEV-SNP guest, or no permission).
    #[error("cannot open /dev/sev-guest: {0}")]
    Open(#[source] std::io::Error),
    /// The `SNP_GET_EXT_REPORT` request failed; holds the driver's or firmware's message.
    #[error("SNP_GET_EXT_REPORT failed: {0}")]
    Firmware(String),
    /// A certificate table entry's GUID string is not 16 hex bytes; holds it.
    #[error("certificate table entry has a malformed GUID `{0}`")]
    Guid(String),
}

fn guid_bytes(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    hex::decode(hex).ok()?.try_into().ok()
}

/// Requests an extended report carrying `report_data`, at VMPL 0 unless `vmpl` says
/// otherwise.
pub fn extended_report(
    report_data: &[u8; 64],
    vmpl: Option<u32>,
) -> Result<ExtendedReport, SnpCollectError> {
    let mut fw = Firmware::open().map_err(SnpCollectError::Open)?;
    // The sev crate asks for VMPL 1 when given none; configfs-tsm's default privilege
    // level, and what this function promises, is 0 (the guest kernel's own level).
    let (report, certs) = fw
        .get_ext_report(None, Some(*report_data), Some(vmpl.unwrap_or(0)))
        .map_err(|e| SnpCollectError::Firmware(e.to_string()))?;
    let mut certificates = Vec::new();
    for entry in certs.unwrap_or_default() {
        let guid_str = entry.guid_string();
        let guid = guid_bytes(&guid_str).ok_or(SnpCollectError::Guid(guid_str))?;
        certificates.push(CertTableEntry {
            kind: CertKind::from_guid(guid),
            data: entry.data().to_vec(),
        });
    }
    Ok(ExtendedReport {
        report,
        certificates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The response side verigate owns: the certificate table's GUID strings as the `sev`
    /// crate renders them (the ioctl request and the report response are the crate's,
    /// built without unsafe code on our side).
    #[test]
    fn certificate_table_guids_parse_from_the_crates_string_form() {
        // The VCEK's GUID (AMD's GHCB specification, certificate table).
        let vcek = guid_bytes("63da758d-e664-4564-adc5-f4b93be8accd").expect("GUID");
        assert_eq!(hex::encode(vcek), "63da758de6644564adc5f4b93be8accd");
        assert!(matches!(CertKind::from_guid(vcek), CertKind::Vcek));
        for bad in [
            "",
            "63da758d",
            "zz da758d-e664-4564-adc5-f4b93be8accd",
            "63da758d-e664-4564-adc5-f4b93be8accd00",
        ] {
            assert_eq!(guid_bytes(bad), None, "{bad}");
        }
    }
}
