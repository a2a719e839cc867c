//! Pebble, the ACME test CA (Debian package `pebble`), and `pebble-challtestsrv` as its
//! DNS server, on free loopback ports in one temporary folder; both stop on drop.
//!
//! Pebble validates for real: its TLS-ALPN-01 check connects to the name's address
//! (challtestsrv answers every A query with 127.0.0.1 and no AAAA) on the `tlsPort`
//! given here, the port of the verigated under test. `PEBBLE_VA_NOSLEEP` only removes
//! its random wait before validating; `PEBBLE_VA_ALWAYS_VALID` is never set.
//!
//! The Debian package ships no certificate for Pebble's own HTTPS listener, so one is
//! made here: a test CA ([`Pebble::ca_bundle`], for `[gateway.acme] ca_bundle`) and a
//! leaf for 127.0.0.1 and `localhost`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use rustls::pki_types::{CertificateDer, ServerName};

use crate::ports::{free_port, wait_for_listener};
use crate::process::ChildGuard;

/// What the tests ask apt for.
pub const INSTALL: &str = "apt-get install pebble (scripts/install-deps.sh)";

/// True when both programs are on PATH.
pub fn available() -> bool {
    crate::require::on_path("pebble") && crate::require::on_path("pebble-challtestsrv")
}

/// A running Pebble with its DNS server.
pub struct Pebble {
    pebble: ChildGuard,
    _dns: ChildGuard,
    dir: PathBuf,
    management: SocketAddr,
    ca_pem: String,
}

/// Pebble's addresses and HTTPS identity, chosen before the verigated it validates
/// against is started (its config names the directory and the CA bundle).
pub struct PebblePlan {
    dir: PathBuf,
    listen: SocketAddr,
    management: SocketAddr,
    ca_pem: String,
    /// External Account Binding required: key id and base64url HMAC key.
    eab: Option<(String, String)>,
}

impl PebblePlan {
    /// Chooses free loopback ports and writes the HTTPS identity into `dir`.
    pub fn new(dir: &Path) -> anyhow::Result<PebblePlan> {
        std::fs::create_dir_all(dir)?;
        let (ca_pem, cert_pem, key_pem) = https_identity()?;
        std::fs::write(dir.join("ca.pem"), &ca_pem)?;
        std::fs::write(dir.join("cert.pem"), cert_pem)?;
        std::fs::write(dir.join("key.pem"), key_pem)?;
        Ok(PebblePlan {
            dir: dir.to_path_buf(),
            listen: SocketAddr::from(([127, 0, 0, 1], free_port())),
            management: SocketAddr::from(([127, 0, 0, 1], free_port())),
            ca_pem,
            eab: None,
        })
    }

    /// Makes Pebble require External Account Binding with this key id and base64url
    /// HMAC key.
    pub fn require_eab(mut self, kid: &str, hmac_key: &str) -> PebblePlan {
        self.eab = Some((kid.to_string(), hmac_key.to_string()));
        self
    }

    /// The ACME directory URL Pebble will serve.
    pub fn directory(&self) -> String {
        format!("https://{}/dir", self.listen)
    }

