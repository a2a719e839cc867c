//! `[gateway.acme]` of `verigated.toml`: an ACME CA issues the own endpoint's certificate
//! (`crate::acme`). Present means "verigated keeps `gateway.ssl_certificate` issued by
//! this directory for `gateway.domain`, with the key `gateway.ssl_private_key`".
//!
//! ```toml
//! [gateway.acme]
//! directory = "https://acme-v02.api.letsencrypt.org/directory"
//! contact = ["mailto:ops@example.com"]
//! terms_of_service_agreed = true
//! # ca_bundle = "/etc/verigate/acme-ca.pem"   # roots for the directory's own TLS
//! renew_before = "30d"
//! check_interval = "12h"
//! retry_backoff = "5m"
//! order_timeout = "5m"
//! rotate_key = false
//! # eab_kid = "kid-1"                           # External Account Binding (ZeroSSL,
//! # eab_hmac_key = "/etc/verigate/acme-eab.key" #  Google): the key file, base64url
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{parse_duration, RawDuration};

/// Default of `renew_before`: a third of a 90-day certificate, as Let's Encrypt advises.
pub const DEFAULT_RENEW_BEFORE: &str = "30d";
/// Default of `check_interval`: twice a day, so a failed renewal is noticed in time.
pub const DEFAULT_CHECK_INTERVAL: &str = "12h";
/// Default of `retry_backoff`: the first retry after a failure; it doubles per failure up
/// to `check_interval`. Five minutes keeps a broken setup under Let's Encrypt's limit of
/// five failed validations per name and hour (5, 10, 20, 40 minutes: four in 75).
pub const DEFAULT_RETRY_BACKOFF: &str = "5m";
/// Default of `order_timeout`: one order, from creation to the downloaded chain.
pub const DEFAULT_ORDER_TIMEOUT: &str = "5m";

/// `[gateway.acme]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcme {
    directory: Option<String>,
    #[serde(default)]
    contact: Vec<String>,
    #[serde(default)]
    terms_of_service_agreed: bool,
    #[serde(default)]
    ca_bundle: Option<PathBuf>,
    renew_before: Option<RawDuration>,
    check_interval: Option<RawDuration>,
    retry_backoff: Option<RawDuration>,
    order_timeout: Option<RawDuration>,
    #[serde(default)]
    rotate_key: bool,
    #[serde(default)]
    eab_kid: Option<String>,
    #[serde(default)]
    eab_hmac_key: Option<PathBuf>,
}

/// `[gateway.acme]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The CA's directory URL (`https://`).
    pub directory: String,
    /// `mailto:` addresses the CA may write to (expiry notices); may be empty.
    pub contact: Vec<String>,
    /// PEM roots that the directory's TLS certificate must chain to, instead of Mozilla's
    /// (a private CA, a test CA); absolute.
    pub ca_bundle: Option<PathBuf>,
    /// Renew when the certificate has less than this left (or is not from a CA).
    pub renew_before: Duration,
    /// How often the certificate's remaining lifetime is looked at.
    pub check_interval: Duration,
    /// The wait before the first retry after a failed order; doubles per failure, at
    /// most `check_interval`.
    pub retry_backoff: Duration,
    /// The most one order may take, from creation to the downloaded chain.
    pub order_timeout: Duration,
    /// A new key at each renewal instead of the one kept in the VM (default false): every
    /// renewal then fails `verify` against older snapshots until `--allow-key-change`.
    pub rotate_key: bool,
    /// External Account Binding (RFC 8555 §7.3.4), for CAs that require it.
    pub eab: Option<Eab>,
}

/// The External Account Binding a CA gave the operator: its key id and, in a file, the
/// HMAC key (base64url, as CAs hand it out). Only read when an account is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eab {
    /// The key id.
    pub kid: String,
    /// The file holding the base64url HMAC key; absolute.
    pub hmac_key: PathBuf,
}

/// Reads and decodes an EAB HMAC key file (base64url, padding and surrounding
/// whitespace allowed); the error names the file and never holds the key.
pub fn read_eab_key(path: &Path) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim().trim_end_matches('='))
        .map_err(|_| format!("{}: not a base64url key", path.display()))?;
    if key.is_empty() {
        return Err(format!("{}: empty key", path.display()));
    }
    Ok(key)
}

