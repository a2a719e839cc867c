//! AMD SEV-SNP attestation reports: a strict parser for report versions 2, 3 and 5, and
//! offline verification of the report against AMD's key hierarchy.
//!
//! Trust comes only from the AMD Root Keys (ARK) of Milan, Genoa and Turin, compiled into
//! the binary (the `sev` crate's builtin copies, checked against the evidence files by
//! the tests). Certificates that travel with the evidence (the VCEK or VLEK, an ASK or
//! ASVK) are only candidates: an intermediate counts if the pinned ARK signed it, and a
//! root that comes with the evidence is ignored. The leaf must then sign the report's
//! first 0x2A0 bytes (ECDSA P-384, SHA-384), carry the report's `reported_tcb` in its TCB
//! extensions and, for a VCEK, the report's `chip_id` in its hwID extension.
//!
//! VLEK: the `sev` crate ships no ASVK, and this build has no network to fetch one, so a
//! VLEK-signed report verifies only when its chain brings the ASVK (KDS `cert_chain` for
//! VLEK); the ASVK must then be signed by the pinned ARK like any offered intermediate.
//! No VLEK evidence exists publicly, so that path is covered by the shared code, not by a
//! test on a real VLEK.
//!
//! Product detection: the product (Milan, Genoa, Turin) is the one whose pinned ARK
//! validates the chain. A v3+ report also names its CPU (family/model), which must agree
//! with it; a v2 report has no CPUID, so the chain alone decides (a Turin-shaped chip id
//! under a non-Turin chain, or the reverse, is refused as a mismatch). The product also
//! decides how the TCB fields are laid out (Turin adds FMC and moves the others).

pub mod cert_table;
#[cfg(feature = "snp-collect")]
pub mod collect;
pub mod kds;

use p384::ecdsa::signature::Verifier as _;
use sev::certs::snp::{builtin, Certificate as SevCertificate, Verifiable as _};
use std::fmt;
use std::time::SystemTime;
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::Certificate;

/// Length in bytes of an attestation report, every supported version.
pub const REPORT_LEN: usize = 0x4A0;
/// The report's signature covers bytes `0..SIGNED_LEN`.
pub const SIGNED_LEN: usize = 0x2A0;
/// Report versions this parser understands.
pub const SUPPORTED_VERSIONS: [u32; 3] = [2, 3, 5];

const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;
/// Offsets of r and s (72 bytes each, little-endian; only the low 48 bytes carry the
/// P-384 scalar) inside the report.
const SIG_R: usize = SIGNED_LEN;
const SIG_S: usize = SIGNED_LEN + 72;
const SIG_END: usize = SIGNED_LEN + 144;

/// OIDs of AMD's VCEK/VLEK extensions (AMD "Versioned Chip Endorsement Key" spec).
const OID_BOOTLOADER: &str = "1.3.6.1.4.1.3704.1.3.1";
const OID_TEE: &str = "1.3.6.1.4.1.3704.1.3.2";
const OID_SNP: &str = "1.3.6.1.4.1.3704.1.3.3";
const OID_MICROCODE: &str = "1.3.6.1.4.1.3704.1.3.8";
const OID_FMC: &str = "1.3.6.1.4.1.3704.1.3.9";
const OID_HWID: &str = "1.3.6.1.4.1.3704.1.4";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";

