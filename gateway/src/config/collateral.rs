//! The collateral keys of `[attestation]`: where verigated fetches what a verifier needs
//! besides the TEE report (AMD KDS for a VCEK, Intel PCS or a PCCS for TDX collateral),
//! how often it refreshes its cached copies, where configfs-tsm lives, and where Azure's
//! instance metadata service answers (the VCEK and the TD quote of an Azure confidential
//! VM). Every field is documented in `configs/verigated.toml`.

use std::path::PathBuf;
use std::time::Duration;

use super::{parse_duration, RawDuration};

/// Default of `attestation.amd_kds_url`: AMD's Key Distribution Service.
pub const DEFAULT_AMD_KDS_URL: &str = attest::tee::snp::kds::AMD_KDS_URL;
/// Default of `attestation.pccs_url`: Intel's Provisioning Certification Service.
pub const DEFAULT_PCCS_URL: &str = attest::tee::tdx::pcs::INTEL_PCS_URL;
/// Default of `attestation.collateral_refresh`, as a user would write it.
pub const DEFAULT_COLLATERAL_REFRESH: &str = "12h";
/// Default of `attestation.tsm_report_root`: where the kernel exposes configfs-tsm.
pub const DEFAULT_TSM_REPORT_ROOT: &str = attest::tee::tsm::TSM_REPORT_ROOT;
/// Default of `attestation.azure_imds_url`: Azure's instance metadata service.
pub const DEFAULT_AZURE_IMDS_URL: &str = "http://169.254.169.254";

/// The validated collateral settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollateralConfig {
    /// Base URL of AMD KDS (or a mirror of its paths), without a trailing `/`.
    pub amd_kds_url: String,
    /// Base URL of Intel PCS or of a PCCS, without a trailing `/`.
    pub pccs_url: String,
    /// Where the root CA CRL is fetched: `attestation.root_ca_crl_url`, else
    /// `attest::tee::tdx::pcs::root_ca_crl_url` of `pccs_url` (the CRL distribution
    /// point of Intel's root with Intel's PCS, the PCCS's resource otherwise).
    pub root_ca_crl_url: String,
    /// A cached copy is fetched again once it is this old, and at the latest this long
    /// before its `nextUpdate`.
    pub refresh: Duration,
    /// The configfs-tsm report folder.
    pub tsm_report_root: PathBuf,
    /// Base URL of Azure's instance metadata service, `http://host[:port]` (plain HTTP on
    /// a link-local address, as Azure serves it), without a trailing `/`.
    pub azure_imds_url: String,
}

impl Default for CollateralConfig {
    fn default() -> Self {
        CollateralConfig {
            amd_kds_url: DEFAULT_AMD_KDS_URL.to_string(),
            pccs_url: DEFAULT_PCCS_URL.to_string(),
            root_ca_crl_url: attest::tee::tdx::pcs::root_ca_crl_url(DEFAULT_PCCS_URL, None),
            refresh: Duration::from_secs(12 * 3600),
            tsm_report_root: PathBuf::from(DEFAULT_TSM_REPORT_ROOT),
            azure_imds_url: DEFAULT_AZURE_IMDS_URL.to_string(),
        }
    }
}

/// The keys as written (fields of `RawAttestation`, which refuses unknown ones).
#[derive(Debug, Default)]
pub(super) struct RawCollateral {
    pub amd_kds_url: Option<String>,
    pub pccs_url: Option<String>,
    pub root_ca_crl_url: Option<String>,
    pub collateral_refresh: Option<RawDuration>,
    pub tsm_report_root: Option<PathBuf>,
    pub azure_imds_url: Option<String>,
}

/// A base URL: `http://` or `https://`, a host, an optional port and path prefix, no
/// query; returned without a trailing `/`.
fn base_url(field: &str, text: &str, problem: &mut impl FnMut(&str, String)) -> Option<String> {
    url(field, text, "https://host[:port]", problem)
}