/// Checks `[gateway.acme]`, reporting each problem through `problem`.
pub fn validate(
    raw: RawAcme,
    data_dir: &Path,
    problem: &mut impl FnMut(&str, String),
) -> AcmeSettings {
    let directory = raw.directory.unwrap_or_default();
    if directory.is_empty() {
        problem(
            "gateway.acme.directory",
            "missing: give the CA's directory URL, e.g. \
             \"https://acme-v02.api.letsencrypt.org/directory\""
                .into(),
        );
    } else if !directory.starts_with("https://")
        || directory
            .parse::<hyper::Uri>()
            .map_or(true, |u| u.host().is_none())
    {
        problem(
            "gateway.acme.directory",
            format!("expected an https:// URL with a host, got `{directory}`"),
        );
    }
    for (i, c) in raw.contact.iter().enumerate() {
        let address = c.strip_prefix("mailto:").unwrap_or_default();
        if address.is_empty() || !address.contains('@') || address.contains(char::is_whitespace) {
            problem(
                &format!("gateway.acme.contact[{i}]"),
                format!("expected \"mailto:name@example.com\", got `{c}`"),
            );
        }
    }
    if !raw.terms_of_service_agreed {
        problem(
            "gateway.acme.terms_of_service_agreed",
            "must be true: read the CA's terms of service (its directory's meta.termsOfService) \
             and set it to true"
                .into(),
        );
    }
    let ca_bundle = raw.ca_bundle.map(|p| data_dir.join(p));
    if let Some(path) = &ca_bundle {
        if let Err(e) = crate::certificate::read_certificate_chain(path) {
            problem("gateway.acme.ca_bundle", e.to_string());
        }
    }
    let eab = match (raw.eab_kid, raw.eab_hmac_key) {
        (None, None) => None,
        (Some(kid), Some(path)) => {
            let hmac_key = data_dir.join(path);
            if kid.trim().is_empty() {
                problem(
                    "gateway.acme.eab_kid",
                    "empty: give the key id the CA gave you".into(),
                );
            }
            if let Err(e) = read_eab_key(&hmac_key) {
                problem("gateway.acme.eab_hmac_key", e);
            }
            Some(Eab { kid, hmac_key })
        }
        (Some(_), None) => {
            problem(
                "gateway.acme.eab_hmac_key",
                "missing while eab_kid is set: give the file holding the CA's HMAC key".into(),
            );
            None
        }
        (None, Some(_)) => {
            problem(
                "gateway.acme.eab_kid",
                "missing while eab_hmac_key is set: give the key id the CA gave you".into(),
            );
            None
        }
    };
    let mut duration = |field: &str, value: Option<RawDuration>, default: &str| {
        let text = match value.unwrap_or_else(|| RawDuration::Text(default.to_string())) {
            RawDuration::Text(t) => t,
            RawDuration::Number(n) => {
                problem(
                    &format!("gateway.acme.{field}"),
                    format!("expected a string with a unit such as \"{n}s\" or \"{n}d\", got the number {n}"),
                );
                return Duration::from_secs(1);
            }
        };
        match parse_duration(&text) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                problem(
                    &format!("gateway.acme.{field}"),
                    format!("must be more than zero, got `{text}`"),
                );
                Duration::from_secs(1)
            }
            Err(e) => {
                problem(&format!("gateway.acme.{field}"), e);
                Duration::from_secs(1)
            }
        }
    };
    let renew_before = duration("renew_before", raw.renew_before, DEFAULT_RENEW_BEFORE);
    let check_interval = duration("check_interval", raw.check_interval, DEFAULT_CHECK_INTERVAL);
    let retry_backoff = duration("retry_backoff", raw.retry_backoff, DEFAULT_RETRY_BACKOFF);
    let order_timeout = duration("order_timeout", raw.order_timeout, DEFAULT_ORDER_TIMEOUT);
    AcmeSettings {
        directory,
        contact: raw.contact,
        ca_bundle,
        renew_before,
        check_interval,
        retry_backoff,
        order_timeout,
        rotate_key: raw.rotate_key,
        eab,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> (AcmeSettings, Vec<(String, String)>) {
        let raw: RawAcme = toml::from_str(text).unwrap();
        let mut problems = Vec::new();
        let s = validate(raw, Path::new("/var/lib/verigate"), &mut |f: &str, m| {
            problems.push((f.to_string(), m));
        });
        (s, problems)
    }

    #[test]
    fn defaults_apply() {
        let (s, problems) = check(
            "directory = \"https://acme.example/dir\"\nterms_of_service_agreed = true\n\
             contact = [\"mailto:ops@example.com\"]\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(s.renew_before, Duration::from_secs(30 * 86_400));
        assert_eq!(s.check_interval, Duration::from_secs(12 * 3600));
        assert_eq!(s.retry_backoff, Duration::from_secs(300));
        assert_eq!(s.order_timeout, Duration::from_secs(300));
        assert_eq!(s.ca_bundle, None);
        assert!(!s.rotate_key);
        assert_eq!(s.eab, None);
    }

    #[test]
    fn each_bad_value_is_named() {
        let (_, problems) = check(
            "directory = \"http://acme.example/dir\"\ncontact = [\"ops@example.com\", \"mailto:\"]\n\
             ca_bundle = \"/nonexistent/ca.pem\"\nrenew_before = 30\ncheck_interval = \"0s\"\n\
             retry_backoff = \"soon\"\n",
        );
        let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "gateway.acme.directory",
                "gateway.acme.contact[0]",
                "gateway.acme.contact[1]",
                "gateway.acme.terms_of_service_agreed",
                "gateway.acme.ca_bundle",
                "gateway.acme.renew_before",
                "gateway.acme.check_interval",
                "gateway.acme.retry_backoff",
            ]
        );
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("eab.key");
        std::fs::write(&key, "not base64url!\n").unwrap();
        let (_, problems) = check(&format!(
            "directory = \"https://a.example/d\"\nterms_of_service_agreed = true\n\
             eab_kid = \"kid-1\"\neab_hmac_key = \"{}\"\n",
            key.display()
        ));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].1.contains("not a base64url key"),
            "{problems:?}"
        );
        assert!(
            !problems[0].1.contains("not base64url!"),
            "the key leaked: {problems:?}"
        );
        std::fs::write(
            &key,
            "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W\n",
        )
        .unwrap();
        let (s, problems) = check(&format!(
            "directory = \"https://a.example/d\"\nterms_of_service_agreed = true\n\
             eab_kid = \"kid-1\"\neab_hmac_key = \"{}\"\n",
            key.display()
        ));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(s.eab.unwrap().kid, "kid-1");
        let (_, problems) = check(
            "directory = \"https://a.example/d\"\nterms_of_service_agreed = true\neab_kid = \"k\"\n",
        );
        assert_eq!(problems[0].0, "gateway.acme.eab_hmac_key");
        let (_, problems) = check("terms_of_service_agreed = true\n");
        assert_eq!(problems.len(), 1);
        assert!(problems[0].1.contains("missing"), "{problems:?}");
    }
}