/// Why an SEV-SNP report was refused. Each variant names the field or certificate.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnpError {
    /// The report is not exactly [`REPORT_LEN`] bytes long.
    #[error("SEV-SNP report is {got} bytes, expected {expected}")]
    ReportLength {
        /// The length every supported version has ([`REPORT_LEN`]).
        expected: usize,
        /// The length of the bytes given.
        got: usize,
    },
    /// The VERSION field (offset 0x00) is not one of [`SUPPORTED_VERSIONS`]; holds it.
    #[error("unsupported SEV-SNP report version {0} (supported: 2, 3, 5)")]
    UnsupportedVersion(u32),
    /// The SIGNATURE_ALGO field (offset 0x34) is not 1 (ECDSA P-384 with SHA-384);
    /// holds it.
    #[error("unsupported report signature algorithm {0} (expected 1: ECDSA P-384 with SHA-384)")]
    UnsupportedSignatureAlgorithm(u32),
    /// The SIGNING_KEY field names neither a VCEK (0) nor a VLEK (1), e.g. 7 for an
    /// unsigned report; holds it.
    #[error("report signing-key field is {0}: the report is not signed by a VCEK or VLEK")]
    UnsupportedSigningKey(u8),
    /// A reserved byte after the signature is not zero: unsigned bytes could otherwise
    /// make two byte strings pass as one report.
    #[error("report byte at offset {offset:#x} is outside the signature but not zero")]
    UnsignedBytesNotZero {
        /// Offset of the first non-zero byte in the report.
        offset: usize,
    },
    /// The signature's r or s has non-zero bytes above its low 48 (the P-384 scalar).
    #[error("report signature {component} has non-zero bytes above the 48-byte P-384 scalar")]
    SignatureScalarTooLong {
        /// Which component is too long: `"r"` or `"s"`.
        component: &'static str,
    },
    /// r and s are not a valid P-384 signature (e.g. zero or not below the group order);
    /// holds the library's reason.
    #[error("report signature is not a valid P-384 (r, s) pair: {0}")]
    MalformedSignature(String),
    /// The ECDSA signature over the report's signed bytes does not verify under the
    /// endorsement key's public key.
    #[error("report signature does not verify under the {key}")]
    BadReportSignature {
        /// The key the report claims signed it.
        key: EndorsementKind,
    },
    /// The CPUID family and model of a v3+ report name no known SEV-SNP product.
    #[error("CPUID family {family:#x} model {model:#x} is not a known SEV-SNP product")]
    UnknownCpu {
        /// CPUID family (offset 0x188).
        family: u8,
        /// CPUID model (offset 0x189).
        model: u8,
    },
    /// The product the report names (by CPUID, or by chip id shape for a v2 report) is
    /// not the product whose pinned ARK validates the endorsement key.
    #[error("report says {report} but the {key} chains to the {chain} ARK")]
    ProductMismatch {
        /// The product the report names (Milan stands for "Milan or Genoa" when only
        /// the chip id shape is known).
        report: Product,
        /// The product of the ARK the chain leads to.
        chain: Product,
        /// The endorsement key whose chain was followed.
        key: EndorsementKind,
    },
    /// No certificate of the kind the report names was given, neither alone nor in the
    /// offered chain.
    #[error("no {0} certificate was given (neither as a file nor in the chain)")]
    MissingEndorsementKey(EndorsementKind),
    /// The endorsement key certificate given has the wrong subject CN for the kind of
    /// key the report names (e.g. a VLEK for a VCEK-signed report).
    #[error("the report is signed by a {expected}, but the certificate given is `{subject}`")]
    WrongEndorsementKey {
        /// The kind the report's SIGNING_KEY field names.
        expected: EndorsementKind,
        /// The subject of the certificate given.
        subject: String,
    },
    /// A certificate (given, offered in the chain or pinned) is not valid DER or PEM.
    #[error("cannot parse certificate {which}: {reason}")]
    CertificateParse {
        /// The certificate's role, e.g. `VCEK` or `chain[1]`.
        which: String,
        /// The decoder's message.
        reason: String,
    },
    /// The endorsement key certificate does not hold a usable P-384 EC public key.
    #[error("{which}: {reason}")]
    CertificateKey {
        /// The certificate's role (`VCEK` or `VLEK`).
        which: String,
        /// What is wrong with its key.
        reason: String,
    },
    /// No pinned ARK issued an intermediate (pinned ASK or offered) that issued the
    /// endorsement key, so the key does not chain to AMD.
    #[error("no pinned AMD ARK issues an intermediate for `{issuer}` (the issuer of the {key})")]
    UntrustedIssuer {
        /// The issuer name of the endorsement key certificate.
        issuer: String,
        /// The kind of endorsement key.
        key: EndorsementKind,
    },
    /// A certificate signature in the chain does not verify (or its signature
    /// algorithm fields disagree).
    #[error("signature of {signee} by {signer} does not verify: {reason}")]
    CertificateSignature {
        /// Role of the certificate that should have signed.
        signer: String,
        /// Role of the certificate whose signature was checked.
        signee: String,
        /// Why it failed.
        reason: String,
    },
    /// A certificate in the chain is not yet valid at the verification time.
    #[error("certificate {which} is not valid before {not_before} (verification time {at})")]
    CertificateNotYetValid {
        /// The certificate's role.
        which: String,
        /// Its notBefore, RFC 3339.
        not_before: String,
        /// The verification time, RFC 3339.
        at: String,
    },
    /// A certificate in the chain has expired at the verification time.
    #[error("certificate {which} expired at {not_after} (verification time {at})")]
    CertificateExpired {
        /// The certificate's role.
        which: String,
        /// Its notAfter, RFC 3339.
        not_after: String,
        /// The verification time, RFC 3339.
        at: String,
    },
    /// The endorsement key certificate lacks a TCB extension that the product's
    /// TCB layout needs.
    #[error("{key} lacks the TCB extension {oid} ({field})")]
    TcbExtensionMissing {
        /// The kind of endorsement key.
        key: EndorsementKind,
        /// The TCB component, e.g. `"microcode"`.
        field: &'static str,
        /// The extension's OID.
        oid: &'static str,
    },
    /// A TCB extension of the endorsement key certificate is not a DER INTEGER that
    /// fits a byte.
    #[error("{key} extension {oid} ({field}) is not a DER INTEGER 0..=255")]
    TcbExtensionMalformed {
        /// The kind of endorsement key.
        key: EndorsementKind,
        /// The TCB component, e.g. `"snp"`.
        field: &'static str,
        /// The extension's OID.
        oid: &'static str,
    },
    /// A component of the report's `reported_tcb` differs from the TCB the endorsement
    /// key certifies: the key was issued for another TCB.
    #[error("reported_tcb.{field} is {report} but the {key} certifies {certificate}")]
    TcbMismatch {
        /// The TCB component, e.g. `"bootloader"`.
        field: &'static str,
        /// Its security version in the report.
        report: u8,
        /// Its security version in the certificate.
        certificate: u8,
        /// The kind of endorsement key.
        key: EndorsementKind,
    },
    /// The VCEK certificate has no hwID extension, so the chip cannot be matched.
    #[error("VCEK lacks the hwID extension 1.3.6.1.4.1.3704.1.4")]
    HwIdMissing,
    /// The report's `chip_id` is not the VCEK's hwID: the VCEK belongs to another chip.
    #[error("report chip_id {report} differs from the VCEK hwID {certificate}")]
    HwIdMismatch {
        /// The report's chip id, hex.
        report: String,
        /// The certificate's hwID, hex.
        certificate: String,
    },
    /// The report's `chip_id` is all zero (MASK_CHIP_ID), so a VCEK cannot be tied to it.
    #[error("report chip_id is masked (all zero), so it cannot be matched with the VCEK hwID")]
    ChipIdMasked,
    /// The guest policy's DEBUG bit (19) is set.
    #[error("guest policy {policy:#x} allows debugging: the hypervisor can read guest memory")]
    DebugAllowed {
        /// The whole guest policy.
        policy: u64,
    },
}

/// The stages of [`verify`], in the order it runs them. A failure belongs to one stage,
/// so a report can show which property failed and which ones passed before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SnpStep {
    /// Length, version, signature algorithm, reserved bytes.
    Format,
    /// A VCEK/VLEK of the kind the report names was given.
    EndorsementKey,
    /// VCEK/VLEK -> ASK/ASVK -> pinned ARK, validity at the verification time.
    Chain,
    /// The report's CPU (CPUID or chip id shape) matches the chain's product.
    Product,
    /// ECDSA P-384 signature over the first 0x2A0 bytes.
    Signature,
    /// reported_tcb equals the TCB certified by the VCEK/VLEK.
    Tcb,
    /// chip_id equals the VCEK hwID.
    HwId,
    /// Guest policy (debug refused).
    Policy,
}

impl SnpStep {
    /// Every stage, in order.
    pub const ALL: [SnpStep; 8] = [
        SnpStep::Format,
        SnpStep::EndorsementKey,
        SnpStep::Chain,
        SnpStep::Product,
        SnpStep::Signature,
        SnpStep::Tcb,
        SnpStep::HwId,
        SnpStep::Policy,
    ];
}

impl SnpError {
    /// The stage of [`verify`] that produced this error.
    pub fn step(&self) -> SnpStep {
        use SnpError::*;
        match self {
            ReportLength { .. }
            | UnsupportedVersion(_)
            | UnsupportedSignatureAlgorithm(_)
            | UnsignedBytesNotZero { .. } => SnpStep::Format,
            UnsupportedSigningKey(_) | MissingEndorsementKey(_) | WrongEndorsementKey { .. } => {
                SnpStep::EndorsementKey
            }
            CertificateParse { .. }
            | UntrustedIssuer { .. }
            | CertificateSignature { .. }
            | CertificateNotYetValid { .. }
            | CertificateExpired { .. } => SnpStep::Chain,
            UnknownCpu { .. } | ProductMismatch { .. } => SnpStep::Product,
            SignatureScalarTooLong { .. }
            | MalformedSignature(_)
            | BadReportSignature { .. }
            | CertificateKey { .. } => SnpStep::Signature,
            TcbExtensionMissing { .. } | TcbExtensionMalformed { .. } | TcbMismatch { .. } => {
                SnpStep::Tcb
            }
            HwIdMissing | HwIdMismatch { .. } | ChipIdMasked => SnpStep::HwId,
            DebugAllowed { .. } => SnpStep::Policy,
        }
    }
}

