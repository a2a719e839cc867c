//! Verification: evidence plus what the verifier expects in, one [`Check`] per question
//! out (ARCHITECTURE.md, "Verification"). Pure and offline: the CLI makes the TLS connections
//! and hands over what it saw (the certificate on `--url`, each application's leaf).
//!
//! Every check is always reported, in a fixed order ([`names`]). A check that cannot be
//! completed (no snapshot to compare with, a TEE report that did not verify so its
//! fields cannot be trusted, ...) is a failure whose detail says why; nothing is skipped
//! silently. Absence is accepted only where the snapshot records the same absence: no
//! TPM in the evidence passes the `tpm *` checks only if the snapshot's `tpm_policy` is
//! null, and no IMA log passes the `ima *` checks only if the snapshot's `ima` is null.
//! Without a snapshot, every comparison with it fails.
//!
//! [`snapshot`] holds the other direction: the checks a new snapshot must pass against
//! the VM's verified evidence before the CLI writes it.

use crate::batch::ProofError;
use crate::binding::{self, CertDigests, Manifest, ManifestEntry, Nonce};
use crate::check::Check;
use crate::evidence::{Evidence, TeeEvidence, TpmEvidence};
use crate::ima::{self, ImaEntry};
use crate::snapshot::{FileIndex, Snapshot, TeePolicy, TpmPolicy};
use crate::tee::azure::{self, AzureError, AzureSnpVerified, AzureTdxVerified};
use crate::tee::simulated::{self, SimulatedError, SimulatedReport};
use crate::tee::snp::{self, SnpCerts, SnpError, SnpVerified};
use crate::tee::tdx::{self, TdxError, TdxVerified};
use crate::tpm::quote::{self, VerifiedQuote};
use sha2::{Digest, Sha256};
use std::time::SystemTime;

/// The names of the checks, in the order `verify` returns them (`ALL`), then those of
/// `snapshot::check_snapshot_against_evidence` (`SNAPSHOT_ALL`).
pub mod names {
    /// `nonce`: the evidence answers the nonce the verifier sent.
    pub const NONCE: &str = "nonce";
    /// `binding`: the TEE report's report_data is the hash of the sent nonce, the manifest and the
    /// TPM key.
    pub const BINDING: &str = "binding";
    /// `endpoint certificate`: the certificate on the `--url` connection is the manifest's entry
    /// for the evidence's domain, so no TLS-terminating proxy sat in between.
    pub const ENDPOINT_CERTIFICATE: &str = "endpoint certificate";
    /// `tee`: the TEE report's signature, chain to the vendor root and platform policy verified.
    pub const TEE: &str = "tee";
    /// `tee measurement`: the verified TEE fields equal the snapshot's `tee_policy`.
    pub const TEE_MEASUREMENT: &str = "tee measurement";
    /// `tpm quote`: the quote's signature, qualifying data and PCR digest verified under the
    /// attestation key.
    pub const TPM_QUOTE: &str = "tpm quote";
    /// `tpm reboot`: the TPM's reset and restart counts equal the snapshot's, so the VM has not
    /// rebooted since.
    pub const TPM_REBOOT: &str = "tpm reboot";
    /// `tpm key`: the attestation key is the snapshot's.
    pub const TPM_KEY: &str = "tpm key";
    /// `ima replay`: replaying the IMA log gives the quoted PCR value, and every template hash is
    /// right.
    pub const IMA_REPLAY: &str = "ima replay";
    /// `ima entries`: every file digest in the IMA log is in the snapshot or the whitelist.
    pub const IMA_ENTRIES: &str = "ima entries";
    /// `manifest`: the manifest covers every `--application` name and, unless certificate
    /// changes are allowed, lists the snapshot's certificates.
    pub const MANIFEST: &str = "manifest";
    /// Every check [`super::verify`] returns, in order.
    pub const ALL: [&str; 11] = [
        NONCE,
        BINDING,
        ENDPOINT_CERTIFICATE,
        TEE,
        TEE_MEASUREMENT,
        TPM_QUOTE,
        TPM_REBOOT,
        TPM_KEY,
        IMA_REPLAY,
        IMA_ENTRIES,
        MANIFEST,
    ];
    /// `snapshot policy`: the new snapshot's TEE and TPM policies are those of the VM's verified
    /// evidence.
    pub const SNAPSHOT_POLICY: &str = "snapshot policy";
    /// `snapshot ima`: the new snapshot pins IMA exactly when the evidence carries an IMA log.
    pub const SNAPSHOT_IMA: &str = "snapshot ima";
    /// `enrolment`: with a policy, the VM's identity (TPM key and counters, chip id,
    /// simulated TEE key) is the one recorded at first contact, or is recorded now.
    pub const ENROLMENT: &str = "enrolment";
    /// `snapshot manifest`: the new snapshot's manifest is the evidence's.
    pub const SNAPSHOT_MANIFEST: &str = "snapshot manifest";
    /// Every check [`super::snapshot::check_snapshot_against_evidence`] returns, in order.
    pub const SNAPSHOT_ALL: [&str; 5] = [
        NONCE,
        ENDPOINT_CERTIFICATE,
        SNAPSHOT_POLICY,
        SNAPSHOT_IMA,
        SNAPSHOT_MANIFEST,
    ];
}

pub mod policy;
pub mod snapshot;

/// How many unknown IMA paths a failure detail names before it only counts.
const UNKNOWN_PATHS_SHOWN: usize = 5;

/// What the verifier knows and accepts, independently of the evidence.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    /// The nonce the verifier sent with this call.
    pub nonce: Nonce,
    /// The reference to compare with; `None` makes every comparison with it fail.
    pub snapshot: Option<&'a Snapshot>,
    /// SHA-256 of the leaf certificate presented on the `--url` connection; `None` when
    /// no connection was made (evidence read from a file), which fails
    /// `endpoint certificate`: nothing then shows that no TLS-terminating proxy sat in
    /// between.
    pub endpoint_cert_sha256: Option<[u8; 32]>,
    /// The host of `--url` (the SNI of that connection). It may be `domain` or any name
    /// the VM routes (the own endpoint answers there to ALPN `verigate/1`); a DNS name
    /// that is neither fails `endpoint certificate`. `None` or an IP address: not checked.
    pub url_host: Option<String>,
    /// Extra accepted (path, digest) pairs (`--whitelist`), on top of the snapshot's.
    pub whitelist: Option<&'a FileIndex>,
    /// Accept the simulated TEE (`--allow-simulated-tee`); it proves nothing about
    /// hardware.
    pub allow_simulated_tee: bool,
    /// TDX TCB statuses accepted besides `UpToDate` (Intel's names).
    pub allowed_tdx_tcb_statuses: Vec<String>,
    /// The time certificates, CRLs and collateral must be valid at.
    pub at: SystemTime,
    /// SEV-SNP certificates the user supplied (e.g. a VCEK fetched from AMD KDS); a
    /// `chain_pem` here replaces the evidence's `cert_chain`.
    pub snp_certs: Option<SnpCerts>,
    /// TDX collateral JSON the user supplied; replaces the evidence's `collateral`.
    pub tdx_collateral: Option<Vec<u8>>,
    /// The names the user will check with `--application`: each must be covered by a
    /// manifest entry (checked in `manifest`; the handshakes are [`check_application`]).
    pub applications: Vec<String>,
    /// Accept manifest keys that differ from the snapshot's (`--allow-key-change`); a
    /// certificate renewed with the same key needs no allowance.
    pub allow_key_change: bool,
    /// Incremental IMA: where the verifier's replay of this VM's log stands, for
    /// evidence whose `ima_log_from` leaves out the entries already replayed.
    pub ima_start: Option<ImaStart>,
}

