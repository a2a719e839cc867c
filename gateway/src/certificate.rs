//! verigated's own certificate: read from the configured PEM files, or, when both files
//! are absent, generated once (self-signed, CN = hostname, SAN = `gateway.domain`, not a
//! CA, valid for one year) and written so that the next start reuses it.
//!
//! The key is written with mode 0600 and both files are written atomically (a temporary
//! file in the same directory, fsync, rename), so a crash never leaves a half-written
//! key that the next start would choke on. Clients pin this certificate through the
//! attestation, so silently replacing it would break them: a pair is only generated when
//! neither file exists.
//!
//! A new pair that replaces the one in use (an ACME renewal with `rotate_key`) is written
//! by [`replace_pair`]: the key first beside the old one (`<key>.next`), then the
//! certificate, then the key renamed over the old one. A crash between two steps leaves
//! a state that [`load_or_generate`] completes or undoes, by which key the certificate
//! carries, so verigated never starts with a certificate and a key that do not match.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// How long a generated certificate is valid: one year, the most the issue allows.
const VALIDITY_DAYS: i64 = 365;

/// Why the own certificate cannot be loaded or created. Messages name the file.
#[derive(thiserror::Error, Debug)]
pub enum CertificateError {
    /// The certificate or key file cannot be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file, `ssl_certificate` or `ssl_private_key`.
        path: PathBuf,
        /// Why it cannot be read.
        source: io::Error,
    },
    /// The file is not valid PEM.
    #[error("{path}: not PEM: {source}")]
    Pem {
        /// The file, `ssl_certificate` or `ssl_private_key`.
        path: PathBuf,
        /// What the PEM parser found wrong.
        source: io::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{path}: no `CERTIFICATE` PEM block in the file")]
    NoCertificate {
        /// The `ssl_certificate` file.
        path: PathBuf,
    },
    /// The key file holds no private key.
    #[error("{path}: no private key PEM block (PKCS#8, PKCS#1 or SEC1) in the file")]
    NoKey {
        /// The `ssl_private_key` file.
        path: PathBuf,
    },
    /// One of certificate and key exists without the other: generating a new pair would
    /// overwrite the one that exists, so verigated refuses.
    #[error("{present} exists but {missing} does not: remove {present} to have a new pair generated, or restore {missing}")]
    HalfPair {
        /// The file that exists.
        present: PathBuf,
        /// The file that does not.
        missing: PathBuf,
    },
    /// rcgen could not generate the self-signed certificate.
    #[error("generating the self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The folder of a generated certificate or key cannot be created.
    #[error("{path}: cannot write: {source}")]
    Write {
        /// The file whose folder could not be created.
        path: PathBuf,
        /// Why the system refused.
        source: io::Error,
    },
    /// A generated certificate or key cannot be written whole.
    #[error("cannot save the certificate or key: {0}")]
    Save(durable::Error),
}

/// The own endpoint's certificate chain and key.
pub struct OwnCertificate {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// True when this call generated the pair.
    pub generated: bool,
}

impl std::fmt::Debug for OwnCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("OwnCertificate")
            .field("chain_len", &self.chain.len())
            .field("generated", &self.generated)
            .finish_non_exhaustive()
    }
}

/// Reads every `CERTIFICATE` block of a PEM file (leaf first); fails on none.
pub fn read_certificate_chain(
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, CertificateError> {
    let bytes = fs::read(path).map_err(|source| CertificateError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let chain = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| CertificateError::Pem {
            path: path.to_path_buf(),
            source,
        })?;
    if chain.is_empty() {
        return Err(CertificateError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(chain)
}

/// Reads the first private key of a PEM file.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertificateError> {
    let bytes = fs::read(path).map_err(|source| CertificateError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    rustls_pemfile::private_key(&mut bytes.as_slice())
        .map_err(|source| CertificateError::Pem {
            path: path.to_path_buf(),
            source,
        })?
        .ok_or_else(|| CertificateError::NoKey {
            path: path.to_path_buf(),
        })
}

/// Where [`replace_pair`] puts a new key until its certificate is in place.
pub fn next_key_path(key_path: &Path) -> PathBuf {
    let mut name = key_path.as_os_str().to_os_string();
    name.push(".next");
    PathBuf::from(name)
}

/// Replaces the pair at `cert_path`/`key_path` with `cert_pem` and `key_pem`, each file
/// whole, in an order a crash cannot turn into a mismatched pair (module documentation).
pub fn replace_pair(
    cert_path: &Path,
    key_path: &Path,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<(), CertificateError> {
    let next = next_key_path(key_path);
    write_atomically(&next, key_pem, 0o600)?;
    write_atomically(cert_path, cert_pem, 0o644)?;
    fs::rename(&next, key_path).map_err(|source| CertificateError::Write {
        path: key_path.to_path_buf(),
        source,
    })
}

/// Completes or undoes a [`replace_pair`] that a crash interrupted: a `<key>.next` whose
/// key the certificate carries becomes the key; any other is removed.
fn finish_replacement(cert_path: &Path, key_path: &Path) -> Result<(), CertificateError> {
    let next = next_key_path(key_path);
    if !next.exists() {
        return Ok(());
    }
    let carries_next = read_certificate_chain(cert_path)
        .ok()
        .and_then(|chain| chain.into_iter().next())
        .zip(fs::read_to_string(&next).ok())
        .is_some_and(|(leaf, key_pem)| {
            use sha2::Digest as _;
            let spki = rcgen::KeyPair::from_pem(&key_pem)
                .map(|k| sha2::Sha256::digest(k.public_key_der()));
            let cert = attest::binding::CertDigests::of("own", &leaf);
            matches!((spki, cert), (Ok(s), Ok(c)) if s[..] == c.spki_sha256[..])
        });
    let done = if carries_next {
        tracing::warn!(key = %key_path.display(), "completing an interrupted key replacement");
        fs::rename(&next, key_path)
    } else {
        tracing::warn!(key = %next.display(), "removing the key of an interrupted replacement that never got its certificate");
        fs::remove_file(&next)
    };
    done.map_err(|source| CertificateError::Write {
        path: key_path.to_path_buf(),
        source,
    })
}

/// Loads the pair at `cert_path`/`key_path`, generating it first when neither exists
/// (and completing an interrupted [`replace_pair`] first).
pub fn load_or_generate(
    cert_path: &Path,
    key_path: &Path,
    domain: &str,
) -> Result<OwnCertificate, CertificateError> {
    finish_replacement(cert_path, key_path)?;
    let generated = match (cert_path.exists(), key_path.exists()) {
        (true, true) => false,
        (false, false) => {
            let (cert_pem, key_pem) = generate(domain, &hostname())?;
            // Key first: a crash between the two renames leaves a key without a
            // certificate, which the next start reports instead of silently replacing.
            write_atomically(key_path, key_pem.as_bytes(), 0o600)?;
            write_atomically(cert_path, cert_pem.as_bytes(), 0o644)?;
            true
        }
        (true, false) => {
            return Err(CertificateError::HalfPair {
                present: cert_path.to_path_buf(),
                missing: key_path.to_path_buf(),
            })
        }
        (false, true) => {
            return Err(CertificateError::HalfPair {
                present: key_path.to_path_buf(),
                missing: cert_path.to_path_buf(),
            })
        }
    };
    Ok(OwnCertificate {
        chain: read_certificate_chain(cert_path)?,
        key: read_private_key(key_path)?,
        generated,
    })
}

/// A self-signed server certificate for `domain` (PEM certificate, PEM PKCS#8 key).
pub fn generate(domain: &str, common_name: &str) -> Result<(String, String), CertificateError> {
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()])?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    // An hour back, for clocks slightly behind ours; the total stays one year.
    let not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    params.not_before = not_before;
    params.not_after = not_before + time::Duration::days(VALIDITY_DAYS);
    let key_pair = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key_pair)?;
    Ok((cert.pem(), key_pair.serialize_pem()))
}

/// The machine's host name (the generated certificate's CN); "verigated" if unknown.
pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "verigated".to_string())
}