/// An AMD EPYC generation with SEV-SNP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Product {
    /// EPYC 7003 (Zen 3), family 0x19 models 0x00..=0x0F.
    Milan,
    /// EPYC 9004 (Zen 4), family 0x19 models 0x10..=0x1F and 0xA0..=0xAF.
    Genoa,
    /// EPYC 9005 (Zen 5), family 0x1A models 0x00..=0x11; its TCB layout adds FMC.
    Turin,
}

impl Product {
    /// Every product with a pinned ARK.
    pub const ALL: [Product; 3] = [Product::Milan, Product::Genoa, Product::Turin];

    /// The product from the CPUID fields of a v3+ report (same table as AMD's KDS docs).
    pub fn from_cpuid(family: u8, model: u8) -> Option<Product> {
        match (family, model) {
            (0x19, 0x00..=0x0F) => Some(Product::Milan),
            (0x19, 0x10..=0x1F | 0xA0..=0xAF) => Some(Product::Genoa),
            (0x1A, 0x00..=0x11) => Some(Product::Turin),
            _ => None,
        }
    }

    /// AMD's ARK for this product (PEM), as embedded in the binary.
    pub fn pinned_ark_pem(self) -> &'static [u8] {
        match self {
            Product::Milan => builtin::milan::ARK,
            Product::Genoa => builtin::genoa::ARK,
            Product::Turin => builtin::turin::ARK,
        }
    }

    /// AMD's ASK for this product (PEM), as embedded in the binary.
    pub fn pinned_ask_pem(self) -> &'static [u8] {
        match self {
            Product::Milan => builtin::milan::ASK,
            Product::Genoa => builtin::genoa::ASK,
            Product::Turin => builtin::turin::ASK,
        }
    }

    /// Whether the TCB_VERSION layout has the Turin FMC byte.
    fn turin_tcb_layout(self) -> bool {
        self == Product::Turin
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
            Product::Turin => "Turin",
        })
    }
}

/// Which AMD key signed a report (the report's SIGNING_KEY field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EndorsementKind {
    /// Versioned Chip Endorsement Key: per chip and per TCB.
    Vcek,
    /// Versioned Loaded Endorsement Key: per cloud provider and per TCB.
    Vlek,
}

impl fmt::Display for EndorsementKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndorsementKind::Vcek => "VCEK",
            EndorsementKind::Vlek => "VLEK",
        })
    }
}

impl EndorsementKind {
    /// The subject CN AMD gives to this key's certificates.
    fn subject_cn(self) -> &'static str {
        match self {
            EndorsementKind::Vcek => "SEV-VCEK",
            EndorsementKind::Vlek => "SEV-VLEK",
        }
    }

    fn intermediate_name(self) -> &'static str {
        match self {
            EndorsementKind::Vcek => "ASK",
            EndorsementKind::Vlek => "ASVK",
        }
    }
}

/// The guest policy that the guest owner fixed at launch (a 64-bit field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GuestPolicy(pub u64);

impl GuestPolicy {
    fn bit(self, n: u32) -> bool {
        (self.0 >> n) & 1 == 1
    }
    /// Minimum firmware ABI minor version.
    pub fn abi_minor(self) -> u8 {
        self.0.to_le_bytes()[0]
    }
    /// Minimum firmware ABI major version.
    pub fn abi_major(self) -> u8 {
        self.0.to_le_bytes()[1]
    }
    /// SMT (hyper-threading) may be enabled on the host.
    pub fn smt_allowed(self) -> bool {
        self.bit(16)
    }
    /// A migration agent may be associated with the guest.
    pub fn migrate_ma(self) -> bool {
        self.bit(18)
    }
    /// Debugging is allowed: the hypervisor may decrypt guest memory.
    pub fn debug_allowed(self) -> bool {
        self.bit(19)
    }
    /// The guest may only run on a single socket.
    pub fn single_socket(self) -> bool {
        self.bit(20)
    }
    /// CXL may be populated with devices or memory.
    pub fn cxl_allowed(self) -> bool {
        self.bit(21)
    }
    /// AES-256-XTS memory encryption is required.
    pub fn mem_aes_256_xts(self) -> bool {
        self.bit(22)
    }
    /// Running Average Power Limit must be disabled.
    pub fn rapl_dis(self) -> bool {
        self.bit(23)
    }
    /// Ciphertext hiding must be enabled.
    pub fn ciphertext_hiding(self) -> bool {
        self.bit(24)
    }
    /// Guest page swapping by the hypervisor is disabled (v5 reports).
    pub fn page_swap_disable(self) -> bool {
        self.bit(25)
    }

    /// The names of the flags that are set, for display.
    pub fn flags(self) -> Vec<&'static str> {
        let named = [
            (self.smt_allowed(), "SMT"),
            (self.migrate_ma(), "MIGRATE_MA"),
            (self.debug_allowed(), "DEBUG"),
            (self.single_socket(), "SINGLE_SOCKET"),
            (self.cxl_allowed(), "CXL_ALLOW"),
            (self.mem_aes_256_xts(), "MEM_AES_256_XTS"),
            (self.rapl_dis(), "RAPL_DIS"),
            (self.ciphertext_hiding(), "CIPHERTEXT_HIDING"),
            (self.page_swap_disable(), "PAGE_SWAP_DISABLE"),
        ];
        named
            .iter()
            .filter(|(set, _)| *set)
            .map(|(_, n)| *n)
            .collect()
    }
}

/// A TCB_VERSION decoded for a product: the security version of each firmware part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TcbVersion {
    /// Firmware Mask ROM Code version (Turin and later only).
    pub fmc: Option<u8>,
    /// Security version of the PSP bootloader.
    pub bootloader: u8,
    /// Security version of the PSP operating system (the TEE).
    pub tee: u8,
    /// Security version of the SEV-SNP firmware.
    pub snp: u8,
    /// Security patch level of the CPU microcode.
    pub microcode: u8,
}