/// [`base_url`], for a URL of one resource (`example` shows its shape in the message).
fn url(
    field: &str,
    text: &str,
    example: &str,
    problem: &mut impl FnMut(&str, String),
) -> Option<String> {
    let t = text.trim().trim_end_matches('/');
    let rest = t
        .strip_prefix("https://")
        .or_else(|| t.strip_prefix("http://"));
    let ok = rest.is_some_and(|r| {
        let host = r.split('/').next().unwrap_or_default();
        !host.is_empty() && !r.contains(['?', '#', ' '])
    });
    if ok {
        Some(t.to_string())
    } else {
        problem(
            field,
            format!("expected a URL such as \"{example}\", got `{text}`"),
        );
        None
    }
}

/// IMDS's base URL: `http://host[:port]`, nothing after (its paths are fixed), because
/// the instance metadata service speaks plain HTTP on a link-local address.
fn imds_url(text: &str, problem: &mut impl FnMut(&str, String)) -> Option<String> {
    let t = text.trim().trim_end_matches('/');
    let ok = t
        .strip_prefix("http://")
        .is_some_and(|a| !a.is_empty() && !a.contains(['/', '?', '#', ' ']));
    if ok {
        Some(t.to_string())
    } else {
        problem(
            "attestation.azure_imds_url",
            format!("expected \"http://host[:port]\" (IMDS speaks plain HTTP, its paths are fixed), got `{text}`"),
        );
        None
    }
}