/// Writes `bytes` to `path` whole or not at all, with `mode` (see [`durable`]), creating
/// the folder first.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertificateError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|source| CertificateError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    }
    durable::write(path, bytes, mode).map_err(CertificateError::Save)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generates_once_then_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("data/cert.pem");
        let key = dir.path().join("data/key.pem");
        let first = load_or_generate(&cert, &key, "vm.example.com").unwrap();
        assert!(first.generated);
        let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let second = load_or_generate(&cert, &key, "vm.example.com").unwrap();
        assert!(!second.generated);
        assert_eq!(first.chain, second.chain);
        // No temporary file left behind.
        let names: Vec<_> = fs::read_dir(dir.path().join("data"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn an_interrupted_replacement_is_completed_or_undone() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let old = load_or_generate(&cert, &key, "vm.example.com").unwrap();
        let old_key = fs::read(&key).unwrap();
        let (new_cert, new_key) = generate("vm.example.com", "h").unwrap();

        // Crash after the new key, before its certificate: the old pair stays.
        fs::write(next_key_path(&key), &new_key).unwrap();
        let loaded = load_or_generate(&cert, &key, "vm.example.com").unwrap();
        assert_eq!(loaded.chain, old.chain);
        assert_eq!(fs::read(&key).unwrap(), old_key);
        assert!(!next_key_path(&key).exists());

        // Crash after the certificate, before the key's rename: the new pair is made whole.
        fs::write(next_key_path(&key), &new_key).unwrap();
        fs::write(&cert, &new_cert).unwrap();
        let loaded = load_or_generate(&cert, &key, "vm.example.com").unwrap();
        assert_ne!(loaded.chain, old.chain);
        assert_eq!(fs::read_to_string(&key).unwrap(), new_key);
        assert!(!next_key_path(&key).exists());
        // And the loaded pair makes a TLS configuration (the key matches).
        crate::tls::server_config(&loaded).unwrap();

        // A whole replacement leaves no `.next` behind and the key at 0600.
        let (third_cert, third_key) = generate("vm.example.com", "h").unwrap();
        replace_pair(&cert, &key, third_cert.as_bytes(), third_key.as_bytes()).unwrap();
        assert_eq!(fs::read_to_string(&key).unwrap(), third_key);
        assert!(!next_key_path(&key).exists());
        let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn half_pair_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        fs::write(&key, "whatever").unwrap();
        let e = load_or_generate(&cert, &key, "vm.example.com").unwrap_err();
        assert!(matches!(e, CertificateError::HalfPair { .. }), "{e}");
        assert_eq!(fs::read_to_string(&key).unwrap(), "whatever");
    }

    #[test]
    fn garbage_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pem");
        fs::write(
            &path,
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = read_certificate_chain(&path).unwrap_err();
        assert!(e.to_string().contains("x.pem"), "{e}");
        fs::write(&path, "nothing here").unwrap();
        assert!(matches!(
            read_certificate_chain(&path),
            Err(CertificateError::NoCertificate { .. })
        ));
        assert!(matches!(
            read_private_key(&path),
            Err(CertificateError::NoKey { .. })
        ));
        assert!(matches!(
            read_private_key(&dir.path().join("missing")),
            Err(CertificateError::Read { .. })
        ));
    }
}