impl TcbVersion {
    /// Decodes the 8 raw bytes of a TCB_VERSION field with the layout of `product`.
    pub fn decode(raw: [u8; 8], product: Product) -> TcbVersion {
        if product.turin_tcb_layout() {
            TcbVersion {
                fmc: Some(raw[0]),
                bootloader: raw[1],
                tee: raw[2],
                snp: raw[3],
                microcode: raw[7],
            }
        } else {
            TcbVersion {
                fmc: None,
                bootloader: raw[0],
                tee: raw[1],
                snp: raw[6],
                microcode: raw[7],
            }
        }
    }
}

impl fmt::Display for TcbVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(fmc) = self.fmc {
            write!(f, "fmc={fmc} ")?;
        }
        write!(
            f,
            "bootloader={} tee={} snp={} microcode={}",
            self.bootloader, self.tee, self.snp, self.microcode
        )
    }
}

/// CPU identification carried by v3+ reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cpuid {
    /// Extended family (offset 0x188), e.g. 0x19 for Milan and Genoa.
    pub family: u8,
    /// Extended model (offset 0x189); with the family it names the product.
    pub model: u8,
    /// Stepping (offset 0x18A).
    pub stepping: u8,
}

/// A firmware version (major.minor.build).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirmwareVersion {
    /// Major version.
    pub major: u8,
    /// Minor version.
    pub minor: u8,
    /// Build number.
    pub build: u8,
}

/// Every field of an attestation report, parsed but not verified. TCB fields are kept
/// raw because their layout depends on the product, which only the chain establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpReport {
    /// Report format version (offset 0x00): 2, 3 or 5.
    pub version: u32,
    /// Guest security version number from the ID block (offset 0x04).
    pub guest_svn: u32,
    /// Guest policy fixed at launch (offset 0x08).
    pub policy: GuestPolicy,
    /// Family ID from the ID block, chosen by the guest owner (offset 0x10).
    pub family_id: [u8; 16],
    /// Image ID from the ID block, chosen by the guest owner (offset 0x20).
    pub image_id: [u8; 16],
    /// VMPL (0 most privileged) of the guest code that asked for the report (offset 0x30).
    pub vmpl: u32,
    /// Signature algorithm (offset 0x34); 1, ECDSA P-384 with SHA-384, is the only one
    /// the parser accepts.
    pub sig_algo: u32,
    /// TCB_VERSION the platform runs now, raw (offset 0x38); see [`TcbVersion::decode`].
    pub current_tcb: [u8; 8],
    /// PLATFORM_INFO flags (offset 0x40): SMT enabled, TSME enabled and others.
    pub platform_info: u64,
    /// AUTHOR_KEY_EN: an author key signed the ID key.
    pub author_key_en: bool,
    /// MASK_CHIP_KEY: the VCEK is not used.
    pub mask_chip_key: bool,
    /// The SIGNING_KEY field: 0 VCEK, 1 VLEK, 7 none.
    pub signing_key: u8,
    /// Data the guest supplied with the request (offset 0x50); verigate puts the
    /// binding here (ARCHITECTURE.md, 'Binding').
    pub report_data: [u8; 64],
    /// Launch measurement of the guest's initial memory and state (offset 0x90).
    pub measurement: [u8; 48],
    /// Data the host supplied at launch (offset 0xC0), unmeasured but reported.
    pub host_data: [u8; 32],
    /// SHA-384 of the ID key that signed the ID block, zero without one (offset 0xE0).
    pub id_key_digest: [u8; 48],
    /// SHA-384 of the author key that signed the ID key, zero without one (offset 0x110).
    pub author_key_digest: [u8; 48],
    /// Report ID of the guest, stable across migration (offset 0x140).
    pub report_id: [u8; 32],
    /// Report ID of the guest's migration agent, all ones without one (offset 0x160).
    pub report_id_ma: [u8; 32],
    /// TCB_VERSION the endorsement key was issued for, raw (offset 0x180).
    pub reported_tcb: [u8; 8],
    /// Present from version 3.
    pub cpuid: Option<Cpuid>,
    /// Chip identifier (offset 0x1A0), equal to the VCEK's hwID; all zero when masked.
    pub chip_id: [u8; 64],
    /// TCB_VERSION committed on the platform, below which it cannot roll back, raw
    /// (offset 0x1E0).
    pub committed_tcb: [u8; 8],
    /// Firmware version the platform runs now (offset 0x1E8).
    pub current_version: FirmwareVersion,
    /// Firmware version committed on the platform (offset 0x1EC).
    pub committed_version: FirmwareVersion,
    /// TCB_VERSION at the guest's launch, raw (offset 0x1F0).
    pub launch_tcb: [u8; 8],
    /// Mitigation vector at the guest's launch (offset 0x1F8); present from version 5.
    pub launch_mit_vector: Option<u64>,
    /// Mitigation vector the platform has now (offset 0x200); present from version 5.
    pub current_mit_vector: Option<u64>,
    /// r, little-endian, 72 bytes as in the report.
    pub signature_r: [u8; 72],
    /// s, little-endian, 72 bytes as in the report.
    pub signature_s: [u8; 72],
}

impl SnpReport {
    /// Which key signed the report, from the SIGNING_KEY field.
    pub fn endorsement_kind(&self) -> Result<EndorsementKind, SnpError> {
        match self.signing_key {
            0 => Ok(EndorsementKind::Vcek),
            1 => Ok(EndorsementKind::Vlek),
            other => Err(SnpError::UnsupportedSigningKey(other)),
        }
    }

    /// The product named by the CPUID fields (v3+), if any.
    pub fn cpuid_product(&self) -> Result<Option<Product>, SnpError> {
        match self.cpuid {
            None => Ok(None),
            Some(c) => {
                Product::from_cpuid(c.family, c.model)
                    .map(Some)
                    .ok_or(SnpError::UnknownCpu {
                        family: c.family,
                        model: c.model,
                    })
            }
        }
    }
}