/// Checks the collateral keys, reporting each problem through `problem`.
pub(super) fn validate(
    raw: RawCollateral,
    problem: &mut impl FnMut(&str, String),
) -> CollateralConfig {
    let d = CollateralConfig::default();
    let amd_kds_url = raw
        .amd_kds_url
        .and_then(|u| base_url("attestation.amd_kds_url", &u, problem))
        .unwrap_or(d.amd_kds_url);
    let pccs_url = raw
        .pccs_url
        .and_then(|u| base_url("attestation.pccs_url", &u, problem))
        .unwrap_or(d.pccs_url);
    let root_ca_crl_url = attest::tee::tdx::pcs::root_ca_crl_url(
        &pccs_url,
        raw.root_ca_crl_url
            .and_then(|u| {
                url(
                    "attestation.root_ca_crl_url",
                    &u,
                    "https://host[:port]/IntelSGXRootCA.der",
                    problem,
                )
            })
            .as_deref(),
    );
    let field = "attestation.collateral_refresh";
    let refresh = match raw.collateral_refresh {
        None => d.refresh,
        Some(RawDuration::Number(n)) => {
            problem(
                field,
                format!("expected a string with a unit such as \"{n}s\" or \"{n}h\", got the number {n}"),
            );
            d.refresh
        }
        Some(RawDuration::Text(t)) => match parse_duration(&t) {
            Ok(v) if v.is_zero() => {
                problem(field, format!("must be more than zero, got `{t}`"));
                d.refresh
            }
            Ok(v) => v,
            Err(e) => {
                problem(field, e);
                d.refresh
            }
        },
    };
    let tsm_report_root = match raw.tsm_report_root {
        Some(p) if p.is_absolute() => p,
        Some(p) => {
            problem(
                "attestation.tsm_report_root",
                format!("expected an absolute path, got `{}`", p.display()),
            );
            d.tsm_report_root
        }
        None => d.tsm_report_root,
    };
    let azure_imds_url = raw
        .azure_imds_url
        .and_then(|u| imds_url(&u, problem))
        .unwrap_or(d.azure_imds_url);
    CollateralConfig {
        amd_kds_url,
        pccs_url,
        root_ca_crl_url,
        refresh,
        tsm_report_root,
        azure_imds_url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: RawCollateral) -> (CollateralConfig, Vec<String>) {
        let mut problems = Vec::new();
        let c = validate(raw, &mut |f: &str, m: String| {
            problems.push(format!("{f}: {m}"));
        });
        (c, problems)
    }

    #[test]
    fn defaults_are_the_vendors_services() {
        let (c, p) = check(RawCollateral::default());
        assert!(p.is_empty());
        assert_eq!(c, CollateralConfig::default());
        assert_eq!(c.amd_kds_url, "https://kdsintf.amd.com");
        assert_eq!(c.pccs_url, "https://api.trustedservices.intel.com");
        assert_eq!(
            c.root_ca_crl_url,
            "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
        );
        assert_eq!(
            c.tsm_report_root,
            PathBuf::from("/sys/kernel/config/tsm/report")
        );
        assert_eq!(c.azure_imds_url, "http://169.254.169.254");
    }

    #[test]
    fn bad_values_name_their_field() {
        let (c, p) = check(RawCollateral {
            amd_kds_url: Some("http://127.0.0.1:8/".into()),
            pccs_url: Some("https://pccs.local:8081/".into()),
            root_ca_crl_url: None,
            collateral_refresh: Some(RawDuration::Text("30m".into())),
            tsm_report_root: Some("/tmp/tsm".into()),
            azure_imds_url: Some("http://127.0.0.1:8090/".into()),
        });
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(c.amd_kds_url, "http://127.0.0.1:8");
        assert_eq!(c.pccs_url, "https://pccs.local:8081");
        assert_eq!(
            c.root_ca_crl_url,
            "https://pccs.local:8081/sgx/certification/v4/rootcacrl"
        );
        assert_eq!(c.refresh, Duration::from_secs(1800));
        assert_eq!(c.azure_imds_url, "http://127.0.0.1:8090");
        let (_, p) = check(RawCollateral {
            amd_kds_url: Some("ftp://x".into()),
            pccs_url: Some("https://?a".into()),
            root_ca_crl_url: None,
            collateral_refresh: Some(RawDuration::Number(5)),
            tsm_report_root: Some("tsm".into()),
            azure_imds_url: Some("https://169.254.169.254".into()),
        });
        assert_eq!(p.len(), 5, "{p:?}");
        assert!(p[0].starts_with(
            "attestation.amd_kds_url: expected a URL such as \"https://host[:port]\""
        ));
        assert!(p[1].starts_with("attestation.pccs_url"));
        assert!(p[2].starts_with("attestation.collateral_refresh: expected a string"));
        assert!(p[3].starts_with("attestation.tsm_report_root: expected an absolute"));
        assert!(p[4].starts_with("attestation.azure_imds_url: expected \"http://"));
        for bad in ["http://h/metadata", "169.254.169.254", "http://"] {
            let (_, p) = check(RawCollateral {
                azure_imds_url: Some(bad.into()),
                ..RawCollateral::default()
            });
            assert_eq!(p.len(), 1, "{bad}: {p:?}");
        }
        // A configured root CA CRL URL wins over the PCS's default, and is checked.
        let (c, p) = check(RawCollateral {
            root_ca_crl_url: Some("http://127.0.0.1:9/IntelSGXRootCA.der".into()),
            ..RawCollateral::default()
        });
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(c.root_ca_crl_url, "http://127.0.0.1:9/IntelSGXRootCA.der");
        let (c, p) = check(RawCollateral {
            root_ca_crl_url: Some("IntelSGXRootCA.der".into()),
            ..RawCollateral::default()
        });
        assert!(
            p[0].starts_with("attestation.root_ca_crl_url: expected a URL"),
            "{p:?}"
        );
        assert_eq!(
            c.root_ca_crl_url,
            CollateralConfig::default().root_ca_crl_url
        );
        let (_, p) = check(RawCollateral {
            collateral_refresh: Some(RawDuration::Text("0s".into())),
            ..RawCollateral::default()
        });
        assert!(p[0].contains("more than zero"), "{p:?}");
    }
}