/// Where a verifier's replay of one VM's IMA log stands (incremental IMA, as Keylime
/// keeps it): how many entries it has replayed and judged, and the PCR value they give
/// in each quoted bank. The next evidence may then carry only the entries after them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImaStart {
    /// Entries replayed and judged so far.
    pub entries: u64,
    /// The PCR value they give, by bank.
    pub pcr: Vec<(ima::HashAlg, Vec<u8>)>,
}

impl<'a> Expectations<'a> {
    /// Expectations with nothing optional given and nothing extra allowed.
    pub fn new(nonce: Nonce, at: SystemTime) -> Expectations<'a> {
        Expectations {
            nonce,
            snapshot: None,
            endpoint_cert_sha256: None,
            url_host: None,
            whitelist: None,
            allow_simulated_tee: false,
            allowed_tdx_tcb_statuses: Vec::new(),
            at,
            snp_certs: None,
            tdx_collateral: None,
            applications: Vec::new(),
            allow_key_change: false,
            ima_start: None,
        }
    }
}

/// A TEE report whose signature (and, for hardware, certificate chain and platform
/// policy) verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifiedTee {
    /// A verified SEV-SNP report and the fields read from it.
    Snp(Box<SnpVerified>),
    /// A verified TDX quote and the fields read from it.
    Tdx(Box<TdxVerified>),
    /// A verified Azure SEV-SNP HCL report: the SNP report and the runtime data it
    /// vouches for.
    AzureSnp(Box<AzureSnpVerified>),
    /// A verified Azure TDX HCL report: the TD quote and the runtime data it vouches for.
    AzureTdx(Box<AzureTdxVerified>),
    /// A verified report of verigate's simulated TEE.
    Simulated {
        /// The report's fields.
        report: SimulatedReport,
        /// SHA-256 of the SPKI DER the report verified under.
        public_key_sha256: [u8; 32],
    },
}

impl VerifiedTee {
    /// The 64 bytes the report vouches for.
    pub fn report_data(&self) -> &[u8; 64] {
        match self {
            VerifiedTee::Snp(v) => &v.report_data,
            VerifiedTee::Tdx(v) => &v.report_data,
            // The hardware's report_data holds the runtime JSON's hash; the JSON's
            // user-data is what verigated wrote, its report_data.
            VerifiedTee::AzureSnp(v) => &v.runtime.user_data,
            VerifiedTee::AzureTdx(v) => &v.runtime.user_data,
            VerifiedTee::Simulated { report, .. } => &report.report_data,
        }
    }

    /// The `kind` string (ARCHITECTURE.md, "Evidence").
    pub fn kind(&self) -> &'static str {
        match self {
            VerifiedTee::Snp(_) => "sev-snp",
            VerifiedTee::Tdx(_) => "tdx",
            VerifiedTee::AzureSnp(_) => "azure-sev-snp",
            VerifiedTee::AzureTdx(_) => "azure-tdx",
            VerifiedTee::Simulated { .. } => "simulated",
        }
    }

    /// The TPM attestation key the report vouches for (Azure's `HCLAkPub`), if any.
    pub fn vouched_tpm_key(&self) -> Option<&rsa::RsaPublicKey> {
        match self {
            VerifiedTee::AzureSnp(v) => Some(&v.runtime.ak_pub),
            VerifiedTee::AzureTdx(v) => Some(&v.runtime.ak_pub),
            _ => None,
        }
    }

    /// The snapshot's `tee_policy` for this report: what a snapshot records and what
    /// `tee measurement` compares, built by the same code on both sides.
    pub fn policy(&self) -> TeePolicy {
        match self {
            VerifiedTee::Snp(v) => TeePolicy::from_snp(v),
            VerifiedTee::Tdx(v) => TeePolicy::from_tdx(v),
            // The hardware report's fields are pinned as for bare SEV-SNP and TDX.
            VerifiedTee::AzureSnp(v) => TeePolicy::from_snp(&v.snp),
            VerifiedTee::AzureTdx(v) => TeePolicy::from_tdx(&v.tdx),
            VerifiedTee::Simulated {
                report,
                public_key_sha256,
            } => TeePolicy::from_simulated(report, *public_key_sha256),
        }
    }

    fn describe(&self) -> String {
        match self {
            VerifiedTee::Snp(v) => format!(
                "SEV-SNP report v{} ({:?}) signed by its {} chaining to the pinned AMD ARK; \
                 guest policy {:#x} (no debug)",
                v.version, v.product, v.signed_by, v.policy
            ),
            VerifiedTee::Tdx(v) => format!(
                "TDX quote v{} verified to the Intel SGX root CA; TCB status {}",
                v.quote_version, v.tcb_status
            ),
            VerifiedTee::AzureSnp(v) => format!(
                "Azure HCL report: SEV-SNP report v{} ({:?}) signed by its {} chaining to the \
                 pinned AMD ARK; guest policy {:#x} (no debug); report_data holds the hash of \
                 the runtime data, which names HCLAkPub and the user-data",
                v.snp.version, v.snp.product, v.snp.signed_by, v.snp.policy
            ),
            VerifiedTee::AzureTdx(v) => format!(
                "Azure HCL report: TD quote v{} for its TD report verified to the Intel SGX \
                 root CA, TCB status {}; REPORTDATA holds the hash of the runtime data, which \
                 names HCLAkPub and the user-data",
                v.tdx.quote_version, v.tdx.tcb_status
            ),
            VerifiedTee::Simulated {
                public_key_sha256, ..
            } => format!(
                "simulated TEE report signed by key sha256 {}",
                short(public_key_sha256)
            ),
        }
    }
}

/// What [`verify_tee`] needs besides the report.
#[derive(Debug, Clone, Copy)]
pub struct TeeOptions<'a> {
    /// User-supplied SEV-SNP certificates (see [`Expectations::snp_certs`]).
    pub snp_certs: Option<&'a SnpCerts>,
    /// User-supplied TDX collateral JSON (see [`Expectations::tdx_collateral`]).
    pub tdx_collateral: Option<&'a [u8]>,
    /// TDX TCB statuses accepted besides `UpToDate` (see
    /// [`Expectations::allowed_tdx_tcb_statuses`]).
    pub allowed_tdx_tcb_statuses: &'a [String],
    /// The time certificates, CRLs and collateral must be valid at.
    pub at: SystemTime,
}