/// Copies `N` bytes at `off`; the caller has checked the report length, so a failure is
/// only possible through a bug, and it is still an error rather than a panic.
fn take<const N: usize>(b: &[u8], off: usize) -> Result<[u8; N], SnpError> {
    off.checked_add(N)
        .and_then(|end| b.get(off..end))
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or(SnpError::ReportLength {
            expected: REPORT_LEN,
            got: b.len(),
        })
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, SnpError> {
    take::<4>(b, off).map(u32::from_le_bytes)
}

fn u64_at(b: &[u8], off: usize) -> Result<u64, SnpError> {
    take::<8>(b, off).map(u64::from_le_bytes)
}

/// Parses an attestation report (exactly [`REPORT_LEN`] bytes, version 2, 3 or 5).
/// It checks the layout only; [`verify`] checks the signature and the chain.
pub fn parse_report(b: &[u8]) -> Result<SnpReport, SnpError> {
    if b.len() != REPORT_LEN {
        return Err(SnpError::ReportLength {
            expected: REPORT_LEN,
            got: b.len(),
        });
    }
    let version = u32_at(b, 0x00)?;
    if !SUPPORTED_VERSIONS.contains(&version) {
        return Err(SnpError::UnsupportedVersion(version));
    }
    let sig_algo = u32_at(b, 0x34)?;
    if sig_algo != SIG_ALGO_ECDSA_P384_SHA384 {
        return Err(SnpError::UnsupportedSignatureAlgorithm(sig_algo));
    }
    let key_info = u32_at(b, 0x48)?;
    let [cur_build, cur_minor, cur_major, _] = take::<4>(b, 0x1E8)?;
    let [com_build, com_minor, com_major, _] = take::<4>(b, 0x1EC)?;
    let cpuid = if version >= 3 {
        let [family, model, stepping] = take::<3>(b, 0x188)?;
        Some(Cpuid {
            family,
            model,
            stepping,
        })
    } else {
        None
    };
    let (launch_mit_vector, current_mit_vector) = if version >= 5 {
        (Some(u64_at(b, 0x1F8)?), Some(u64_at(b, 0x200)?))
    } else {
        (None, None)
    };
    let signature_r = take::<72>(b, SIG_R)?;
    let signature_s = take::<72>(b, SIG_S)?;
    // The bytes after (r, s) are reserved and outside the signed area: a verifier that
    // ignored them would accept two different byte strings for one report.
    if let Some(pos) = b
        .get(SIG_END..)
        .and_then(|tail| tail.iter().position(|&x| x != 0))
    {
        return Err(SnpError::UnsignedBytesNotZero {
            offset: SIG_END + pos,
        });
    }
    Ok(SnpReport {
        version,
        guest_svn: u32_at(b, 0x04)?,
        policy: GuestPolicy(u64_at(b, 0x08)?),
        family_id: take(b, 0x10)?,
        image_id: take(b, 0x20)?,
        vmpl: u32_at(b, 0x30)?,
        sig_algo,
        current_tcb: take(b, 0x38)?,
        platform_info: u64_at(b, 0x40)?,
        author_key_en: key_info & 1 == 1,
        mask_chip_key: (key_info >> 1) & 1 == 1,
        signing_key: ((key_info >> 2) & 0b111) as u8,
        report_data: take(b, 0x50)?,
        measurement: take(b, 0x90)?,
        host_data: take(b, 0xC0)?,
        id_key_digest: take(b, 0xE0)?,
        author_key_digest: take(b, 0x110)?,
        report_id: take(b, 0x140)?,
        report_id_ma: take(b, 0x160)?,
        reported_tcb: take(b, 0x180)?,
        cpuid,
        chip_id: take(b, 0x1A0)?,
        committed_tcb: take(b, 0x1E0)?,
        current_version: FirmwareVersion {
            major: cur_major,
            minor: cur_minor,
            build: cur_build,
        },
        committed_version: FirmwareVersion {
            major: com_major,
            minor: com_minor,
            build: com_build,
        },
        launch_tcb: take(b, 0x1F0)?,
        launch_mit_vector,
        current_mit_vector,
        signature_r,
        signature_s,
    })
}

/// The certificates offered with a report. Neither is trusted by itself.
#[derive(Debug, Clone, Default)]
pub struct SnpCerts {
    /// The VCEK or VLEK certificate (DER, or PEM), e.g. fetched from AMD KDS.
    pub vcek_or_vlek: Option<Vec<u8>>,
    /// A PEM bundle that came with the evidence (extended report, auxblob, KDS
    /// `cert_chain`): may hold the VCEK/VLEK and the ASK/ASVK. An ARK in it is ignored.
    pub chain_pem: Option<Vec<u8>>,
}

/// A report that passed every check of [`verify`], with the fields callers compare
/// against their expectations (`report_data` against the binding, `measurement` and
/// `policy` against a snapshot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpVerified {
    /// Report format version: 2, 3 or 5.
    pub version: u32,
    /// The product whose pinned ARK validated the chain.
    pub product: Product,
    /// The kind of key that signed the report.
    pub signed_by: EndorsementKind,
    /// Launch measurement, compared with a snapshot.
    pub measurement: [u8; 48],
    /// Guest policy, raw (see [`SnpVerified::guest_policy`]); its debug bit is clear.
    pub policy: u64,
    /// Data the guest supplied, compared with the recomputed binding.
    pub report_data: [u8; 64],
    /// Data the host supplied at launch.
    pub host_data: [u8; 32],
    /// Chip identifier; for a VCEK-signed report it equals the VCEK's hwID.
    pub chip_id: [u8; 64],
    /// VMPL of the guest code that asked for the report.
    pub vmpl: u32,
    /// `reported_tcb`, equal to the TCB certified by the VCEK/VLEK.
    pub reported_tcb: TcbVersion,
    /// TCB the platform runs now, decoded for the product.
    pub current_tcb: TcbVersion,
    /// TCB committed on the platform, decoded for the product.
    pub committed_tcb: TcbVersion,
    /// TCB at the guest's launch, decoded for the product.
    pub launch_tcb: TcbVersion,
    /// The full parsed report, for fields not lifted above.
    pub report: SnpReport,
}

impl SnpVerified {
    /// The guest policy with named accessors.
    pub fn guest_policy(&self) -> GuestPolicy {
        GuestPolicy(self.policy)
    }
}

/// The checks on the guest policy that every verification applies. Pure, so it can be
/// tested on a parsed report (a real report with debug set cannot be re-signed).
pub fn check_guest_policy(report: &SnpReport) -> Result<(), SnpError> {
    if report.policy.debug_allowed() {
        return Err(SnpError::DebugAllowed {
            policy: report.policy.0,
        });
    }
    Ok(())
}

/// `t` in RFC 3339 (UTC), for messages about validity periods.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let secs = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs())
            .map(|s| -s)
            .unwrap_or(i64::MIN),
    };
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{secs}s since epoch"))
}

/// A parsed certificate with the role it plays, for error messages.
struct Cert {
    role: String,
    x509: Certificate,
}

impl Cert {
    fn from_der(role: impl Into<String>, der: &[u8]) -> Result<Cert, SnpError> {
        let role = role.into();
        let x509 = Certificate::from_der(der).map_err(|e| SnpError::CertificateParse {
            which: role.clone(),
            reason: e.to_string(),
        })?;
        Ok(Cert { role, x509 })
    }