    /// The PEM file of the CA that signs Pebble's HTTPS certificate.
    pub fn ca_bundle(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Starts challtestsrv and Pebble; Pebble validates TLS-ALPN-01 on `tls_port` and
    /// issues certificates valid for `validity`.
    pub fn start(self, tls_port: u16, validity: Duration) -> anyhow::Result<Pebble> {
        let PebblePlan {
            dir,
            listen,
            management,
            ca_pem,
            eab,
        } = self;
        let mac_keys: serde_json::Map<String, serde_json::Value> = eab
            .iter()
            .map(|(kid, key)| (kid.clone(), serde_json::Value::from(key.as_str())))
            .collect();
        let dir = dir.as_path();
        let dns = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let dns_management = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let dns_log = std::fs::File::create(dir.join("challtestsrv.log"))?;
        let dns_child = ChildGuard::spawn(
            "pebble-challtestsrv",
            Command::new("pebble-challtestsrv")
                .args(["-dns01", &dns.to_string()])
                .args(["-management", &dns_management.to_string()])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                .stdin(Stdio::null())
                .stdout(dns_log.try_clone()?)
                .stderr(dns_log),
        )?;
        if !wait_for_listener(dns_management, Duration::from_secs(30)) {
            bail!(
                "pebble-challtestsrv did not start: {}",
                std::fs::read_to_string(dir.join("challtestsrv.log")).unwrap_or_default()
            );
        }
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": listen.to_string(),
                "managementListenAddress": management.to_string(),
                "certificate": dir.join("cert.pem"),
                "privateKey": dir.join("key.pem"),
                // http-01 is never offered to; a free port that nothing answers on.
                "httpPort": free_port(),
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": !mac_keys.is_empty(),
                "externalAccountMACKeys": mac_keys,
                "certificateValidityPeriod": validity.as_secs(),
            }
        });
        let config_path = dir.join("pebble-config.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
        let log = std::fs::File::create(dir.join("pebble.log"))?;
        let pebble = ChildGuard::spawn(
            "pebble",
            Command::new("pebble")
                .arg("-config")
                .arg(&config_path)
                .args(["-dnsserver", &dns.to_string()])
                .env("PEBBLE_VA_NOSLEEP", "1")
                // Every order proves its name again (no authorization reuse), and no
                // good nonce is refused at random: a renewal is a full validation, and
                // the run does not depend on chance.
                .env("PEBBLE_AUTHZREUSE", "0")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log),
        )?;
        let mut started = Pebble {
            pebble,
            _dns: dns_child,
            dir: dir.to_path_buf(),
            management,
            ca_pem,
        };
        if !(wait_for_listener(listen, Duration::from_secs(30))
            && wait_for_listener(management, Duration::from_secs(30))
            && started.pebble.is_running())
        {
            bail!("pebble did not start: {}", started.log());
        }
        Ok(started)
    }
}

impl Pebble {
    /// Pebble's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pebble.log")).unwrap_or_default()
    }

    /// The root that Pebble's issued chains lead to (regenerated at every Pebble start),
    /// from its management interface.
    pub fn issuing_root(&self) -> anyhow::Result<CertificateDer<'static>> {
        let body = self.management_get("/roots/0")?;
        rustls_pem_first(&body).context("Pebble's /roots/0")
    }

    /// Stops Pebble (the directory is down from now on); challtestsrv stays.
    pub fn stop(&mut self) {
        let _ = self.pebble.child.kill();
        let _ = self.pebble.child.wait();
    }

    fn management_get(&self, path: &str) -> anyhow::Result<String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls_pem_first(&self.ca_pem)?)?;
        let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("127.0.0.1")?;
        let conn = rustls::ClientConnection::new(Arc::new(config), name)?;
        let tcp = TcpStream::connect(self.management)?;
        tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        write!(
            tls,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.management
        )?;
        let mut response = Vec::new();
        // Go closes without close_notify at times; what was read is the answer.
        let _ = tls.read_to_end(&mut response);
        let text = String::from_utf8(response)?;
        let (head, body) = text
            .split_once("\r\n\r\n")
            .context("no HTTP header end in Pebble's answer")?;
        if !head.starts_with("HTTP/1.1 200") {
            bail!("Pebble's management {path}: {head}");
        }
        Ok(body.to_string())
    }
}

fn rustls_pem_first(pem: &str) -> anyhow::Result<CertificateDer<'static>> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .context("no certificate in the PEM")?
        .context("PEM certificate")
}

/// A test CA and a leaf for 127.0.0.1 and `localhost` signed by it (PEM: CA, leaf, key).
fn https_identity() -> anyhow::Result<(String, String, String)> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(
        rcgen::DnType::CommonName,
        "verigate test CA for Pebble's HTTPS",
    );
    ca.distinguished_name = dn;
    let ca_cert = ca.self_signed(&ca_key)?;
    let key = rcgen::KeyPair::generate()?;
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])?;
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key)?;
    Ok((ca_cert.pem(), cert.pem(), key.serialize_pem()))
}