/// Why a TEE report did not verify.
#[derive(Debug, thiserror::Error)]
pub enum TeeError {
    /// The evidence's TEE kind is `none`.
    #[error("the evidence has no TEE report (kind `none`): nothing vouches for this VM or for report_data")]
    NoTee,
    /// The evidence's TEE kind is `none`, and verigated says why (e.g. `tee = auto`
    /// found none).
    #[error("the evidence has no TEE report (kind `none`), because {0}: nothing vouches for this VM or for report_data")]
    NoTeeFound(String),
    /// The SEV-SNP report, its certificates or its policy did not verify.
    #[error("SEV-SNP: {0}")]
    Snp(#[from] SnpError),
    /// The TDX quote, its collateral or its TCB status did not verify.
    #[error("TDX: {0}")]
    Tdx(#[from] TdxError),
    /// A TDX quote whose own signature chain holds came with no collateral, in the
    /// evidence or from the user.
    #[error("TDX: no collateral in the evidence (verigated could not obtain it: see its log) and none given with --collateral, so the quote's TCB cannot be checked (its signature chain to Intel's root holds)")]
    NoTdxCollateral,
    /// The Azure HCL report, its hardware report or its runtime data did not verify.
    #[error("Azure: {0}")]
    Azure(#[from] AzureError),
    /// The simulated report's signature or format did not verify.
    #[error("{0}")]
    Simulated(#[from] SimulatedError),
    /// The simulated report's policy allows a debugger, so its memory is not private.
    #[error("simulated TEE report's policy {policy:#x} allows a debugger")]
    SimulatedDebug {
        /// The report's guest policy.
        policy: u64,
    },
}

/// Verifies the TEE part of evidence: signature, chain to the vendor root, platform
/// policy. The gateway calls it on its own evidence to build a snapshot's `tee_policy`
/// ([`VerifiedTee::policy`]).
pub fn verify_tee(tee: &TeeEvidence, opts: &TeeOptions<'_>) -> Result<VerifiedTee, TeeError> {
    match tee {
        TeeEvidence::SevSnp { report, cert_chain } => {
            let certs = SnpCerts {
                vcek_or_vlek: opts.snp_certs.and_then(|c| c.vcek_or_vlek.clone()),
                chain_pem: opts
                    .snp_certs
                    .and_then(|c| c.chain_pem.clone())
                    .or_else(|| cert_chain.as_ref().map(|c| c.0.clone())),
            };
            Ok(VerifiedTee::Snp(Box::new(snp::verify(
                &report.0, &certs, opts.at,
            )?)))
        }
        TeeEvidence::Tdx { report, collateral } => {
            let Some(collateral) = opts
                .tdx_collateral
                .or(collateral.as_ref().map(|c| c.0.as_slice()))
            else {
                // The quote's own signature chain is still checked, so a forged quote is
                // named as such rather than as missing collateral.
                let options = tdx::TdxOptions {
                    allowed_tcb_statuses: opts.allowed_tdx_tcb_statuses.to_vec(),
                    allow_debug: false,
                };
                return Err(
                    match tdx::verify_without_collateral(&report.0, opts.at, &options) {
                        TdxError::NoCollateral => TeeError::NoTdxCollateral,
                        e => TeeError::Tdx(e),
                    },
                );
            };
            Ok(VerifiedTee::Tdx(Box::new(tdx::verify(
                &report.0,
                collateral,
                opts.at,
                opts.allowed_tdx_tcb_statuses,
            )?)))
        }
        TeeEvidence::AzureSevSnp {
            hcl_report,
            cert_chain,
        } => {
            let certs = SnpCerts {
                vcek_or_vlek: opts.snp_certs.and_then(|c| c.vcek_or_vlek.clone()),
                chain_pem: opts
                    .snp_certs
                    .and_then(|c| c.chain_pem.clone())
                    .or_else(|| cert_chain.as_ref().map(|c| c.0.clone())),
            };
            Ok(VerifiedTee::AzureSnp(Box::new(azure::verify_snp(
                &hcl_report.0,
                &certs,
                opts.at,
            )?)))
        }
        TeeEvidence::AzureTdx {
            hcl_report,
            td_quote,
            collateral,
        } => {
            let collateral = opts
                .tdx_collateral
                .or(collateral.as_ref().map(|c| c.0.as_slice()));
            Ok(VerifiedTee::AzureTdx(Box::new(azure::verify_tdx(
                &hcl_report.0,
                &td_quote.0,
                collateral,
                opts.at,
                &tdx::TdxOptions {
                    allowed_tcb_statuses: opts.allowed_tdx_tcb_statuses.to_vec(),
                    allow_debug: false,
                },
            )?)))
        }
        TeeEvidence::Simulated { report, public_key } => {
            let fields = simulated::verify(&report.0, &public_key.0)?;
            if fields.debug_allowed() {
                return Err(TeeError::SimulatedDebug {
                    policy: fields.policy,
                });
            }
            Ok(VerifiedTee::Simulated {
                report: fields,
                public_key_sha256: simulated::public_key_sha256(&public_key.0),
            })
        }
        TeeEvidence::None => Err(TeeError::NoTee),
        TeeEvidence::NotFound { cause } => Err(TeeError::NoTeeFound(cause.clone())),
    }
}

/// Why a VM's own evidence cannot become a snapshot's policy.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotPolicyError {
    /// The TEE report did not verify.
    #[error("TEE report: {0}")]
    Tee(TeeError),
    /// The TEE is simulated and the caller did not allow it.
    #[error("the TEE is simulated, which proves nothing about hardware: pass --allow-simulated-tee to snapshot it anyway")]
    SimulatedNotAllowed,
    /// The TEE report's report_data is not the binding of the evidence's own nonce, manifest and
    /// attestation key.
    #[error("the TEE report's report_data is {got}, but the evidence's nonce, manifest and TPM key give {expected}")]
    Binding {
        /// The binding computed from the evidence, hex.
        expected: String,
        /// The report's report_data, hex.
        got: String,
    },
    /// The TPM quote did not verify against the evidence's own binding.
    #[error("TPM quote: {0}")]
    Quote(#[from] quote::QuoteError),
    /// The evidence's inclusion proof (version 2) leads to no root.
    #[error("batch: {0}")]
    Proof(ProofError),
}

/// The `tee_policy` and `tpm_policy` of a snapshot, from a VM's evidence for a fresh
/// nonce: the TEE report and the quote are verified and must bind the evidence's own
/// nonce, manifest and AK, then the policies are built by [`VerifiedTee::policy`] and
/// [`TpmPolicy::from_quote`] — the same code `verify` compares with. Evidence of kind
/// `none` gives [`TeePolicy::None`] (which `verify` still fails: nothing vouches for
/// the VM). Used by the gateway's snapshot job and the CLI's `snapshot`.
pub fn snapshot_policy(
    evidence: &Evidence,
    tee: &TeeOptions<'_>,
    allow_simulated_tee: bool,
) -> Result<(TeePolicy, Option<TpmPolicy>), SnapshotPolicyError> {
    let (verified, tpm_policy) = self_bound(evidence, tee, allow_simulated_tee)?;
    let tee_policy = verified.map_or(TeePolicy::None, |v| v.policy());
    Ok((tee_policy, tpm_policy))
}

/// The verified TEE report (`None` for kind `none`) and TPM policy of evidence that
/// binds its own nonce, manifest and AK: what [`snapshot_policy`] builds a snapshot's
/// policies from, and what a fleet verifier records as a VM's identity
/// ([`policy::observed_identity`]).
pub fn self_bound(
    evidence: &Evidence,
    tee: &TeeOptions<'_>,
    allow_simulated_tee: bool,
) -> Result<(Option<VerifiedTee>, Option<TpmPolicy>), SnapshotPolicyError> {
    let ak_public = evidence.tpm.as_ref().map(|t| t.ak_public.0.as_slice());
    let report_data = evidence
        .freshness(&evidence.nonce)
        .map_err(SnapshotPolicyError::Proof)?
        .report_data(&evidence.manifest.digest(), &binding::ak_digest(ak_public));
    let verified = match verify_tee(&evidence.tee, tee) {
        Err(TeeError::NoTee | TeeError::NoTeeFound(_)) => None,
        Err(e) => return Err(SnapshotPolicyError::Tee(e)),
        Ok(VerifiedTee::Simulated { .. }) if !allow_simulated_tee => {
            return Err(SnapshotPolicyError::SimulatedNotAllowed)
        }
        Ok(v) if v.report_data() != &report_data => {
            let (expected, got) = hex_pair(&report_data, v.report_data());
            return Err(SnapshotPolicyError::Binding { expected, got });
        }
        Ok(v) => Some(v),
    };
    let tpm_policy = match &evidence.tpm {
        Some(t) => {
            let q = quote::verify(
                &t.ak_public.0,
                &t.quote.0,
                &t.signature.0,
                &t.pcrs,
                &binding::tpm_qualifying(&report_data),
            )?;
            check_vouched_tpm_key(&evidence.tee, verified.as_ref(), &t.ak_public.0)?;
            Some(TpmPolicy::from_quote(&q, &t.ak_public.0))
        }
        None => None,
    };
    Ok((verified, tpm_policy))
}

/// Verifies evidence against expectations. Returns every check of [`names::ALL`], in
/// that order; the verdict is [`crate::check::Verdict::of`] the list.
pub fn verify(evidence: &Evidence, expect: &Expectations<'_>) -> Vec<Check> {
    verify_incremental(evidence, expect).0
}

/// [`verify`], and where the replay of the VM's IMA log stands after this evidence when
/// both IMA checks passed (the start of the next incremental call); `None` otherwise,
/// so that the next call asks for the whole log again.
pub fn verify_incremental(
    evidence: &Evidence,
    expect: &Expectations<'_>,
) -> (Vec<Check>, Option<ImaStart>) {
    let tee = verify_tee(
        &evidence.tee,
        &TeeOptions {
            snp_certs: expect.snp_certs.as_ref(),
            tdx_collateral: expect.tdx_collateral.as_deref(),
            allowed_tdx_tcb_statuses: &expect.allowed_tdx_tcb_statuses,
            at: expect.at,
        },
    );
    // Recomputed from the nonce the verifier sent, not the one the evidence claims, so
    // a replayed report fails `binding` even if the evidence's nonce field was edited. In
    // version 2 the sent nonce and the evidence's inclusion proof give the root; a proof
    // that leads nowhere leaves nothing to compare with (see `nonce`).
    let ak_public = evidence.tpm.as_ref().map(|t| t.ak_public.0.as_slice());
    let expected_report_data = evidence
        .freshness(&expect.nonce)
        .map(|f| f.report_data(&evidence.manifest.digest(), &binding::ak_digest(ak_public)));
    let snapshot = expect.snapshot;

    let mut checks = vec![
        check_nonce(evidence, expect, &tee, &expected_report_data),
        check_binding(evidence, &tee, &expected_report_data),
        check_endpoint(
            evidence,
            expect.endpoint_cert_sha256.as_ref(),
            expect.url_host.as_deref(),
        ),
        check_tee(&tee, expect),
        check_tee_measurement(&tee, snapshot),
    ];

    let tpm_absence = TpmAbsence::judge(evidence, snapshot);
    let quote = match &expected_report_data {
        Ok(rd) => evidence.tpm.as_ref().map(|t| {
            let q = quote::verify(
                &t.ak_public.0,
                &t.quote.0,
                &t.signature.0,
                &t.pcrs,
                &binding::tpm_qualifying(rd),
            )?;
            check_vouched_tpm_key(&evidence.tee, tee.as_ref().ok(), &t.ak_public.0)?;
            Ok(q)
        }),
        Err(_) => None,
    };
    if let (Err(e), TpmAbsence::Present) = (&expected_report_data, &tpm_absence) {
        checks.push(Check::fail(
            names::TPM_QUOTE,
            format!(
                "cannot recompute extraData: the inclusion proof leads to no root ({e}; see nonce)"
            ),
        ));
    } else {
        checks.push(check_tpm_quote(quote.as_ref(), &tpm_absence));
    }
    checks.push(check_tpm_reboot(quote.as_ref(), snapshot, &tpm_absence));
    checks.push(check_tpm_key(evidence.tpm.as_ref(), snapshot, &tpm_absence));

    let (replay_check, entries) = check_ima_replay(evidence, quote.as_ref(), snapshot, expect);
    let replay_passed = replay_check.passed();
    checks.push(replay_check);
    let entries_check = check_ima_entries(evidence, entries.as_deref(), replay_passed, expect);
    let progress = match (&entries, entries_check.passed(), &evidence.tpm) {
        (Some(judged), true, Some(tpm)) => {
            let pcr = snapshot
                .and_then(|s| s.ima.as_ref())
                .map_or(ima::replay::IMA_PCR, |p| p.pcr);
            let from = evidence.ima_log_from.unwrap_or(0);
            Some(ImaStart {
                entries: from.saturating_add(u64::try_from(judged.len()).unwrap_or(u64::MAX)),
                pcr: tpm
                    .pcrs
                    .iter()
                    .filter(|(_, index, _)| u32::from(*index) == pcr)
                    .map(|(bank, _, value)| (bank, value.to_vec()))
                    .collect(),
            })
        }
        _ => None,
    };
    checks.push(entries_check);
    checks.push(check_manifest(evidence, expect));
    (checks, progress)
}

/// Where the TEE report vouches for the TPM key (Azure's `HCLAkPub`), the quote's key
/// must be that one: else a quote from any TPM the guest made up would be accepted.
fn check_vouched_tpm_key(
    tee_evidence: &TeeEvidence,
    verified: Option<&VerifiedTee>,
    ak_public_tpmt: &[u8],
) -> Result<(), quote::QuoteError> {
    if !tee_evidence.vouches_for_tpm_key() {
        return Ok(());
    }
    let Some(vouched) = verified.and_then(VerifiedTee::vouched_tpm_key) else {
        return Err(quote::QuoteError::AkNotVouched(
            "the HCL report did not verify, so HCLAkPub, the only key its quotes may come from, is unknown (see tee)".into(),
        ));
    };
    let ak = quote::AkPublic::from_tpmt(ak_public_tpmt)?;
    if ak.is_rsa_key(vouched) {
        Ok(())
    } else {
        Err(quote::QuoteError::AkNotVouched(format!(
            "the quote's key ({}) is not the HCLAkPub the HCL report vouches for: it is not the paravisor's vTPM key",
            ak.key.describe()
        )))
    }
}

/// The `application <name>` check, after the CLI's handshake with SNI `name` saw a leaf
/// with digests `presented`: the leaf must be the manifest's entry for that name (exact,
/// else wildcard pattern, see [`Manifest::entry_for_sni`]) — else the name is served
/// from outside the VM — and that entry's key must be the snapshot's, unless
/// `allow_key_change`. A certificate renewed with the same key passes, and the detail
/// says so. Without a snapshot the second part fails unless `allow_key_change`. `name`
/// is the SNI alone (the CLI strips a `:port`); the check is named `application <name>`.
pub fn check_application(
    name: &str,
    presented: &CertDigests,
    manifest: &Manifest,
    snapshot: Option<&Snapshot>,
    allow_key_change: bool,
) -> Check {
    let check = format!("application {name}");
    let Some(entry) = manifest.entry_for_sni(name) else {
        return Check::fail(
            check,
            format!(
                "no manifest entry covers `{name}`, so the VM does not vouch for it (manifest: {})",
                manifest_names(manifest)
            ),
        );
    };
    if entry.cert_sha256 == presented.cert_sha256 && entry.spki_sha256 != presented.spki_sha256 {
        let (want, got) = hex_pair(&entry.spki_sha256, &presented.spki_sha256);
        return Check::fail(
            check,
            format!(
                "the VM attests the certificate presented for `{name}` with key sha256 {want}, \
                 but its key is {got}: the manifest entry of `{}` contradicts itself",
                entry.name
            ),
        );
    }
    if entry.digests() != *presented {
        let (want, got) = hex_pair(&entry.cert_sha256, &presented.cert_sha256);
        return Check::fail(
            check,
            format!(
                "the certificate presented for `{name}` (sha256 {got}) is not the one the VM \
                 attests for `{}` (sha256 {want}): this name is served from outside the VM",
                entry.name
            ),
        );
    }
    let via = if entry.name == name.to_ascii_lowercase() {
        String::new()
    } else {
        format!(" (entry `{}`)", entry.name)
    };
    match snapshot.map(|s| s.manifest.get(&entry.name)) {
        Some(Some(snap)) => match key_pin(snap, entry) {
            KeyPin::Same => Check::pass(
                check,
                format!(
                    "presented certificate sha256 {} is the attested one{via} and the snapshot's",
                    short(&entry.cert_sha256)
                ),
            ),
            KeyPin::Renewed => Check::pass(
                check,
                format!(
                    "presented certificate sha256 {} is the attested one{via}; {}",
                    short(&entry.cert_sha256),
                    renewal(snap, entry)
                ),
            ),
            KeyPin::Changed if allow_key_change => Check::pass(
                check,
                format!(
                    "presented certificate is the attested one{via}; {} (allowed by --allow-key-change)",
                    key_change(snap, entry)
                ),
            ),
            KeyPin::Changed => Check::fail(
                check,
                format!(
                    "{}; review it, then take a new snapshot or pass --allow-key-change",
                    key_change(snap, entry)
                ),
            ),
        },
        Some(None) if allow_key_change => Check::pass(
            check,
            format!("presented certificate is the attested one{via}; `{}` is new since the snapshot (allowed by --allow-key-change)", entry.name),
        ),
        Some(None) => Check::fail(
            check,
            format!(
                "`{}` is not in the snapshot's manifest (a route added since?); review it, then take a new snapshot",
                entry.name
            ),
        ),
        None if allow_key_change => Check::pass(
            check,
            format!("presented certificate is the attested one{via}; no snapshot to compare with (allowed by --allow-key-change)"),
        ),
        None => Check::fail(
            check,
            format!("presented certificate is the attested one{via}, but there is no snapshot to compare it with"),
        ),
    }
}

/// How a name's attested certificate relates to the snapshot's: the snapshot pins the
/// key, so a renewal that keeps it is not a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyPin {
    /// The same certificate.
    Same,
    /// Another certificate for the same key (a renewal with `--reuse-key`).
    Renewed,
    /// Another key.
    Changed,
}

fn key_pin(snapshot: &ManifestEntry, now: &ManifestEntry) -> KeyPin {
    if snapshot.spki_sha256 != now.spki_sha256 {
        KeyPin::Changed
    } else if snapshot.cert_sha256 != now.cert_sha256 {
        KeyPin::Renewed
    } else {
        KeyPin::Same
    }
}

fn renewal(snapshot: &ManifestEntry, now: &ManifestEntry) -> String {
    let (was, is) = hex_pair(&snapshot.cert_sha256, &now.cert_sha256);
    format!(
        "the certificate of `{}` was renewed since the snapshot (sha256 {was}, now {is}) with the same key (spki sha256 {})",
        now.name,
        short(&now.spki_sha256)
    )
}

fn key_change(snapshot: &ManifestEntry, now: &ManifestEntry) -> String {
    let (was, is) = hex_pair(&snapshot.spki_sha256, &now.spki_sha256);
    format!(
        "the key of `{}` changed since the snapshot: snapshot spki sha256 {was}, now {is}",
        now.name
    )
}

fn check_nonce(
    evidence: &Evidence,
    expect: &Expectations<'_>,
    tee: &Result<VerifiedTee, TeeError>,
    expected_report_data: &Result<[u8; 64], ProofError>,
) -> Check {
    if evidence.nonce != expect.nonce {
        let (sent, got) = hex_pair(&expect.nonce.0, &evidence.nonce.0);
        return Check::fail(
            names::NONCE,
            format!("evidence answers nonce {got}, but {sent} was sent (a replayed answer?)"),
        );
    }
    let answered = format!("evidence answers nonce {}", short(&expect.nonce.0));
    let Some(batch) = &evidence.batch else {
        return Check::pass(names::NONCE, answered);
    };
    let place = format!("leaf {} of a batch of {}", batch.index, batch.size);
    match (expected_report_data, tee) {
        (Err(e), _) => Check::fail(
            names::NONCE,
            format!("{answered}, but its inclusion proof is malformed: {e}"),
        ),
        (Ok(rd), Ok(t)) if t.report_data() == rd => Check::pass(
            names::NONCE,
            format!(
                "{answered}, {place} whose root the {} report binds",
                t.kind()
            ),
        ),
        (Ok(_), Ok(t)) => Check::fail(
            names::NONCE,
            format!(
                "{answered}, but as {place} it does not lead to the root the {} report binds: \
                 the proof was made for another nonce, index or path",
                t.kind()
            ),
        ),
        // Nothing trusted holds a root to compare with; `binding` and `tpm quote` say why.
        (Ok(_), Err(_)) => Check::pass(
            names::NONCE,
            format!("{answered}, {place}; no verified TEE report to hold its root (see binding)"),
        ),
    }
}

fn check_binding(
    evidence: &Evidence,
    tee: &Result<VerifiedTee, TeeError>,
    expected: &Result<[u8; 64], ProofError>,
) -> Check {
    let tee = match tee {
        Ok(t) => t,
        Err(TeeError::NoTee) => {
            return Check::fail(
                names::BINDING,
                "no TEE report carries report_data, so nothing binds the nonce, the manifest and the TPM key",
            )
        }
        Err(TeeError::NoTeeFound(cause)) => {
            return Check::fail(
                names::BINDING,
                format!("no TEE report carries report_data ({cause}), so nothing binds the nonce, the manifest and the TPM key"),
            )
        }
        Err(_) => {
            return Check::fail(
                names::BINDING,
                "cannot compare: the TEE report did not verify, so its report_data is not trusted (see tee)",
            )
        }
    };
    let Ok(expected) = expected else {
        return Check::fail(
            names::BINDING,
            "cannot recompute report_data: the inclusion proof leads to no root (see nonce)",
        );
    };
    let what = format!(
        "SHA-512 of {}, the manifest of {} name(s) and {}",
        if evidence.batch.is_some() {
            "the batch root over the nonce sent"
        } else {
            "the nonce sent"
        },
        evidence.manifest.entries().len(),
        match &evidence.tpm {
            Some(t) => format!(
                "TPM key sha256 {}",
                short(&binding::ak_digest(Some(&t.ak_public.0)))
            ),
            None => "no TPM key".to_string(),
        }
    );
    if tee.report_data() == expected {
        Check::pass(
            names::BINDING,
            format!("{} report_data is the {what}", tee.kind()),
        )
    } else {
        let (want, got) = hex_pair(expected, tee.report_data());
        Check::fail(
            names::BINDING,
            format!(
                "{} report_data is {got}, expected {want} (the {what}): the report was made for another call, manifest or TPM key",
                tee.kind()
            ),
        )
    }
}

/// The `endpoint certificate` check, shared by `verify` and `snapshot`: `seen` (the
/// SHA-256 of the certificate the connection presented, `None` when no connection was
/// made) must be the manifest entry of the evidence's `domain`, and `url_host` (the
/// name dialed; `None` or an address skips this) must be that domain or a name the VM
/// routes.
pub fn check_endpoint(
    evidence: &Evidence,
    seen: Option<&[u8; 32]>,
    url_host: Option<&str>,
) -> Check {
    let Some(seen) = seen else {
        return Check::fail(
            names::ENDPOINT_CERTIFICATE,
            format!(
                "no TLS connection was made, so nothing shows that `{}` was reached without a TLS-terminating proxy in between",
                evidence.domain
            ),
        );
    };
    // Evidence::from_json refuses a domain missing from the manifest; evidence built
    // in memory might still lack it.
    let Some(entry) = evidence.manifest.get(&evidence.domain) else {
        return Check::fail(
            names::ENDPOINT_CERTIFICATE,
            format!(
                "the evidence's domain `{}` has no manifest entry (manifest: {})",
                evidence.domain,
                manifest_names(&evidence.manifest)
            ),
        );
    };
    // The own endpoint presents the certificate of `domain` whatever name the client
    // dialed; trust comes from that certificate being the attested entry of `domain`
    // (a TLS-terminating impostor cannot present it: the handshake is signed by its key).
    // The dialed name must still be one this VM answers for, so that a report never
    // vouches for a name the VM does not serve.
    let via = match url_host {
        Some(host) if host.parse::<std::net::IpAddr>().is_err() => {
            let host = host.to_ascii_lowercase();
            if host == entry.name {
                String::new()
            } else if let Some(route) = evidence.manifest.entry_for_sni(&host) {
                format!(
                    ", reached through the routed name `{host}` (entry `{}`)",
                    route.name
                )
            } else {
                return Check::fail(
                    names::ENDPOINT_CERTIFICATE,
                    format!(
                        "the connection went to `{host}`, which is neither the VM's own name `{}` \
                         nor a name it routes (manifest: {})",
                        entry.name,
                        manifest_names(&evidence.manifest)
                    ),
                );
            }
        }
        _ => String::new(),
    };
    if &entry.cert_sha256 == seen {
        Check::pass(
            names::ENDPOINT_CERTIFICATE,
            format!(
                "the certificate on the connection (sha256 {}) is the manifest entry of `{}`{via}",
                short(seen),
                entry.name
            ),
        )
    } else {
        let (want, got) = hex_pair(&entry.cert_sha256, seen);
        Check::fail(
            names::ENDPOINT_CERTIFICATE,
            format!(
                "the connection presented certificate sha256 {got}, but the VM attests {want} for `{}`: something between terminates TLS",
                entry.name
            ),
        )
    }
}

fn check_tee(tee: &Result<VerifiedTee, TeeError>, expect: &Expectations<'_>) -> Check {
    match tee {
        Ok(v @ VerifiedTee::Simulated { .. }) if !expect.allow_simulated_tee => Check::fail(
            names::TEE,
            format!(
                "{}, but a simulated TEE proves nothing about hardware: refused without --allow-simulated-tee",
                v.describe()
            ),
        ),
        Ok(v @ VerifiedTee::Simulated { .. }) => Check::pass(
            names::TEE,
            format!(
                "{} (accepted by --allow-simulated-tee; it proves nothing about hardware)",
                v.describe()
            ),
        ),
        Ok(v) => Check::pass(names::TEE, v.describe()),
        Err(e) => Check::fail(names::TEE, e.to_string()),
    }
}

fn check_tee_measurement(
    tee: &Result<VerifiedTee, TeeError>,
    snapshot: Option<&Snapshot>,
) -> Check {
    let Ok(tee) = tee else {
        return Check::fail(
            names::TEE_MEASUREMENT,
            "cannot compare: the TEE report did not verify (see tee)",
        );
    };
    let Some(snapshot) = snapshot else {
        return Check::fail(
            names::TEE_MEASUREMENT,
            format!("no snapshot to compare the {} measurement with", tee.kind()),
        );
    };
    let now = tee.policy();
    let diffs = snapshot.tee_policy.differences(&now);
    if diffs.is_empty() {
        Check::pass(
            names::TEE_MEASUREMENT,
            format!("{} measurement and policy equal the snapshot's", tee.kind()),
        )
    } else {
        Check::fail(names::TEE_MEASUREMENT, diffs.join("; "))
    }
}

/// Whether a missing TPM is what the snapshot expects.
enum TpmAbsence {
    /// The evidence has a TPM quote.
    Present,
    /// Neither the evidence nor the snapshot has a TPM.
    Expected,
    /// The evidence has none; the detail says why that fails.
    Unexpected(String),
}

impl TpmAbsence {
    fn judge(evidence: &Evidence, snapshot: Option<&Snapshot>) -> TpmAbsence {
        match (&evidence.tpm, snapshot) {
            (Some(_), _) => TpmAbsence::Present,
            (None, Some(s)) if s.tpm_policy.is_none() => TpmAbsence::Expected,
            (None, Some(_)) => TpmAbsence::Unexpected(
                "the evidence has no TPM quote, but the snapshot has a TPM".into(),
            ),
            (None, None) => TpmAbsence::Unexpected(
                "the evidence has no TPM quote, and there is no snapshot saying the VM has none"
                    .into(),
            ),
        }
    }

    /// The check for an absent TPM, or `None` when there is one.
    fn check(&self, name: &str) -> Option<Check> {
        match self {
            TpmAbsence::Present => None,
            TpmAbsence::Expected => Some(Check::pass(
                name,
                "no TPM: neither the evidence nor the snapshot has one",
            )),
            TpmAbsence::Unexpected(why) => Some(Check::fail(name, why.clone())),
        }
    }
}

fn check_tpm_quote(
    quote: Option<&Result<VerifiedQuote, quote::QuoteError>>,
    absence: &TpmAbsence,
) -> Check {
    if let Some(c) = absence.check(names::TPM_QUOTE) {
        return c;
    }
    match quote {
        Some(Ok(q)) => Check::pass(
            names::TPM_QUOTE,
            format!(
                "{} signature under the attestation key; extraData is SHA-256(report_data); PCRs {}",
                q.signature_scheme,
                quote::display_selection(&q.pcr_select)
            ),
        ),
        Some(Err(e)) => Check::fail(names::TPM_QUOTE, e.to_string()),
        None => Check::fail(names::TPM_QUOTE, "the evidence has no TPM quote"),
    }
}

fn check_tpm_reboot(
    quote: Option<&Result<VerifiedQuote, quote::QuoteError>>,
    snapshot: Option<&Snapshot>,
    absence: &TpmAbsence,
) -> Check {
    if let Some(c) = absence.check(names::TPM_REBOOT) {
        return c;
    }
    let Some(Ok(q)) = quote else {
        return Check::fail(
            names::TPM_REBOOT,
            "cannot compare: the TPM quote did not verify, so its counters are not trusted (see tpm quote)",
        );
    };
    let Some(policy) = snapshot_tpm_policy(snapshot) else {
        return snapshot_tpm_missing(snapshot, names::TPM_REBOOT);
    };
    match q.check_counts(policy.reset_count, policy.restart_count) {
        Ok(()) => Check::pass(
            names::TPM_REBOOT,
            format!(
                "resetCount {} and restartCount {} equal the snapshot's: no reboot since",
                q.reset_count, q.restart_count
            ),
        ),
        Err(e) => Check::fail(names::TPM_REBOOT, e.to_string()),
    }
}

fn check_tpm_key(
    tpm: Option<&TpmEvidence>,
    snapshot: Option<&Snapshot>,
    absence: &TpmAbsence,
) -> Check {
    if let Some(c) = absence.check(names::TPM_KEY) {
        return c;
    }
    let Some(tpm) = tpm else {
        return Check::fail(names::TPM_KEY, "the evidence has no TPM attestation key");
    };
    let Some(policy) = snapshot_tpm_policy(snapshot) else {
        return snapshot_tpm_missing(snapshot, names::TPM_KEY);
    };
    let now: [u8; 32] = Sha256::digest(&tpm.ak_public.0).into();
    if now == policy.ak_sha256 {
        Check::pass(
            names::TPM_KEY,
            format!("attestation key sha256 {} is the snapshot's", short(&now)),
        )
    } else {
        let (was, got) = hex_pair(&policy.ak_sha256, &now);
        Check::fail(
            names::TPM_KEY,
            format!("attestation key sha256 is {got}, the snapshot's is {was}: another TPM key signs the quotes"),
        )
    }
}

fn snapshot_tpm_policy(snapshot: Option<&Snapshot>) -> Option<&TpmPolicy> {
    snapshot.and_then(|s| s.tpm_policy.as_ref())
}

fn snapshot_tpm_missing(snapshot: Option<&Snapshot>, name: &str) -> Check {
    Check::fail(
        name,
        if snapshot.is_some() {
            "the evidence has a TPM, but the snapshot has none (take a new snapshot if a TPM was added)"
        } else {
            "no snapshot to compare with"
        },
    )
}

/// The `ima replay` check, and the parsed entries when the log is anchored in the quote.
fn check_ima_replay(
    evidence: &Evidence,
    quote: Option<&Result<VerifiedQuote, quote::QuoteError>>,
    snapshot: Option<&Snapshot>,
    expect: &Expectations<'_>,
) -> (Check, Option<Vec<ImaEntry>>) {
    let name = names::IMA_REPLAY;
    let fail = |d: String| (Check::fail(name, d), None);
    let snapshot_ima = snapshot.and_then(|s| s.ima.as_ref());
    let Some(log) = &evidence.ima_log else {
        return match snapshot {
            Some(s) if s.ima.is_none() => (
                Check::pass(
                    name,
                    "no IMA log: neither the evidence nor the snapshot has one",
                ),
                None,
            ),
            Some(_) => fail("the evidence has no IMA log, but the snapshot has IMA".into()),
            None => fail(
                "the evidence has no IMA log, and there is no snapshot saying the VM has none"
                    .into(),
            ),
        };
    };
    let (Some(Ok(_)), Some(tpm)) = (quote, &evidence.tpm) else {
        return fail(
            "the IMA log cannot be anchored: there is no verified TPM quote of its PCR (see tpm quote)"
                .into(),
        );
    };
    let pcr = snapshot_ima.map_or(ima::replay::IMA_PCR, |p| p.pcr);
    let Ok(pcr_u8) = u8::try_from(pcr) else {
        return fail(format!("the snapshot's IMA PCR {pcr} is not a PCR index"));
    };
    // `binary_runtime_measurements` carries SHA-1 template hashes whatever the banks.
    let entries = match ima::binary::parse(&log.0, ima::HashAlg::Sha1) {
        Ok(e) => e,
        Err(e) => return fail(format!("IMA log: {e}")),
    };
    if let Err(e) = ima::replay::check(&entries) {
        return fail(format!("IMA log: {e}"));
    }
    // The kernel may log entries between the quote and the read of the log, so the
    // quote covers a prefix of it: find the shortest prefix whose replay is the quoted
    // value in the first bank, then require the same prefix in every other bank.
    // Entries after it are not anchored and not judged (the next call covers them).
    let quoted: Vec<(ima::HashAlg, &[u8])> = tpm
        .pcrs
        .iter()
        .filter(|(_, index, _)| *index == pcr_u8)
        .map(|(bank, _, value)| (bank, value))
        .collect();
    let Some(&(first_bank, first_value)) = quoted.first() else {
        return fail(format!(
            "the TPM quote does not cover PCR {pcr}, so the IMA log is not anchored"
        ));
    };
    // Incremental IMA: the evidence left out the entries this verifier replayed, so the
    // replay starts from the value they gave, in every bank.
    let from = evidence.ima_log_from.unwrap_or(0);
    let start_of = |bank: ima::HashAlg| -> Option<Vec<u8>> {
        if from == 0 {
            return Some(vec![0u8; bank.size()]);
        }
        let start = expect.ima_start.as_ref().filter(|s| s.entries == from)?;
        start
            .pcr
            .iter()
            .find(|(b, _)| *b == bank)
            .map(|(_, v)| v.clone())
    };
    let Some(first_start) = start_of(first_bank) else {
        return fail(format!(
            "the evidence leaves out the first {from} IMA entries, but this verifier kept no \
             {first_bank} PCR {pcr} value after exactly {from} entries to replay the rest from"
        ));
    };
    let Some(cut) = quoted_prefix(&entries, first_bank, pcr, first_value, &first_start) else {
        let replayed = replay_from(&entries, first_bank, pcr, &first_start);
        let (q, r) = hex_pair(first_value, &replayed);
        return fail(format!(
            "no prefix of the {} IMA entries replays to the quoted {first_bank} PCR {pcr} {q} \
             (the whole log gives {r}): the log is not the one the kernel measured",
            entries.len()
        ));
    };
    // A kernel with IMA extends boot_aggregate first, so a quoted PCR still at its reset
    // value while the log holds measurements means the TPM was reset after they were
    // made: none of them is anchored, and judging "the empty prefix" would judge nothing.
    let measured = entries.iter().filter(|e| e.pcr() == pcr).count();
    let quoted_measured = entries[..cut].iter().filter(|e| e.pcr() == pcr).count();
    if from == 0 && quoted_measured == 0 && measured > 0 {
        return fail(format!(
            "the quoted PCR {pcr} is at its reset value but the IMA log holds {measured} \
             measurements for it: the TPM was reset after they were made, so none is anchored"
        ));
    }
    let mut entries = entries;
    let later = entries.len().saturating_sub(cut);
    entries.truncate(cut);
    for &(bank, value) in quoted.iter().skip(1) {
        let Some(start) = start_of(bank) else {
            return fail(format!(
                "the evidence leaves out the first {from} IMA entries, but this verifier kept \
                 no {bank} PCR {pcr} value to replay the rest from"
            ));
        };
        let replayed = replay_from(&entries, bank, pcr, &start);
        if replayed != value {
            let (q, r) = hex_pair(value, &replayed);
            return fail(format!(
                "the first {cut} IMA entries replay to the quoted {first_bank} PCR {pcr}, but give {bank} {r} where the quote says {q}"
            ));
        }
    }
    let banks: Vec<String> = quoted
        .iter()
        .map(|(b, v)| format!("{b} {}", short(v)))
        .collect();
    let later_note = if later > 0 {
        format!("; {later} later entries, logged after the quote, are not judged")
    } else {
        String::new()
    };
    let from_note = if from > 0 {
        format!(" after the {from} replayed before (incremental)")
    } else {
        String::new()
    };
    (
        Check::pass(
            name,
            format!(
                "{cut} entries{from_note} replay to the quoted PCR {pcr} ({}){later_note}",
                banks.join(", ")
            ),
        ),
        Some(entries),
    )
}

/// PCR `pcr` in `bank` after extending `start` with the entries of `entries` for it.
fn replay_from(entries: &[ImaEntry], bank: ima::HashAlg, pcr: u32, start: &[u8]) -> Vec<u8> {
    entries
        .iter()
        .filter(|e| e.pcr() == pcr)
        .fold(start.to_vec(), |v, e| {
            ima::replay::extend(bank, &v, &e.extend_value(bank))
        })
}

/// The length of the shortest prefix of `entries` whose replay of PCR `pcr` in `bank`,
/// from `start`, is `quoted` (entries for other PCRs inside the prefix are kept), if
/// any.
fn quoted_prefix(
    entries: &[ImaEntry],
    bank: ima::HashAlg,
    pcr: u32,
    quoted: &[u8],
    start: &[u8],
) -> Option<usize> {
    let mut value = start.to_vec();
    if value == quoted {
        // Entries for other PCRs before the first one for `pcr` belong to the prefix.
        return Some(entries.iter().take_while(|e| e.pcr() != pcr).count());
    }
    for (i, e) in entries.iter().enumerate() {
        if e.pcr() != pcr {
            continue;
        }
        value = ima::replay::extend(bank, &value, &e.extend_value(bank));
        if value == quoted {
            return Some(i.saturating_add(1));
        }
    }
    None
}

fn check_ima_entries(
    evidence: &Evidence,
    entries: Option<&[ImaEntry]>,
    replay_passed: bool,
    expect: &Expectations<'_>,
) -> Check {
    let name = names::IMA_ENTRIES;
    let Some(entries) = entries else {
        return if replay_passed && evidence.ima_log.is_none() {
            Check::pass(
                name,
                "no IMA log: neither the evidence nor the snapshot has one",
            )
        } else {
            Check::fail(
                name,
                "cannot judge the entries: the IMA log did not replay to a verified quote (see ima replay)",
            )
        };
    };
    let mut known = match expect.snapshot {
        Some(s) => s.file_index(),
        None => FileIndex::default(),
    };
    if let Some(w) = expect.whitelist {
        known.extend(w.clone());
    }
    if expect.snapshot.is_none() && expect.whitelist.is_none() {
        return Check::fail(
            name,
            format!(
                "no snapshot and no whitelist to judge {} IMA entries with",
                entries.len()
            ),
        );
    }
    let skip_first = usize::from(ima::boot_aggregate(entries).is_some());
    let mut violations = 0usize;
    let mut unknown: Vec<String> = Vec::new();
    let mut unknown_count = 0usize;
    for e in entries.iter().skip(skip_first) {
        if e.is_violation() {
            violations = violations.saturating_add(1);
            continue;
        }
        let path = e.path();
        if !known.contains(&path, e.file_digest()) {
            unknown_count = unknown_count.saturating_add(1);
            if unknown.len() < UNKNOWN_PATHS_SHOWN {
                unknown.push(format!(
                    "{path} ({} {})",
                    e.file_digest_alg(),
                    short(e.file_digest())
                ));
            }
        }
    }
    let judged = entries
        .len()
        .saturating_sub(skip_first)
        .saturating_sub(violations);
    let violations_note = if violations > 0 {
        format!("; {violations} violation entries not judged")
    } else {
        String::new()
    };
    if unknown_count == 0 {
        Check::pass(
            name,
            format!(
                "all {judged} measured files are in the snapshot or whitelist{violations_note}"
            ),
        )
    } else {
        let more = unknown_count.saturating_sub(unknown.len());
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        Check::fail(
            name,
            format!(
                "{unknown_count} of {judged} measured files are in neither the snapshot nor the whitelist: {}{more}{violations_note}",
                unknown.join(", ")
            ),
        )
    }
}

fn check_manifest(evidence: &Evidence, expect: &Expectations<'_>) -> Check {
    let name = names::MANIFEST;
    let uncovered: Vec<&str> = expect
        .applications
        .iter()
        .map(String::as_str)
        .filter(|a| evidence.manifest.entry_for_sni(a).is_none())
        .collect();
    if !uncovered.is_empty() {
        return Check::fail(
            name,
            format!(
                "no manifest entry covers {}, so the VM does not vouch for it (manifest: {})",
                uncovered.join(", "),
                manifest_names(&evidence.manifest)
            ),
        );
    }
    let Some(snapshot) = expect.snapshot else {
        return Check::fail(name, "no snapshot to compare the manifest with");
    };
    let mut renewed = Vec::new();
    let mut changed = Vec::new();
    let mut added = Vec::new();
    for e in evidence.manifest.entries() {
        match snapshot.manifest.get(&e.name) {
            Some(s) => match key_pin(s, e) {
                KeyPin::Same => {}
                KeyPin::Renewed => renewed.push(renewal(s, e)),
                KeyPin::Changed => changed.push(key_change(s, e)),
            },
            None => added.push(format!("`{}`", e.name)),
        }
    }
    let removed: Vec<String> = snapshot
        .manifest
        .entries()
        .iter()
        .filter(|s| evidence.manifest.get(&s.name).is_none())
        .map(|s: &ManifestEntry| format!("`{}`", s.name))
        .collect();
    let mut problems = Vec::new();
    if !added.is_empty() {
        problems.push(format!("not in the snapshot: {}", added.join(", ")));
    }
    if !removed.is_empty() {
        problems.push(format!("gone since the snapshot: {}", removed.join(", ")));
    }
    let n = evidence.manifest.entries().len();
    if !problems.is_empty() {
        problems.extend(changed);
        return Check::fail(
            name,
            format!(
                "names differ from the snapshot's ({}); review, then take a new snapshot",
                problems.join("; ")
            ),
        );
    }
    let renewals = if renewed.is_empty() {
        String::new()
    } else {
        format!("; {}", renewed.join("; "))
    };
    if changed.is_empty() {
        Check::pass(
            name,
            format!("the {n} key(s) equal the snapshot's{renewals}"),
        )
    } else if expect.allow_key_change {
        Check::pass(
            name,
            format!(
                "{} (allowed by --allow-key-change){renewals}",
                changed.join("; ")
            ),
        )
    } else {
        Check::fail(
            name,
            format!(
                "{}; review it, then take a new snapshot or pass --allow-key-change{renewals}",
                changed.join("; ")
            ),
        )
    }
}

fn manifest_names(m: &Manifest) -> String {
    if m.entries().is_empty() {
        return "empty".into();
    }
    m.entries()
        .iter()
        .map(|e| e.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Bytes shown in a shortened hex value.
const SHOWN_BYTES: usize = 8;

/// The first bytes of a value in hex, `…` when cut.
fn short(bytes: &[u8]) -> String {
    let shown = bytes.get(..SHOWN_BYTES).unwrap_or(bytes);
    if shown.len() < bytes.len() {
        format!("{}…", hex::encode(shown))
    } else {
        hex::encode(shown)
    }
}

/// Two values shortened so that the shown parts differ: cut around the first byte
/// where they differ, which a prefix alone would hide when only the tail changed.
fn hex_pair(expected: &[u8], got: &[u8]) -> (String, String) {
    let first_diff = expected
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(expected.len().min(got.len()));
    let start = if first_diff < SHOWN_BYTES {
        0
    } else {
        first_diff.saturating_sub(2)
    };
    let window = |b: &[u8]| {
        let end = start.saturating_add(SHOWN_BYTES).min(b.len());
        let part = b.get(start..end).unwrap_or(&[]);
        format!(
            "{}{}{}",
            if start > 0 { "…" } else { "" },
            hex::encode(part),
            if end < b.len() { "…" } else { "" }
        )
    };
    (window(expected), window(got))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unverified_azure_report_vouches_for_no_tpm_key() {
        let azure = TeeEvidence::AzureSevSnp {
            hcl_report: crate::evidence::Base64(vec![1, 2, 3]),
            cert_chain: None,
        };
        let err = check_vouched_tpm_key(&azure, None, &[0, 1]).expect_err("unknown HCLAkPub");
        assert!(matches!(err, quote::QuoteError::AkNotVouched(_)), "{err}");
        assert!(err.to_string().contains("HCLAkPub"));
        // Kinds whose report vouches for no key leave the quote to the binding.
        let snp = TeeEvidence::SevSnp {
            report: crate::evidence::Base64(vec![1]),
            cert_chain: None,
        };
        assert!(check_vouched_tpm_key(&snp, None, &[0, 1]).is_ok());
    }

    #[test]
    fn quoted_prefix_finds_the_quoted_part_of_a_grown_log() {
        use crate::ima::HashAlg;
        let e = |p: &str| ImaEntry::measure(p, HashAlg::Sha256, p.as_bytes()).unwrap();
        let log = vec![e("/a"), e("/other-pcr").with_pcr(11), e("/b"), e("/c")];
        for bank in HashAlg::ALL {
            let zeros = vec![0; bank.size()];
            // The quote was taken after /b; /c came later.
            let quoted = ima::replay::replay_pcr(&log[..3], bank, 10);
            assert_eq!(quoted_prefix(&log, bank, 10, &quoted, &zeros), Some(3));
            let all = ima::replay::replay_pcr(&log, bank, 10);
            assert_eq!(quoted_prefix(&log, bank, 10, &all, &zeros), Some(4));
            // A PCR still at zeros: only entries for other PCRs before the first one.
            assert_eq!(quoted_prefix(&log, bank, 10, &zeros, &zeros), Some(0));
            assert_eq!(quoted_prefix(&log[1..], bank, 10, &zeros, &zeros), Some(1));
            // A value no prefix reaches, or of the wrong length.
            assert_eq!(
                quoted_prefix(&log, bank, 10, &vec![0x11; bank.size()], &zeros),
                None
            );
            assert_eq!(quoted_prefix(&log, bank, 10, &[1, 2, 3], &zeros), None);
            assert_eq!(quoted_prefix(&[], bank, 10, &all, &zeros), None);
            // From a kept value (incremental IMA): the tail after /a reaches the quote.
            let after_a = ima::replay::replay_pcr(&log[..1], bank, 10);
            assert_eq!(
                quoted_prefix(&log[1..], bank, 10, &quoted, &after_a),
                Some(2)
            );
            assert_eq!(replay_from(&log[1..], bank, 10, &after_a), all);
        }
    }

    #[test]
    fn hex_pair_shows_where_values_differ() {
        let a = [0u8; 32];
        let mut b = a;
        b[31] = 1;
        let (x, y) = hex_pair(&a, &b);
        assert_ne!(x, y);
        assert!(x.starts_with('…') && y.ends_with("01"), "{x} {y}");
        let mut c = a;
        c[0] = 0xff;
        assert_eq!(
            hex_pair(&a, &c),
            ("0000000000000000…".into(), "ff00000000000000…".into())
        );
        assert_eq!(hex_pair(&[1, 2], &[1]), ("0102".into(), "01".into()));
        assert_eq!(short(&[0xab; 4]), "abababab");
    }
}