    fn subject(&self) -> String {
        self.x509.tbs_certificate.subject.to_string()
    }

    fn common_name(&self) -> Option<String> {
        common_name(&self.x509.tbs_certificate.subject)
    }

    fn issued(&self, child: &Cert) -> bool {
        self.x509.tbs_certificate.subject == child.x509.tbs_certificate.issuer
    }

    fn is_self_issued(&self) -> bool {
        self.issued(self)
    }

    fn extension(&self, oid: &str) -> Option<&[u8]> {
        self.x509
            .tbs_certificate
            .extensions
            .as_ref()?
            .iter()
            .find(|e| e.extn_id.to_string() == oid)
            .map(|e| e.extn_value.as_bytes())
    }

    fn check_validity(&self, at: SystemTime) -> Result<(), SnpError> {
        let v = &self.x509.tbs_certificate.validity;
        let (nb, na) = (v.not_before.to_system_time(), v.not_after.to_system_time());
        if at < nb {
            return Err(SnpError::CertificateNotYetValid {
                which: self.role.clone(),
                not_before: rfc3339(nb),
                at: rfc3339(at),
            });
        }
        if at > na {
            return Err(SnpError::CertificateExpired {
                which: self.role.clone(),
                not_after: rfc3339(na),
                at: rfc3339(at),
            });
        }
        Ok(())
    }

    /// Checks that `self` signed `child` (AMD signs with RSA-PSS, SHA-384, salt 48;
    /// the `sev` crate implements exactly that check).
    fn check_signed(&self, child: &Cert) -> Result<(), SnpError> {
        let fail = |reason: String| SnpError::CertificateSignature {
            signer: self.role.clone(),
            signee: child.role.clone(),
            reason,
        };
        // The outer algorithm is not signed; RFC 5280 requires it to equal the signed
        // `tbsCertificate.signature`, so a changed byte there is a different certificate.
        if child.x509.signature_algorithm != child.x509.tbs_certificate.signature {
            return Err(fail(
                "outer signatureAlgorithm differs from tbsCertificate.signature".into(),
            ));
        }
        if child.x509.signature.as_bytes().is_none() {
            return Err(fail("signature BIT STRING has unused bits".into()));
        }
        let signer = SevCertificate::from(self.x509.clone());
        let signee = SevCertificate::from(child.x509.clone());
        (&signer, &signee).verify().map_err(|e| fail(e.to_string()))
    }
}

fn common_name(name: &x509_cert::name::Name) -> Option<String> {
    const CN: &str = "2.5.4.3";
    for rdn in &name.0 {
        for atv in rdn.0.iter() {
            if atv.oid.to_string() == CN {
                // AMD encodes names as UTF8String; other string types are rendered
                // through their DER content, which is the same for ASCII.
                return Some(String::from_utf8_lossy(atv.value.value()).into_owned());
            }
        }
    }
    None
}

/// Splits a PEM bundle into DER certificates.
pub fn pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, SnpError> {
    let certs = crate::pem::parse_certificates(pem).map_err(|e| SnpError::CertificateParse {
        which: "chain (PEM)".into(),
        reason: e.to_string(),
    })?;
    certs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            c.to_der().map_err(|e| SnpError::CertificateParse {
                which: format!("chain[{i}]"),
                reason: e.to_string(),
            })
        })
        .collect()
}

fn parse_any(role: &str, bytes: &[u8]) -> Result<Cert, SnpError> {
    if bytes.starts_with(b"-----BEGIN") {
        let ders = pem_certificates(bytes)?;
        match ders.as_slice() {
            [one] => Cert::from_der(role, one),
            _ => Err(SnpError::CertificateParse {
                which: role.to_string(),
                reason: format!("expected one PEM certificate, found {}", ders.len()),
            }),
        }
    } else {
        Cert::from_der(role, bytes)
    }
}

struct PinnedRoot {
    product: Product,
    ark: Cert,
    ask: Cert,
}

fn pinned_roots() -> Result<Vec<PinnedRoot>, SnpError> {
    Product::ALL
        .iter()
        .map(|&product| {
            let ark = parse_any(&format!("ARK-{product} (pinned)"), product.pinned_ark_pem())?;
            let ask = parse_any(&format!("ASK-{product} (pinned)"), product.pinned_ask_pem())?;
            Ok(PinnedRoot { product, ark, ask })
        })
        .collect()
}

/// Finds the product whose pinned ARK validates `leaf`, through the pinned ASK or an
/// intermediate from `offered`, and checks every certificate's validity at `at`.
fn chain_to_pinned_ark(
    leaf: &Cert,
    kind: EndorsementKind,
    offered: &[Cert],
    at: SystemTime,
) -> Result<Product, SnpError> {
    let roots = pinned_roots()?;
    let mut last_error = None;
    for root in &roots {
        let candidates = std::iter::once(&root.ask).chain(offered.iter());
        for inter in candidates {
            // An offered self-issued certificate would be a root: never trusted.
            if inter.is_self_issued() || !inter.issued(leaf) || !root.ark.issued(inter) {
                continue;
            }
            let attempt = (|| {
                root.ark.check_signed(&root.ark)?;
                root.ark.check_signed(inter)?;
                inter.check_signed(leaf)?;
                root.ark.check_validity(at)?;
                inter.check_validity(at)?;
                leaf.check_validity(at)
            })();
            match attempt {
                Ok(()) => return Ok(root.product),
                Err(e) => last_error = Some(e),
            }
        }
    }
    Err(last_error.unwrap_or_else(|| SnpError::UntrustedIssuer {
        issuer: leaf.x509.tbs_certificate.issuer.to_string(),
        key: kind,
    }))
}

/// Checks that the certificate `signer_der` signed `signee_der` (both DER), the way the
/// chain check does (RSA-PSS, SHA-384). Exposed for tools and tests of single links.
pub fn check_certificate_signature(signer_der: &[u8], signee_der: &[u8]) -> Result<(), SnpError> {
    let signer = Cert::from_der("signer", signer_der)?;
    let signee = Cert::from_der("signee", signee_der)?;
    signer.check_signed(&signee)
}

/// Verifies a VCEK or VLEK certificate (DER or PEM) alone, without a report: it must
/// chain, through the pinned ASK or an intermediate from `chain_pem`, to a pinned ARK,
/// and every certificate must be valid at `at`. Returns the product of that ARK.
pub fn verify_endorsement_key(
    cert: &[u8],
    kind: EndorsementKind,
    chain_pem: Option<&[u8]>,
    at: SystemTime,
) -> Result<Product, SnpError> {
    let leaf = parse_any(&kind.to_string(), cert)?;
    if leaf.common_name().as_deref() != Some(kind.subject_cn()) {
        return Err(SnpError::WrongEndorsementKey {
            expected: kind,
            subject: leaf.subject(),
        });
    }
    let mut offered = Vec::new();
    if let Some(pem) = chain_pem {
        for (i, der) in pem_certificates(pem)?.iter().enumerate() {
            offered.push(Cert::from_der(
                format!("{} (chain[{i}])", kind.intermediate_name()),
                der,
            )?);
        }
    }
    chain_to_pinned_ark(&leaf, kind, &offered, at)
}

/// Reads an AMD TCB extension: a DER INTEGER in the extension's OCTET STRING.
fn tcb_extension(
    leaf: &Cert,
    kind: EndorsementKind,
    field: &'static str,
    oid: &'static str,
) -> Result<u8, SnpError> {
    let raw = leaf.extension(oid).ok_or(SnpError::TcbExtensionMissing {
        key: kind,
        field,
        oid,
    })?;
    u8::from_der(raw).map_err(|_| SnpError::TcbExtensionMalformed {
        key: kind,
        field,
        oid,
    })
}

/// Compares the report's `reported_tcb` with the TCB certified by the VCEK/VLEK.
fn check_tcb(
    reported: &TcbVersion,
    leaf: &Cert,
    kind: EndorsementKind,
    product: Product,
) -> Result<(), SnpError> {
    let mut pairs = vec![
        ("bootloader", OID_BOOTLOADER, reported.bootloader),
        ("tee", OID_TEE, reported.tee),
        ("snp", OID_SNP, reported.snp),
        ("microcode", OID_MICROCODE, reported.microcode),
    ];
    if product.turin_tcb_layout() {
        pairs.push(("fmc", OID_FMC, reported.fmc.unwrap_or(0)));
    }
    for (field, oid, report) in pairs {
        let certificate = tcb_extension(leaf, kind, field, oid)?;
        if certificate != report {
            return Err(SnpError::TcbMismatch {
                field,
                report,
                certificate,
                key: kind,
            });
        }
    }
    Ok(())
}

/// The VCEK's hwID is the chip_id: 64 bytes before Turin, 8 bytes (then zeros in the
/// report) on Turin.
fn check_hwid(report: &SnpReport, leaf: &Cert) -> Result<(), SnpError> {
    if report.chip_id.iter().all(|&b| b == 0) {
        return Err(SnpError::ChipIdMasked);
    }
    let hwid = leaf.extension(OID_HWID).ok_or(SnpError::HwIdMissing)?;
    let matches = report.chip_id.get(..hwid.len()) == Some(hwid)
        && report
            .chip_id
            .get(hwid.len()..)
            .is_some_and(|rest| rest.iter().all(|&b| b == 0));
    if !matches || hwid.is_empty() {
        return Err(SnpError::HwIdMismatch {
            report: hex::encode(report.chip_id),
            certificate: hex::encode(hwid),
        });
    }
    Ok(())
}

/// A v2 report has no CPUID; Turin chip ids are 8 bytes long, earlier ones 64, which is
/// enough to catch a report paired with a key of the other family.
fn chip_id_looks_turin(chip_id: &[u8; 64]) -> Option<bool> {
    if chip_id.iter().all(|&b| b == 0) {
        return None;
    }
    Some(chip_id.get(8..).is_some_and(|r| r.iter().all(|&b| b == 0)))
}

fn check_report_signature(
    report_bytes: &[u8],
    report: &SnpReport,
    leaf: &Cert,
    kind: EndorsementKind,
) -> Result<(), SnpError> {
    let spki = &leaf.x509.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid.to_string() != OID_EC_PUBLIC_KEY {
        return Err(SnpError::CertificateKey {
            which: kind.to_string(),
            reason: format!("public key algorithm {} is not EC", spki.algorithm.oid),
        });
    }
    let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes())
        .map_err(|e| SnpError::CertificateKey {
            which: kind.to_string(),
            reason: format!("not a P-384 public key: {e}"),
        })?;
    let scalar = |le: &[u8; 72], component: &'static str| -> Result<[u8; 48], SnpError> {
        let (low, high) = le.split_at(48);
        if high.iter().any(|&b| b != 0) {
            return Err(SnpError::SignatureScalarTooLong { component });
        }
        let mut be = [0u8; 48];
        for (dst, src) in be.iter_mut().zip(low.iter().rev()) {
            *dst = *src;
        }
        Ok(be)
    };
    let r = scalar(&report.signature_r, "r")?;
    let s = scalar(&report.signature_s, "s")?;
    let sig = p384::ecdsa::Signature::from_scalars(r, s)
        .map_err(|e| SnpError::MalformedSignature(e.to_string()))?;
    let signed = report_bytes
        .get(..SIGNED_LEN)
        .ok_or(SnpError::ReportLength {
            expected: REPORT_LEN,
            got: report_bytes.len(),
        })?;
    key.verify(signed, &sig)
        .map_err(|_| SnpError::BadReportSignature { key: kind })
}

/// Verifies an SEV-SNP report at time `at`: layout and version, VCEK/VLEK chain to the
/// pinned ARK of its product, certificate validity, report signature, TCB and hwID
/// extensions against the report, guest policy (debug refused). The caller still
/// compares `report_data`, `measurement` and `policy` with what it expects.
pub fn verify(report: &[u8], certs: &SnpCerts, at: SystemTime) -> Result<SnpVerified, SnpError> {
    let parsed = parse_report(report)?;
    let kind = parsed.endorsement_kind()?;

    let mut offered = Vec::new();
    if let Some(pem) = &certs.chain_pem {
        for (i, der) in pem_certificates(pem)?.iter().enumerate() {
            offered.push(Cert::from_der(format!("chain[{i}]"), der)?);
        }
    }
    let leaf = match &certs.vcek_or_vlek {
        Some(bytes) => parse_any(&kind.to_string(), bytes)?,
        None => {
            let pos = offered
                .iter()
                .position(|c| c.common_name().as_deref() == Some(kind.subject_cn()))
                .ok_or(SnpError::MissingEndorsementKey(kind))?;
            let mut c = offered.remove(pos);
            c.role = kind.to_string();
            c
        }
    };
    if leaf.common_name().as_deref() != Some(kind.subject_cn()) {
        return Err(SnpError::WrongEndorsementKey {
            expected: kind,
            subject: leaf.subject(),
        });
    }
    for c in &mut offered {
        c.role = format!("{} ({})", kind.intermediate_name(), c.role);
    }

    let product = chain_to_pinned_ark(&leaf, kind, &offered, at)?;
    match parsed.cpuid_product()? {
        Some(p) if p != product => {
            return Err(SnpError::ProductMismatch {
                report: p,
                chain: product,
                key: kind,
            })
        }
        Some(_) => {}
        None => {
            if let Some(turin_like) = chip_id_looks_turin(&parsed.chip_id) {
                if turin_like != (product == Product::Turin) {
                    let report = if turin_like {
                        Product::Turin
                    } else {
                        // Milan and Genoa share the 64-byte chip id; name the closest.
                        Product::Milan
                    };
                    return Err(SnpError::ProductMismatch {
                        report,
                        chain: product,
                        key: kind,
                    });
                }
            }
        }
    }

    check_report_signature(report, &parsed, &leaf, kind)?;
    let reported_tcb = TcbVersion::decode(parsed.reported_tcb, product);
    check_tcb(&reported_tcb, &leaf, kind, product)?;
    if kind == EndorsementKind::Vcek {
        check_hwid(&parsed, &leaf)?;
    }
    check_guest_policy(&parsed)?;

    Ok(SnpVerified {
        version: parsed.version,
        product,
        signed_by: kind,
        measurement: parsed.measurement,
        policy: parsed.policy.0,
        report_data: parsed.report_data,
        host_data: parsed.host_data,
        chip_id: parsed.chip_id,
        vmpl: parsed.vmpl,
        reported_tcb,
        current_tcb: TcbVersion::decode(parsed.current_tcb, product),
        committed_tcb: TcbVersion::decode(parsed.committed_tcb, product),
        launch_tcb: TcbVersion::decode(parsed.launch_tcb, product),
        report: parsed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_arks_are_self_signed_and_sign_their_ask() {
        for root in pinned_roots().expect("pinned certificates parse") {
            root.ark.check_signed(&root.ark).expect("ARK self-signed");
            root.ark.check_signed(&root.ask).expect("ARK signs ASK");
            assert_eq!(
                root.ark.common_name().as_deref(),
                Some(format!("ARK-{}", root.product).as_str())
            );
        }
    }

    #[test]
    fn tcb_layouts_differ_between_milan_and_turin() {
        let raw = [1, 2, 3, 4, 0, 0, 5, 6];
        let milan = TcbVersion::decode(raw, Product::Milan);
        assert_eq!(
            (milan.bootloader, milan.tee, milan.snp, milan.microcode),
            (1, 2, 5, 6)
        );
        assert_eq!(milan.fmc, None);
        let turin = TcbVersion::decode(raw, Product::Turin);
        assert_eq!(turin.fmc, Some(1));
        assert_eq!(
            (turin.bootloader, turin.tee, turin.snp, turin.microcode),
            (2, 3, 4, 6)
        );
    }

    #[test]
    fn cpuid_table() {
        assert_eq!(Product::from_cpuid(0x19, 0x01), Some(Product::Milan));
        assert_eq!(Product::from_cpuid(0x19, 0x11), Some(Product::Genoa));
        assert_eq!(Product::from_cpuid(0x1A, 0x02), Some(Product::Turin));
        assert_eq!(Product::from_cpuid(0x17, 0x31), None);
    }

    /// The Milan evidence, for checks that a real report can only reach after its
    /// signature (which no edited report passes): TCB and hwID comparison.
    fn milan() -> Option<(SnpReport, Cert)> {
        let dir =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/evidence/snp");
        let (Ok(report), Ok(vcek)) = (
            std::fs::read(dir.join("milan-report.bin")),
            std::fs::read(dir.join("milan-vcek.der")),
        ) else {
            eprintln!("skipped: {} is absent", dir.display());
            return None;
        };
        Some((
            parse_report(&report).expect("report parses"),
            Cert::from_der("VCEK", &vcek).expect("VCEK parses"),
        ))
    }

    #[test]
    fn tcb_comparison_names_the_differing_field() {
        let Some((report, vcek)) = milan() else {
            return;
        };
        let kind = EndorsementKind::Vcek;
        let tcb = TcbVersion::decode(report.reported_tcb, Product::Milan);
        assert_eq!(check_tcb(&tcb, &vcek, kind, Product::Milan), Ok(()));
        let older = TcbVersion {
            snp: tcb.snp - 1,
            ..tcb
        };
        assert_eq!(
            check_tcb(&older, &vcek, kind, Product::Milan),
            Err(SnpError::TcbMismatch {
                field: "snp",
                report: tcb.snp - 1,
                certificate: tcb.snp,
                key: kind
            })
        );
        let newer_ucode = TcbVersion {
            microcode: tcb.microcode + 1,
            ..tcb
        };
        assert!(matches!(
            check_tcb(&newer_ucode, &vcek, kind, Product::Milan),
            Err(SnpError::TcbMismatch {
                field: "microcode",
                ..
            })
        ));
        // Read as Turin, the Milan VCEK lacks the FMC extension.
        assert!(matches!(
            check_tcb(&tcb, &vcek, kind, Product::Turin),
            Err(SnpError::TcbExtensionMissing { field: "fmc", .. })
        ));
    }

    #[test]
    fn hwid_comparison() {
        let Some((report, vcek)) = milan() else {
            return;
        };
        assert_eq!(check_hwid(&report, &vcek), Ok(()));
        let mut other = report.clone();
        other.chip_id[63] ^= 1;
        assert!(matches!(
            check_hwid(&other, &vcek),
            Err(SnpError::HwIdMismatch { .. })
        ));
        other.chip_id = [0; 64];
        assert_eq!(check_hwid(&other, &vcek), Err(SnpError::ChipIdMasked));
        // A Turin-shaped chip id (8 bytes, then zeros) against a 64-byte hwID.
        let mut turin_like = report.clone();
        turin_like.chip_id[8..].fill(0);
        assert!(matches!(
            check_hwid(&turin_like, &vcek),
            Err(SnpError::HwIdMismatch { .. })
        ));
        assert_eq!(chip_id_looks_turin(&turin_like.chip_id), Some(true));
        assert_eq!(chip_id_looks_turin(&report.chip_id), Some(false));
    }

    #[test]
    fn policy_flags_are_named() {
        let p = GuestPolicy(0x30000 | (1 << 19) | (1 << 18));
        assert_eq!(p.flags(), vec!["SMT", "MIGRATE_MA", "DEBUG"]);
        assert!(p.debug_allowed());
        assert_eq!(GuestPolicy(0x0302).abi_major(), 3);
    }
}
